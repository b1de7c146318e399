"""Structured pruning: is the channel-pruned model really smaller and faster, and what does it cost
each group?

Speed (``--part speed``): resnet18 and mobilenet_v2 at 224 px with random weights, pruned by
`fairgrape prune --granularity channel --method magnitude` (per layer; the kept widths, hence the
speed, do not depend on the method) at each rate, written and loaded back as checkpoints. For the
dense and each pruned model: parameters, FLOPs (torch.utils.flop_counter, one image; a
multiply-add counts 2) and CPU latency at batch 1 and 64 (torch.utils.benchmark, the same thread
count for all (one by default: on a shared machine a two-thread kernel waits for whichever thread
was descheduled), measured in interleaved rounds in the same run so that the machine's load falls on
every model alike; median and interquartile range of the rounds; the speed-up is the median of the
rounds' dense/pruned ratios).

Fairness (``--part fairness``): the fairness benchmark's data and dense model (benchmarks/fairness.py,
flows/experiment.py's DEMO_SPEC: 4 classes, a 20% minority, the 4-layer CNN of width 64), pruned in
one step and fine-tuned (1 epoch, then 3) with: channel FairGRAPE and channel magnitude at each
channel rate, and weight-level FairGRAPE and magnitude at the weight rate that leaves the same
number of nonzero prunable weights as the channel-pruned models. Test accuracy and drop_gap against
the dense model, mean and standard deviation over seeds.

    python benchmarks/structured.py --part speed --rates 0.3 0.5 0.7
    python benchmarks/structured.py --part fairness --seeds 0 1 2 --channel-rates 0.5 0.7

Recorded on our 2-core VM, torch 2.14 (see README.md, "Smaller and faster"):

Speed (`python benchmarks/structured.py --part speed --rates 0.3 0.5 0.7`: random weights, 224 px,
channel magnitude pruning per layer (the kept widths, hence the speed, do not depend on the
method), each model written and loaded back as a checkpoint; CPU latency with one torch thread,
7 interleaved rounds in one run; median ms and IQR; speed-up = median of the rounds' dense/pruned
ratios (IQR). Measured on our 2-core VM while other jobs ran (load average 4.5 to 11.9), so the
absolute times are inflated; the ratios are what to read):

model                      params          FLOPs          batch 1 ms (IQR)  speed-up      batch 64 ms (IQR)  speed-up
resnet18 dense             11.69 M (100%)  3.63 G (100%)  131.2 (21.3)      1.00x         11983 (3985)       1.00x
resnet18 channel 0.3        5.83 M  (50%)  1.83 G  (51%)   77.1 (10.9)      1.73x (0.10)   6957 (2758)       1.64x (0.09)
resnet18 channel 0.5        3.06 M  (26%)  0.97 G  (27%)   42.1 (14.1)      3.14x (0.71)   3835 (1114)       2.98x (0.47)
resnet18 channel 0.7        1.17 M  (10%)  0.37 G  (10%)   26.6 (16.6)      4.97x (2.20)   1970 (662)        6.00x (0.59)
mobilenet_v2 dense          3.50 M (100%)  0.60 G (100%)   88.5 (33.1)      1.00x        18074 (40915)       1.00x
mobilenet_v2 channel 0.3    2.01 M  (57%)  0.31 G  (51%)   64.1 (40.8)      1.38x (0.64)  11925 (24349)      1.67x (0.22)
mobilenet_v2 channel 0.5    1.22 M  (35%)  0.17 G  (28%)   43.6 (23.2)      2.10x (0.30)   7302 (14503)      2.45x (1.56)
mobilenet_v2 channel 0.7    0.61 M  (17%)  0.07 G  (11%)   35.5 (14.6)      3.11x (1.27)   4071 (8563)       4.42x (2.54)

At rate 0.5 a resnet18 keeps 26% of its parameters and 27% of its FLOPs and runs about 3x faster
at batch 64; parameters and FLOPs fall roughly with the square of the kept width (both a layer's
inputs and outputs shrink). MobileNetV2's batch-64 timings swung widely under the load (its dense
IQR is larger than its median); its ratios are the least certain here.

Fairness (`python benchmarks/structured.py --part fairness --seeds 0 1 2 --channel-rates 0.5 0.7`,
run one seed per process: the fairness benchmark's demo data and dense model (4 classes, 20%
minority, the 4-layer CNN of width 64; dense test accuracy 95.9% on average), pruned in one step
and fine-tuned (1 epoch, then 3, erm); weight-level pruning at the weight rate that leaves the same
number of nonzero prunable weights as the channel-pruned model (density below); mean ± std over
seeds 0 1 2; FLOPs as computed (a weight-pruned model still multiplies its zeros)):

channel rate  variant             density  FLOPs   accuracy %   worst group %  drop_gap pts
0.5           channel fairgrape   0.252    10.0 M  90.4 ± 3.0   68.2 ± 5.6     11.3 ± 8.8
0.5           channel magnitude   0.252    10.0 M  89.8 ± 3.6   67.9 ± 9.0     14.4 ± 9.6
0.5           weight fairgrape    0.252    36.6 M  92.1 ± 3.9   70.2 ± 7.1     10.9 ± 6.1
0.5           weight magnitude    0.252    36.6 M  92.0 ± 4.7   76.2 ± 6.8      8.2 ± 5.2
0.7           channel fairgrape   0.090     4.0 M  84.4 ± 2.5   50.2 ± 8.0     26.1 ± 8.2
0.7           channel magnitude   0.090     4.0 M  86.5 ± 3.0   50.8 ± 4.1     28.0 ± 6.9
0.7           weight fairgrape    0.090    36.6 M  67.4 ± 14.1  35.2 ± 9.2     23.5 ± 27.3
0.7           weight magnitude    0.090    36.6 M  85.9 ± 4.3   46.9 ± 12.3    32.1 ± 10.0

Channel FairGRAPE and channel magnitude are within each other's spread at both rates (FairGRAPE's
gap 3 and 2 points lower, its accuracy 0.6 higher and 2.1 lower). At the same number of weights,
channel pruning costs 2 points of accuracy against weight-level pruning at rate 0.5 for a model with
a quarter of the FLOPs that really runs faster; at 0.7 (9% of the weights) channel pruning holds up
better than weight-level FairGRAPE (84.4% against 67.4%, which varied widely between seeds). No
variant protects the minority well at these rates with plain (erm) fine-tuning: the gaps are
large and noisy with 64 minority test images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ARCHS = ("resnet18", "mobilenet_v2")


# ------------------------------------------------------------------------------------------ speed


def pruned_models(arch: str, rates: list[float], work: Path) -> dict[str, torch.nn.Module]:
    """The dense model and one channel-pruned per rate, each through a checkpoint on disk."""
    from fairgrape_cli import stages
    from fairgrape_cli.io.checkpoints import build_model, load_checkpoint

    torch.manual_seed(0)
    dense = work / f"{arch}.pt"
    model = build_model(arch, 1000)
    torch.save({"arch": arch, "num_classes": 1000, "state_dict": model.state_dict(), "image_size": 224}, dense)
    models = {"dense": load_checkpoint(dense).model}
    for rate in rates:
        summary = stages.prune(
            rate=rate, model=stages.ModelSource(dense), method="magnitude", granularity="channel",
            output=work / f"{arch}-{rate}-masks.safetensors", model_output=work / f"{arch}-{rate}.pt",
        )  # fmt: skip
        models[f"channel {rate}"] = load_checkpoint(summary.checkpoint).model.eval()
    return models


def measure_speed(arch: str, rates: list[float], rounds: int, threads: int, work: Path) -> list[dict]:
    from fairgrape_cli.method.cost import model_cost

    models = pruned_models(arch, rates, work)
    rows = {name: {"arch": arch, "model": name, **model_cost(model, 224).__dict__} for name, model in models.items()}
    for batch in (1, 64):
        time_interleaved(models, rows, torch.randn(batch, 3, 224, 224), rounds=rounds, threads=threads,
                         number=10 if batch == 1 else 1)
    dense = rows["dense"]
    for row in rows.values():
        row["params_ratio"] = row["params"] / dense["params"]
        row["flops_ratio"] = row["flops"] / dense["flops"]
        row["threads"] = threads
    return list(rows.values())


def time_interleaved(models: dict[str, torch.nn.Module], rows: dict[str, dict], images: torch.Tensor, *,
                     rounds: int, threads: int, number: int) -> None:
    """CPU timings of every model on ``images`` into its row (``ms_bN``, ``speedup_bN`` against
    ``models["dense"]``, their IQRs and samples), the models timed in turn within each round.
    Shared with benchmarks/vit_heads.py."""
    import torch.utils.benchmark as benchmark

    batch = len(images)
    timers = {
        name: benchmark.Timer("model(images)", globals={"model": model, "images": images}, num_threads=threads)
        for name, model in models.items()
    }
    with torch.no_grad():
        for timer in timers.values():
            timer.timeit(1)  # warm up (allocator, one-time kernels)
        samples = {name: [] for name in models}
        for _ in range(rounds):  # interleaved: a change of load hits every model alike
            for name, timer in timers.items():
                samples[name].append(timer.timeit(number).mean)
    for name, values in samples.items():
        # the speed-up of each round (dense and pruned timed seconds apart), then their median:
        # robust to the load other jobs put on the machine, which moves both alike
        ratios = [dense / mine for dense, mine in zip(samples["dense"], values)]
        rows[name][f"ms_b{batch}"] = 1e3 * statistics.median(values)
        rows[name][f"iqr_b{batch}"] = 1e3 * _iqr(values)
        rows[name][f"speedup_b{batch}"] = statistics.median(ratios)
        rows[name][f"speedup_iqr_b{batch}"] = _iqr(ratios)
        rows[name][f"samples_b{batch}"] = values


def _iqr(values: list[float]) -> float:
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


def print_speed(rows: list[dict]) -> None:
    print("| model | params | FLOPs | batch 1 ms (IQR) | speed-up (IQR) | batch 64 ms (IQR) | speed-up (IQR) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['arch']} {row['model']} | {row['params'] / 1e6:.2f} M ({100 * row['params_ratio']:.0f}%) "
            f"| {row['flops'] / 1e9:.2f} G ({100 * row['flops_ratio']:.0f}%) "
            f"| {row['ms_b1']:.1f} ({row['iqr_b1']:.1f}) | {row['speedup_b1']:.2f}x ({row['speedup_iqr_b1']:.2f}) "
            f"| {row['ms_b64']:.0f} ({row['iqr_b64']:.0f}) | {row['speedup_b64']:.2f}x ({row['speedup_iqr_b64']:.2f}) |"
        )


# --------------------------------------------------------------------------------------- fairness


def run_variant(directory: Path, prepared, spec, *, label: str, method: str, granularity: str, rate: float) -> dict:
    from fairgrape_cli.flows.config import load_config
    from fairgrape_cli.flows.experiment import Recipe, write_config
    from fairgrape_cli.flows.pipeline import run_schedule

    # one-shot (one prune, one fine-tuning epoch, then the final three), fine-tuning with erm
    path = write_config(directory, prepared, replace(spec, rate=rate), Recipe(method=method, keep_per_iter=None), label)
    overrides = [f"prune.granularity={granularity}"]
    return run_schedule(load_config(path, overrides=overrides)).report.to_dict()


def measure_fairness(seeds: list[int], channel_rates: list[float], output: Path) -> list[dict]:
    from fairgrape_cli.flows.experiment import DEMO_SPEC, prepare

    rows = []
    for seed in seeds:
        spec = replace(DEMO_SPEC, seed=seed, data=replace(DEMO_SPEC.data, seed=seed))
        directory = output / f"seed-{seed}"
        prepared = prepare(directory, spec)
        for rate in channel_rates:
            reports = {}
            for method in ("fairgrape", "magnitude"):
                reports[f"channel {method}"] = run_variant(
                    directory, prepared, spec, label=f"channel-{method}", method=method,
                    granularity="channel", rate=rate,
                )  # fmt: skip
            # weight-level at the parameter count the channel-pruned models kept
            weight_rate = round(1.0 - reports["channel fairgrape"]["density"], 4)
            for method in ("fairgrape", "magnitude"):
                reports[f"weight {method}"] = run_variant(
                    directory, prepared, spec, label=f"weight-{method}", method=method,
                    granularity="weight", rate=weight_rate,
                )  # fmt: skip
            for variant, report in reports.items():
                row = {
                    "seed": seed, "channel_rate": rate, "variant": variant, "density": report["density"],
                    "params": report.get("params"), "flops": report.get("flops"),
                    "accuracy": report["overall"]["accuracy"],
                    "baseline_accuracy": report["overall"]["baseline_accuracy"],
                    "drop_gap": report["disparity"]["drop_gap"],
                    "worst_group_accuracy": report["disparity"]["worst_group_accuracy"],
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def print_fairness(rows: list[dict]) -> None:
    def cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{scale * statistics.fmean(values):.{digits}f} ± {scale * spread:.{digits}f}"

    print("| channel rate | variant | density | FLOPs (M) | accuracy % | worst group % | drop_gap pp |")
    print("|---|---|---|---|---|---|---|")
    for rate in sorted({row["channel_rate"] for row in rows}):
        for variant in ("channel fairgrape", "channel magnitude", "weight fairgrape", "weight magnitude"):
            mine = [row for row in rows if row["channel_rate"] == rate and row["variant"] == variant]
            if not mine:
                continue
            print(
                f"| {rate} | {variant} | {statistics.fmean(r['density'] for r in mine):.3f} "
                f"| {statistics.fmean(r['flops'] for r in mine) / 1e6:.1f} "
                f"| {cell([r['accuracy'] for r in mine])} | {cell([r['worst_group_accuracy'] for r in mine])} "
                f"| {cell([r['drop_gap'] for r in mine])} |"
            )
    dense = statistics.fmean(row["baseline_accuracy"] for row in rows)
    print(f"\ndense accuracy (mean over seeds): {100 * dense:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("speed", "fairness", "both"), default="both")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every timing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--channel-rates", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--output", type=Path, default=Path("benchmark-runs/structured"))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    if args.part in ("speed", "both"):
        started = time.perf_counter()
        torch.set_num_threads(args.threads)
        rows = []
        with tempfile.TemporaryDirectory() as work:
            for arch in ARCHS:
                print(f"{arch}: load average before {os.getloadavg()}, torch threads {args.threads}", flush=True)
                rows += measure_speed(arch, args.rates, args.rounds, args.threads, Path(work))
        print(f"load average after {os.getloadavg()}, {time.perf_counter() - started:.0f}s")
        (args.output / "speed.json").write_text(json.dumps(rows, indent=1))
        print_speed(rows)
    if args.part in ("fairness", "both"):
        started = time.perf_counter()
        rows = measure_fairness(args.seeds, args.channel_rates, args.output / "fairness")
        (args.output / "fairness.json").write_text(json.dumps(rows, indent=1))
        print(f"\n{len(args.seeds)} seed(s), {(time.perf_counter() - started) / 60:.1f} min, load {os.getloadavg()}")
        print_fairness(rows)


if __name__ == "__main__":
    main()

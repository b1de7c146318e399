"""Selection speed: `fairgrape prune` on a ResNet-34 with 7 groups against the cost floor.

The floor is what any implementation must pay: start Python with torch, load the importance file
and stable-sort every group's scores of every layer (torch.sort). Both are timed here as separate
processes, in the same run, with their peak RSS. Also printed: the compiled greedy's selections
per second on the largest layer, and a per-step Python loop (the upstream style: numpy/torch ops
per step) on a small slice of the same inputs.

    python benchmarks/selection.py                      # rates 0.1 0.9 0.99, --scope layer
    python benchmarks/selection.py --rates 0.1 --scope global
    python benchmarks/selection.py --work /tmp/fg-bench  # keep (and reuse) the generated files
    python benchmarks/selection.py --repeat 3            # fastest of 3 runs of each process

Timings are wall-clock on whatever else the machine is doing: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

GROUPS = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]
LARGEST_LAYER = "layer4.1.conv2.weight"

FLOOR_SCRIPT = """
import sys, torch
from safetensors import safe_open
if sys.argv[2] != "default":
    torch.set_num_threads(int(sys.argv[2]))
with safe_open(sys.argv[1], framework="pt") as handle:
    for key in handle.keys():
        scores = handle.get_tensor(key)
        torch.sort(scores.reshape(scores.shape[0], -1), dim=-1, descending=True, stable=True)
"""

IMPORT_SCRIPT = "import torch, torchvision, numba, safetensors.torch, fairgrape_cli.stages, fairgrape_cli.method.selection"


# ------------------------------------------------------------------------------------ workload


def build_workload(work: Path, *, groups: int, seed: int) -> tuple[Path, Path]:
    """resnet34.pt (native, 7 classes) and importance.safetensors beside it; reused if present."""
    import torchvision
    from safetensors.torch import save_file

    from fairgrape_cli.io.checkpoints import prunable_parameters
    from fairgrape_cli.io.files import sha256_file

    model_path, importance_path = work / "resnet34.pt", work / f"importance-g{groups}-s{seed}.safetensors"
    if model_path.exists() and importance_path.exists():
        return model_path, importance_path
    torch.manual_seed(seed)
    model = torchvision.models.resnet34(num_classes=7)
    torch.save(
        {"arch": "resnet34", "num_classes": 7, "classes": [f"class{i}" for i in range(7)],
         "state_dict": model.state_dict(), "image_size": 224},
        model_path,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    importance = {}
    for name, weight in prunable_parameters(model).items():
        # heavy-tailed like (w * dL/dw)^2; rounding through float16 makes many exact ties
        values = torch.empty(groups, *weight.shape).exponential_(generator=generator) ** 3
        scale = torch.rand(groups, *([1] * weight.ndim), generator=generator) + 0.5
        importance[name] = (values * scale).half().float()
    metadata = {
        "format": "fairgrape.importance.v1",
        "groups": json.dumps(GROUPS[:groups] + [f"group{g}" for g in range(7, groups)]),
        "attribute": "race",
        "criterion": "squared_taylor",
        "samples_per_group": json.dumps({g: 64 for g in GROUPS[:groups]}),
        "model": model_path.name,
        "model_sha256": sha256_file(model_path),
        "arch": "resnet34",
        "classes": json.dumps([f"class{i}" for i in range(7)]),
        "image_size": "224",
        "split": "train",
        "target": "label",
    }
    save_file(importance, str(importance_path), metadata=metadata)
    return model_path, importance_path


# ----------------------------------------------------------------------------------- processes


# A tiny launcher forks the measured command and reports its own child's peak RSS: a child forked
# straight from this (large) process would count this process's pages in its ru_maxrss on Linux.
LAUNCHER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_in_child(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``command`` in a fresh process."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LAUNCHER, *command], cwd=cwd, capture_output=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr.decode()[-2000:]}")
    return elapsed, int(result.stderr.decode().split()[-1]) / 1024


def prune_command(importance: Path, rate: float, scope: str, method: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "fairgrape_cli", "prune", "--rate", str(rate), "--scope", scope,
        "--method", method, "-i", str(importance), "-o", str(out / f"masks-{rate}.safetensors"),
        "--model-output", str(out / f"pruned-{rate}.pt"), "--quiet",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------- throughput


def largest_layer_inputs(importance: Path) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(importance), framework="pt") as handle:
        scores = handle.get_tensor(LARGEST_LAYER)
    return scores.reshape(scores.shape[0], -1)


def compiled_throughput(scores: torch.Tensor, rate: float) -> tuple[int, float, float]:
    """Selections, ranking seconds and greedy seconds of one layer, as prune runs it (one torch
    thread; prune runs two layers at a time)."""
    from fairgrape_cli.method.ranking import torch_threads
    from fairgrape_cli.method.selection import kept_count, plan_selection

    n = scores.shape[1]
    candidates = torch.ones(n, dtype=torch.bool)
    weight = torch.ones(n)
    with torch_threads(1):
        plan_selection(scores[:, :1000], candidates[:1000], 10, weight[:1000]).run()  # load the cache
        started = time.perf_counter()
        plan = plan_selection(scores, candidates, kept_count(rate, n), weight)
        ranked = time.perf_counter()
        kept = plan.run()
        done = time.perf_counter()
    return int(kept.sum()), ranked - started, done - ranked


def per_step_loop(scores: torch.Tensor, keep: int) -> float:
    """Seconds of an upstream-style per-step loop (numpy/torch ops each step), rankings given."""
    num_groups, n = scores.shape
    rankings = torch.sort(scores, dim=1, descending=True, stable=True).indices
    targets = (scores.double().sum(1) / scores.double().sum()).numpy()
    kept = torch.zeros(n, dtype=torch.bool)
    sums = np.zeros(num_groups)
    shares = np.full(num_groups, 1.0 / num_groups)
    pointers = np.zeros(num_groups, dtype=np.int64)
    selected = 0
    started = time.perf_counter()
    while selected < keep:
        group = int(np.argmin(shares - targets))
        weight = rankings[group, pointers[group]]
        pointers[group] += 1
        if not kept[weight]:
            kept[weight] = True
            sums += scores[:, weight].double().numpy()
            shares = sums / sums.sum()
            selected += 1
    return time.perf_counter() - started


def plain_python_loop(scores: torch.Tensor, keep: int) -> float:
    """Seconds of the same loop over plain Python lists (the fastest a Python loop gets)."""
    num_groups, n = scores.shape
    rankings = torch.sort(scores, dim=1, descending=True, stable=True).indices.tolist()
    columns = scores.t().double().tolist()
    totals = scores.double().sum(1).tolist()
    targets = [t / sum(totals) for t in totals]
    kept = [False] * n
    sums = [0.0] * num_groups
    pointers = [0] * num_groups
    started = time.perf_counter()
    for _ in range(keep):
        total = sum(sums)
        gaps = [(sums[g] / total if total > 0 else 1.0 / num_groups) - targets[g] for g in range(num_groups)]
        group = gaps.index(min(gaps))
        ranking, position = rankings[group], pointers[group]
        while kept[ranking[position]]:
            position += 1
        weight = ranking[position]
        pointers[group] = position + 1
        kept[weight] = True
        column = columns[weight]
        for g in range(num_groups):
            sums[g] += column[g]
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.9, 0.99])
    parser.add_argument("--scope", choices=["layer", "global"], default="layer")
    parser.add_argument("--method", default="fairgrape")
    parser.add_argument("--groups", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slice", type=int, default=50_000, help="weights in the Python-loop slice")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the floor and of each prune; the fastest counts")
    parser.add_argument("--work", type=Path, help="folder for the generated files (default: temporary)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fg-selection-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        model_path, importance = build_workload(work, groups=args.groups, seed=args.seed)
        run(args, work, model_path, importance)


def run(args, work: Path, model_path: Path, importance: Path) -> None:
    from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters

    weights = prunable_parameters(load_checkpoint(model_path).model)
    prunable = sum(w.numel() for w in weights.values())
    float32_mib = prunable * 4 / 2**20
    print(f"workload: resnet34, {len(weights)} prunable layers, {prunable:,} weights, "
          f"{args.groups} groups, importance {importance.stat().st_size / 2**20:.0f} MiB, "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")  # fmt: skip
    # warm the page cache and numba's on-disk cache so every process starts equal
    run_in_child(prune_command(importance, 0.99, "layer", args.method, work), work)

    imports_s, imports_rss = run_in_child([sys.executable, "-c", IMPORT_SCRIPT], work)
    # torch's own threads help on a quiet machine and hurt a lot on a busy one: the floor is the
    # faster of the default and one thread
    floor_s, floor_rss = min(
        run_in_child([sys.executable, "-c", FLOOR_SCRIPT, str(importance), threads], work)
        for threads in ("default", "1")
        for _ in range(args.repeat)
    )
    print(f"imports only (torch, torchvision, numba, fairgrape): {imports_s:6.2f} s  peak RSS {imports_rss:6.0f} MiB")
    print(f"floor: load + stable-sort every group of every layer: {floor_s:6.2f} s  peak RSS {floor_rss:6.0f} MiB")
    print(f"memory bound (G + 3) x float32 prunable = {(args.groups + 3) * float32_mib:.0f} MiB")
    print()
    header = f"{'rate':>6} {'scope':>6} {'selections':>12} {'prune s':>8} {'/floor':>7} {'sel/s':>12} {'peak MiB':>9} {'-imports':>9}"
    print(header)
    prune_rates = {}
    for rate in args.rates:
        seconds, peak = min(
            run_in_child(prune_command(importance, rate, args.scope, args.method, work), work)
            for _ in range(args.repeat)
        )
        if args.scope == "global":
            selections = round((1 - rate) * prunable)
        else:
            selections = sum(round((1 - rate) * w.numel()) for w in weights.values())
        prune_rates[rate] = selections / seconds
        print(f"{rate:>6} {args.scope:>6} {selections:>12,} {seconds:>8.2f} {seconds / floor_s:>7.2f} "
              f"{selections / seconds:>12,.0f} {peak:>9.0f} {peak - imports_rss:>9.0f}")  # fmt: skip
    print()

    scores = largest_layer_inputs(importance)
    rate = args.rates[0]
    selections, ranking_s, greedy_s = compiled_throughput(scores, rate)
    print(f"{LARGEST_LAYER} {tuple(scores.shape)} at rate {rate}: ranking {ranking_s:.3f} s, greedy "
          f"{greedy_s:.3f} s for {selections:,} selections = {selections / greedy_s:,.0f} /s")  # fmt: skip
    piece = scores[:, : args.slice].contiguous()
    keep = round(0.9 * args.slice)
    upstream = keep / per_step_loop(piece, keep)
    plain = keep / plain_python_loop(piece, keep)
    print(f"per-step Python loop on its first {args.slice:,} weights, {keep:,} selections: "
          f"{upstream:,.0f} /s with numpy/torch ops per step (upstream style), {plain:,.0f} /s with plain lists")
    print(f"compiled greedy: {selections / greedy_s / upstream:,.0f}x the upstream-style loop, "
          f"{selections / greedy_s / plain:,.0f}x the plain-list loop; whole prune process at rate {rate}: "
          f"{prune_rates[rate] / upstream:,.0f}x / {prune_rates[rate] / plain:,.1f}x")


if __name__ == "__main__":
    main()

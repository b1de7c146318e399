"""Data-pruning benchmark: do DRoP's quotas keep the worst group (and class) better than random pruning?

For each seed and each of two datasets, generate the biased synthetic data (a majority and a 20%
minority whose images map the stripe cues to the 4 classes in another order; see
fairgrape_cli/flows/synthetic.py), and its class-imbalanced variant (the same generator, then
the training rows of classes c1, c2, c3 thinned to 60%, 35% and 20%; val and test untouched).
Train a TinyCNN from one seeded initialisation on the full training set: that model is also the
query model. Then, at each density d, prune the training set with `data-prune` (uniform random per
class; DRoP by class; DRoP by group; random within each unit) and train the same
initialisation on each subset with the same settings (`finetune --dense`: same epochs, so smaller
subsets get fewer steps; the best epoch on val is kept). Evaluate on the test split: overall
accuracy, worst-group accuracy (majority/minority) and worst-class accuracy. Prints mean and
standard deviation over seeds, and per d how many seeds DRoP's worst-group accuracy was at least
the uniform subset's. Not run by CI.

torch runs with one thread: on a shared 2-core machine two threads per process spin against other
processes (one epoch took 39 s with 2 threads and 6 s with 1 under a load average of 12).

Recorded (2-core CPU shared with other jobs, load average about 12, torch 2.14, the command
below; 22.3 minutes, 5.8 minutes of CPU): test accuracy in percent, mean ± std over seeds 0 1 2.

    biased: mean ± std over seeds, test accuracy in percent
      d      subset      accuracy  worst_group_accuracy  worst_class_accuracy
      1        full   87.6 ±  7.4           51.8 ± 31.0           79.4 ±  9.9
    0.3     uniform   68.1 ±  2.5           21.5 ±  2.6           43.5 ±  8.5
    0.3  drop-class   64.1 ± 12.7           20.9 ±  7.9           40.6 ± 36.6
    0.3  drop-group   42.4 ± 10.9           40.9 ± 11.1           12.7 ± 21.2
    0.5     uniform   69.9 ±  6.7           27.9 ±  5.9           35.2 ± 28.9
    0.5  drop-class   75.3 ±  7.2           36.2 ±  9.6           60.0 ± 14.2
    0.5  drop-group   60.7 ±  4.8           47.3 ±  5.6           18.3 ±  7.8
    0.8     uniform   82.5 ±  8.9           39.4 ± 24.5           70.5 ± 18.2
    0.8  drop-class   82.8 ±  2.5           47.5 ±  4.5           69.8 ±  4.2
    0.8  drop-group   78.8 ±  5.7           40.8 ± 17.8           62.5 ± 10.2
      d=0.3: drop-group worst-group >= uniform in 3/3 seeds
      d=0.3: drop-class worst-group >= uniform in 1/3 seeds
      d=0.5: drop-group worst-group >= uniform in 3/3 seeds
      d=0.5: drop-class worst-group >= uniform in 2/3 seeds
      d=0.8: drop-group worst-group >= uniform in 1/3 seeds
      d=0.8: drop-class worst-group >= uniform in 2/3 seeds

    imbalanced: mean ± std over seeds, test accuracy in percent
      d      subset      accuracy  worst_group_accuracy  worst_class_accuracy
      1        full   71.9 ± 11.5           33.8 ±  4.4           47.6 ± 29.5
    0.3     uniform   44.7 ± 11.4           17.8 ±  3.7            4.8 ±  8.4
    0.3  drop-class   55.3 ± 19.3           20.0 ±  9.8           20.9 ± 34.6
    0.3  drop-group   42.6 ±  2.7           32.5 ±  8.2            4.8 ±  8.3
    0.5     uniform   60.8 ± 11.5           21.1 ±  7.6           21.5 ± 37.2
    0.5  drop-class   65.0 ±  9.0           26.3 ±  1.4           27.4 ± 26.0
    0.5  drop-group   49.9 ±  3.9           29.5 ± 10.0            6.5 ± 11.2
    0.8     uniform   71.9 ±  7.4           25.2 ± 10.4           56.5 ± 15.8
    0.8  drop-class   74.5 ±  3.1           24.5 ±  9.0           54.3 ± 12.5
    0.8  drop-group   73.0 ±  1.6           26.7 ± 14.7           45.4 ± 20.2
      d=0.3: drop-group worst-group >= uniform in 3/3 seeds
      d=0.3: drop-class worst-group >= uniform in 1/3 seeds
      d=0.5: drop-group worst-group >= uniform in 3/3 seeds
      d=0.5: drop-class worst-group >= uniform in 2/3 seeds
      d=0.8: drop-group worst-group >= uniform in 2/3 seeds
      d=0.8: drop-class worst-group >= uniform in 1/3 seeds

DRoP by group kept the worst group better than uniform pruning at d = 0.3 and 0.5 in every seed on
both datasets, not at 0.8, and cost average and worst-class accuracy (the minority is kept whole,
the majority thinned). DRoP by class helped the worst class at d = 0.5 only. The spreads are wide
(the full-data models themselves differ by 31 points in worst-group accuracy across seeds). An
earlier run with noise 1.2 was stopped after seed 0 of the biased data: the query model was right
on every validation image, every recall was 1, and DRoP reduced to uniform pruning (Z = 0).

    python benchmarks/data_pruning.py --seeds 0 1 2 --output benchmark-runs/data-pruning
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fairgrape_cli import stages
from fairgrape_cli.flows.synthetic import TINY_ARCH, SyntheticSpec, make_biased_dataset
from fairgrape_cli.io.checkpoints import build_model
from fairgrape_cli.io.data import DataSpec

CLASSES = ("c0", "c1", "c2", "c3")
DATA = SyntheticSpec(classes=CLASSES, noise=1.4, per_split=(("train", 640), ("val", 240), ("test", 480)))
IMBALANCED_DATA = SyntheticSpec(classes=CLASSES, noise=1.4, per_split=(("train", 960), ("val", 240), ("test", 480)))
THINNED = {"c0": 1.0, "c1": 0.6, "c2": 0.35, "c3": 0.2}  # kept share of each class's training rows
# subset name -> data-prune settings (None: the full training set)
SUBSETS = {
    "full": None,
    "uniform": {"quota": "uniform", "by": "target"},
    "drop-class": {"quota": "drop", "by": "target"},
    "drop-group": {"quota": "drop", "by": "group"},
}
METRICS = ("accuracy", "worst_group_accuracy", "worst_class_accuracy")
TRAINING = {"epochs": 10, "lr": 3e-3, "batch_size": 32}


def make_data(root: Path, variant: str, seed: int) -> Path:
    """The variant's dataset under ``root`` (reused when already there)."""
    if (root / "labels.csv").exists():
        return root
    spec = DATA if variant == "biased" else IMBALANCED_DATA
    make_biased_dataset(root, replace(spec, seed=seed))
    if variant == "imbalanced":
        with open(root / "labels.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        rng = np.random.default_rng(seed)
        kept = [row for row in rows if row["split"] != "train" or rng.random() < THINNED[row["label"]]]
        with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["path", "label", "group", "split"])
            writer.writeheader()
            writer.writerows(kept)
    return root


def loading(device: str) -> stages.Loading:
    return stages.Loading(batch_size=TRAINING["batch_size"], device=device, workers=0)


def train(initial: Path, data: Path, labels: Path | None, output: Path, seed: int, device: str) -> Path:
    if not output.exists():
        stages.finetune(
            model=stages.ModelSource(initial),
            data=DataSpec(root=data, labels=labels),
            dense=True,
            output=output,
            loading=loading(device),
            epochs=TRAINING["epochs"],
            lr=TRAINING["lr"],
            seed=seed,
        )
    return output


def evaluate(model: Path, data: Path, device: str) -> dict:
    by_group = stages.report(
        model=stages.ModelSource(model), data=DataSpec(root=data, groups="group"), loading=loading(device)
    ).report.to_dict()
    by_class = stages.report(
        model=stages.ModelSource(model), data=DataSpec(root=data, groups="label"), loading=loading(device)
    ).report.to_dict()
    return {
        "accuracy": by_group["overall"]["accuracy"],
        "worst_group_accuracy": by_group["disparity"]["worst_group_accuracy"],
        "worst_class_accuracy": by_class["disparity"]["worst_group_accuracy"],
        "groups": {row["group"]: row["accuracy"] for row in by_group["groups"]},
        "classes": {row["group"]: row["accuracy"] for row in by_class["groups"]},
    }


def run_seed(directory: Path, variant: str, seed: int, densities: list[float], device: str) -> list[dict]:
    directory.mkdir(parents=True, exist_ok=True)
    data = make_data(directory / "data", variant, seed)
    initial = directory / "initial.pt"
    if not initial.exists():
        torch.manual_seed(seed)
        torch.save(
            {"arch": TINY_ARCH, "num_classes": len(CLASSES), "classes": list(CLASSES),
             "state_dict": build_model(TINY_ARCH, len(CLASSES)).state_dict(), "image_size": DATA.size},
            initial,
        )  # fmt: skip
    full = train(initial, data, None, directory / "full.pt", seed, device)
    rows = [{"variant": variant, "seed": seed, "d": 1.0, "subset": "full", **evaluate(full, data, device)}]
    print(json.dumps(rows[-1]), flush=True)
    for density in densities:
        for name, settings in SUBSETS.items():
            if settings is None:
                continue
            manifest = directory / f"{name}-{density}.csv"
            if not manifest.exists():
                stages.data_prune(
                    model=stages.ModelSource(full),
                    data=DataSpec(root=data, groups="group"),
                    keep=density,
                    output=manifest,
                    loading=loading(device),
                    seed=seed,
                    **settings,
                )
            model = train(initial, data, manifest, directory / f"{name}-{density}.pt", seed, device)
            rows.append({"variant": variant, "seed": seed, "d": density, "subset": name, **evaluate(model, data, device)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(results: list[dict], variant: str, densities: list[float]) -> list[str]:
    lines = [f"{variant}: mean ± std over seeds, test accuracy in percent"]
    header = ["d", "subset", *METRICS]
    table = []
    for density in [1.0, *densities]:
        for name in SUBSETS:
            mine = [r for r in results if r["variant"] == variant and r["d"] == density and r["subset"] == name]
            if not mine:
                continue
            cells = [f"{density:g}", name]
            for metric in METRICS:
                values = [100 * r[metric] for r in mine]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):5.1f} ± {spread:4.1f}")
            table.append(cells)
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [header, *table]]
    for density in densities:
        by_seed = {}
        for r in results:
            if r["variant"] == variant and r["d"] == density:
                by_seed.setdefault(r["seed"], {})[r["subset"]] = r["worst_group_accuracy"]
        for name in ("drop-group", "drop-class"):
            wins = sum(v[name] >= v["uniform"] - 1e-12 for v in by_seed.values() if name in v and "uniform" in v)
            lines.append(f"  d={density:g}: {name} worst-group >= uniform in {wins}/{len(by_seed)} seeds")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.3, 0.5, 0.8])
    parser.add_argument("--variants", nargs="+", default=["biased", "imbalanced"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: see the docstring)")
    parser.add_argument("--output", type=Path, default=Path("benchmark-runs/data-pruning"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    results = []
    for variant in args.variants:
        for seed in args.seeds:
            results += run_seed(args.output / f"{variant}-seed-{seed}", variant, seed, args.densities, args.device)
    elapsed = time.perf_counter() - started
    (args.output / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n{len(args.seeds)} seed(s), {elapsed / 60:.1f} min; rows in {args.output / 'results.json'}\n")
    for variant in args.variants:
        print("\n".join(summarise(results, variant, args.densities)) + "\n")


if __name__ == "__main__":
    main()

"""Fairness benchmark: which pruning recipe (method x fine-tuning objective x schedule) loses least
on the worst-served group?

For each dataset and seed: generate a biased dataset (a majority and a minority whose images show
the class differently, see fairgrape_cli/flows/synthetic.py), train the demo's wide CNN on it to
convergence, then run every recipe with the same settings (one fine-tuning epoch per iteration,
three at the end, lr 1e-3, batch 32) and evaluate on the test split against the dense model.
Methods: fairgrape, taylor, magnitude, random. Objectives: erm, balanced, group-dro. Schedules at
rate 0.9: keep 0.5 per iteration (4 iterations), keep 0.9 (22, the paper's step), one-shot; at
rate 0.99: keep 0.1 (2 iterations). Datasets: the demo's (640 training images, 20% minority) and
a harder variant with a 10% minority. Prints mean ± std over seeds and picks the recipe the issue
asks for: among the recipes whose mean accuracy is within 1 point of the best, the lowest mean
drop_gap. ``--variants`` measures the objectives' own options instead (balanced by sampling, by
loss weights or per class x group cell; group-dro's step), with magnitude pruning.

Not run by CI. Runs resume: rerunning with the same --output reads finished runs back.

    python benchmarks/fairness.py --seeds 0 1 2 --jobs 2 --output benchmark-runs/fairness
    python benchmarks/fairness.py --variants --seeds 0 1 2 --jobs 2 --output benchmark-runs/variants

RESULTS (`python benchmarks/fairness.py --seeds 0 1 2 --jobs 2`, 288 runs, torch 2.14 on our 2-core
VM; README.md, "Which recipe protects the worst group", has the rate-0.9 table and what it says).
Accuracy / worst-group accuracy / drop_gap in %/points, mean ± std over seeds 0 1 2:

    demo data (20% minority), rate 0.9
      keep 0.5  fairgrape  erm        71.5 ± 18.9  43.4 ± 13.4  18.5 ± 8.8
      keep 0.5  fairgrape  balanced   60.1 ± 11.0  49.7 ± 20.7  16.9 ± 8.8
      keep 0.5  fairgrape  group-dro  69.4 ± 14.6  54.3 ± 5.9   14.5 ± 10.6
      keep 0.5  taylor     erm        83.3 ± 1.8   35.9 ± 4.5   42.4 ± 9.2
      keep 0.5  taylor     balanced   73.0 ± 13.5  52.8 ± 14.6  12.7 ± 8.3
      keep 0.5  taylor     group-dro  62.2 ± 7.9   48.1 ± 10.9  9.8 ± 6.0
      keep 0.5  magnitude  erm        92.2 ± 4.6   66.6 ± 19.0  15.8 ± 11.3
      keep 0.5  magnitude  balanced   92.0 ± 2.6   80.7 ± 7.9   2.2 ± 2.4
      keep 0.5  magnitude  group-dro  93.8 ± 3.8   82.4 ± 9.3   2.1 ± 2.1
      keep 0.5  random     erm        78.3 ± 3.2   18.2 ± 9.3   57.9 ± 23.3
      keep 0.5  random     balanced   65.0 ± 11.8  46.8 ± 4.1   14.5 ± 6.3
      keep 0.5  random     group-dro  55.3 ± 15.2  37.1 ± 8.3   13.3 ± 6.1
      keep 0.9  fairgrape  erm        82.3 ± 8.7   46.4 ± 4.2   28.1 ± 13.9
      keep 0.9  fairgrape  balanced   77.5 ± 6.9   52.8 ± 7.1   14.9 ± 14.7
      keep 0.9  fairgrape  group-dro  73.1 ± 6.9   55.5 ± 9.0   7.5 ± 8.9
      keep 0.9  taylor     erm        79.8 ± 5.1   49.9 ± 5.7   20.7 ± 14.0
      keep 0.9  taylor     balanced   74.5 ± 9.2   55.6 ± 6.2   13.2 ± 3.9
      keep 0.9  taylor     group-dro  74.8 ± 8.3   57.9 ± 12.7  5.0 ± 5.0
      keep 0.9  magnitude  erm        91.9 ± 4.7   70.7 ± 14.7  10.2 ± 4.2
      keep 0.9  magnitude  balanced   92.9 ± 2.9   77.8 ± 5.3   5.3 ± 1.8
      keep 0.9  magnitude  group-dro  91.0 ± 5.5   77.6 ± 10.5  3.8 ± 2.4
      keep 0.9  random     erm        77.4 ± 9.1   51.4 ± 4.7   15.9 ± 13.5
      keep 0.9  random     balanced   70.1 ± 9.4   55.3 ± 7.1   14.1 ± 7.5
      keep 0.9  random     group-dro  65.2 ± 20.2  53.3 ± 10.6  14.4 ± 10.8
      one-shot  fairgrape  erm        64.9 ± 17.0  38.6 ± 9.1   22.8 ± 21.4
      one-shot  fairgrape  balanced   53.3 ± 14.7  42.4 ± 10.3  13.2 ± 15.2
      one-shot  fairgrape  group-dro  45.0 ± 9.0   38.0 ± 4.6   20.2 ± 18.2
      one-shot  taylor     erm        58.0 ± 4.2   23.6 ± 6.0   26.4 ± 16.9
      one-shot  taylor     balanced   43.2 ± 10.8  32.6 ± 7.4   17.2 ± 11.9
      one-shot  taylor     group-dro  38.1 ± 1.2   31.3 ± 5.3   12.9 ± 11.1
      one-shot  magnitude  erm        88.8 ± 4.9   52.0 ± 7.3   29.3 ± 7.2
      one-shot  magnitude  balanced   86.6 ± 9.0   70.8 ± 11.7  5.4 ± 2.1
      one-shot  magnitude  group-dro  82.5 ± 9.6   74.6 ± 17.1  8.0 ± 5.5
      one-shot  random     erm        76.6 ± 1.4   14.1 ± 3.6   61.0 ± 13.1
      one-shot  random     balanced   48.5 ± 19.8  30.8 ± 3.5   24.2 ± 13.4
      one-shot  random     group-dro  55.3 ± 4.8   36.8 ± 9.1   7.2 ± 8.0

    demo data (20% minority), rate 0.99
      keep 0.1  fairgrape  erm        31.6 ± 10.6  23.2 ± 2.2   21.8 ± 9.3
      keep 0.1  fairgrape  balanced   26.0 ± 1.0   24.2 ± 1.8   26.1 ± 9.0
      keep 0.1  fairgrape  group-dro  24.8 ± 4.8   22.9 ± 4.4   25.8 ± 9.6
      keep 0.1  taylor     erm        26.1 ± 3.5   22.2 ± 6.1   11.9 ± 12.5
      keep 0.1  taylor     balanced   22.9 ± 2.5   21.6 ± 2.4   22.2 ± 13.4
      keep 0.1  taylor     group-dro  24.7 ± 2.0   20.1 ± 3.5   16.9 ± 20.8
      keep 0.1  magnitude  erm        27.1 ± 4.0   26.8 ± 4.2   16.5 ± 9.3
      keep 0.1  magnitude  balanced   25.3 ± 3.0   21.2 ± 4.7   11.0 ± 11.1
      keep 0.1  magnitude  group-dro  24.1 ± 2.2   20.3 ± 3.7   12.6 ± 13.7
      keep 0.1  random     erm        26.5 ± 0.5   22.7 ± 5.0   17.4 ± 15.6
      keep 0.1  random     balanced   23.3 ± 2.8   22.3 ± 2.0   21.5 ± 13.2
      keep 0.1  random     group-dro  25.2 ± 2.3   20.6 ± 4.6   13.6 ± 16.9

    minority at 10%, rate 0.9
      keep 0.5  fairgrape  erm        86.6 ± 8.0   13.4 ± 11.5  21.9 ± 10.1
      keep 0.5  fairgrape  balanced   74.5 ± 8.8   32.8 ± 8.2   25.9 ± 17.4
      keep 0.5  fairgrape  group-dro  76.7 ± 2.9   25.5 ± 10.7  10.0 ± 7.6
      keep 0.5  taylor     erm        81.9 ± 8.8   11.3 ± 6.8   28.4 ± 20.1
      keep 0.5  taylor     balanced   82.6 ± 3.7   42.2 ± 16.3  14.5 ± 7.9
      keep 0.5  taylor     group-dro  60.4 ± 10.5  32.7 ± 15.6  41.1 ± 24.0
      keep 0.5  magnitude  erm        91.2 ± 2.0   14.6 ± 12.7  25.7 ± 10.6
      keep 0.5  magnitude  balanced   86.9 ± 1.2   36.9 ± 9.9   12.3 ± 8.8
      keep 0.5  magnitude  group-dro  79.1 ± 6.7   43.4 ± 8.7   19.8 ± 8.3
      keep 0.5  random     erm        87.4 ± 2.7   12.6 ± 12.7  23.6 ± 15.1
      keep 0.5  random     balanced   55.1 ± 10.3  18.8 ± 3.6   19.0 ± 16.6
      keep 0.5  random     group-dro  27.8 ± 5.3   19.5 ± 6.6   50.0 ± 21.3
      keep 0.9  fairgrape  erm        86.4 ± 2.3   13.8 ± 2.8   25.6 ± 16.6
      keep 0.9  fairgrape  balanced   84.1 ± 3.0   31.5 ± 7.4   12.4 ± 6.7
      keep 0.9  fairgrape  group-dro  69.3 ± 3.2   39.0 ± 10.7  25.8 ± 10.3
      keep 0.9  taylor     erm        85.8 ± 3.9   25.6 ± 14.0  10.1 ± 5.5
      keep 0.9  taylor     balanced   85.1 ± 2.6   24.0 ± 12.2  10.9 ± 6.3
      keep 0.9  taylor     group-dro  59.0 ± 10.0  30.0 ± 3.2   27.2 ± 34.9
      keep 0.9  magnitude  erm        90.3 ± 1.1   13.0 ± 2.0   26.5 ± 22.4
      keep 0.9  magnitude  balanced   91.4 ± 4.3   47.5 ± 23.0  18.0 ± 6.0
      keep 0.9  magnitude  group-dro  87.2 ± 4.2   38.4 ± 16.5  5.1 ± 3.9
      keep 0.9  random     erm        73.9 ± 10.9  23.5 ± 8.8   25.8 ± 19.1
      keep 0.9  random     balanced   74.5 ± 11.2  26.8 ± 2.9   25.2 ± 20.3
      keep 0.9  random     group-dro  43.1 ± 20.9  25.3 ± 7.5   39.7 ± 35.9
      one-shot  fairgrape  erm        68.9 ± 17.9  11.4 ± 12.2  20.9 ± 5.8
      one-shot  fairgrape  balanced   61.7 ± 9.8   27.7 ± 9.7   21.5 ± 23.1
      one-shot  fairgrape  group-dro  49.8 ± 8.4   28.4 ± 13.1  35.5 ± 18.4
      one-shot  taylor     erm        69.7 ± 16.2  19.3 ± 21.1  47.1 ± 24.6
      one-shot  taylor     balanced   57.8 ± 10.3  33.5 ± 6.6   32.2 ± 32.1
      one-shot  taylor     group-dro  34.7 ± 7.7   28.2 ± 4.7   59.0 ± 39.2
      one-shot  magnitude  erm        89.8 ± 0.7   14.7 ± 3.1   26.3 ± 20.2
      one-shot  magnitude  balanced   76.2 ± 7.0   40.6 ± 11.1  26.1 ± 36.5
      one-shot  magnitude  group-dro  75.7 ± 5.6   38.8 ± 13.6  18.3 ± 10.6
      one-shot  random     erm        82.3 ± 6.3   11.1 ± 7.8   19.6 ± 9.6
      one-shot  random     balanced   54.4 ± 25.0  16.8 ± 2.1   17.5 ± 12.1
      one-shot  random     group-dro  51.5 ± 8.6   30.1 ± 10.3  35.5 ± 7.6

    minority at 10%, rate 0.99
      keep 0.1  fairgrape  erm        31.6 ± 5.5   19.4 ± 4.9   54.0 ± 46.7
      keep 0.1  fairgrape  balanced   30.0 ± 5.9   22.3 ± 11.8  53.5 ± 34.1
      keep 0.1  fairgrape  group-dro  27.2 ± 1.7   21.8 ± 9.3   59.0 ± 34.9
      keep 0.1  taylor     erm        28.0 ± 4.7   23.4 ± 9.9   61.4 ± 37.9
      keep 0.1  taylor     balanced   31.5 ± 4.4   18.4 ± 7.4   50.8 ± 44.1
      keep 0.1  taylor     group-dro  25.6 ± 2.6   17.1 ± 5.2   57.2 ± 41.6
      keep 0.1  magnitude  erm        25.0 ± 2.3   19.3 ± 6.3   54.2 ± 23.2
      keep 0.1  magnitude  balanced   27.2 ± 1.7   22.4 ± 2.6   56.8 ± 20.5
      keep 0.1  magnitude  group-dro  25.2 ± 4.0   24.2 ± 4.1   70.3 ± 24.1
      keep 0.1  random     erm        27.1 ± 2.3   23.0 ± 5.5   57.0 ± 18.0
      keep 0.1  random     balanced   23.0 ± 2.7   20.5 ± 4.5   63.1 ± 13.5
      keep 0.1  random     group-dro  24.2 ± 2.1   19.2 ± 6.1   55.1 ± 22.1

The recipe rule over both datasets at rate 0.9 (lowest mean drop_gap among recipes within 1 point
of the best mean accuracy, 92.1%): keep 0.9, magnitude, balanced (11.6 points at 92.1%, worst group
62.6%); plain magnitude keep 0.5 erm was the only other one in reach (20.7 points at 91.7%, 40.6%).
Per dataset: demo -> keep 0.5, magnitude, group-dro (2.1 at 93.8%); minority 10% -> keep 0.9,
magnitude, balanced (18.0 at 91.4%). At rate 0.99 every recipe was near chance (25%), so were
magnitude keep 0.5 and keep 0.1 with --scope global (seed 0, demo data: 25.6% and 26.6%): these
rows cannot rank recipes on this CNN.

VARIANTS (`python benchmarks/fairness.py --variants --datasets demo --seeds 0 1 2 --jobs 2`):
    variant              accuracy %   worst group %  drop_gap pts
    erm                  92.2 ± 4.6   66.6 ± 19.0    15.8 ± 11.3
    balanced sampling    92.0 ± 2.6   80.7 ± 7.9     2.2 ± 2.4
    balanced weights     92.6 ± 6.0   79.7 ± 18.6    5.2 ± 3.0
    balanced cells       92.3 ± 4.8   76.3 ± 16.7    7.7 ± 1.8
    group-dro step 0.01  93.5 ± 3.9   83.5 ± 9.0     3.6 ± 2.6
    group-dro step 0.1   93.8 ± 3.8   82.4 ± 9.3     2.1 ± 2.1
    group-dro step 1     87.0 ± 7.8   80.5 ± 5.9     9.1 ± 9.1

EARLIER (fairgrape 0.1, methods only, fine-tuning erm; 2-core CPU, torch 2.15, `python
benchmarks/fairness.py --seeds 0 1 2 --rates 0.9 0.99` of that version; mean over seeds 0 1 2):
at rate 0.9 magnitude pruning had the best accuracy (94.1%) and drop_gap (8.4 points); FairGRAPE
83.2% / 35.4, taylor 79.7% / 35.8, random 82.3% / 60.6. At 0.99 (keep 0.5) every method was near
chance (4 classes). On the converged dense model, importance from batch gradients ranks weights
worse than magnitude does: one-shot pruning of seed 0's model to 50% leaves 51% test accuracy
with FairGRAPE (76% with magnitude; 69% when scored with batches of 4 instead of 32), and one
fine-tuning epoch brings magnitude back to 96% but FairGRAPE only to 82%. With 4x the training
images (2560, seed 0, rate 0.9) the methods come close: FairGRAPE 97.5% / 4.0, magnitude
98.6% / 3.6, taylor 96.6% / 3.3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from fairgrape_cli.flows.experiment import DEMO_SPEC, Recipe, prepare, run_recipes

METHODS = ("fairgrape", "taylor", "magnitude", "random")
OBJECTIVES = ("erm", "balanced", "group-dro")
DATASETS = {
    "demo": DEMO_SPEC.data,
    "minority10": replace(DEMO_SPEC.data, minority_fraction=0.1),
}
# rate -> schedules (None: one-shot)
SCHEDULES = {0.9: (0.5, 0.9, None), 0.99: (0.1,)}
VARIANTS = {  # label -> the objective's options (with magnitude pruning)
    "erm": {"objective": "erm"},
    "balanced sampling": {"objective": "balanced"},
    "balanced weights": {"objective": "balanced", "balance_by": "weights"},
    "balanced cells": {"objective": "balanced", "balance_unit": "cell"},
    "group-dro step 0.01": {"objective": "group-dro", "dro_step": 0.01},
    "group-dro step 0.1": {"objective": "group-dro", "dro_step": 0.1},
    "group-dro step 1": {"objective": "group-dro", "dro_step": 1.0},
}
# metric -> (how to read it from a report, True when higher is better)
METRICS = {
    "accuracy": (lambda r: r["overall"]["accuracy"], True),
    "worst_group_accuracy": (lambda r: r["disparity"]["worst_group_accuracy"], True),
    "drop_gap": (lambda r: r["disparity"]["drop_gap"], False),
    "drop_std": (lambda r: r["disparity"]["drop_std"], False),
}


def schedule_name(keep: float | None) -> str:
    return "one-shot" if keep is None else f"keep {keep:g}"


def grid(args) -> list[dict]:
    """Every run: its folder, spec, recipe, and the labels it is tabled under."""
    cells = []
    for dataset in args.datasets:
        for seed in args.seeds:
            directory = args.output / dataset / f"seed-{seed}"
            base = replace(DEMO_SPEC, seed=seed, data=replace(DATASETS[dataset], seed=seed), device="cpu")
            if args.variants:
                for rate, keep in ((0.9, 0.5),):  # at 0.99 every recipe was at chance (see RESULTS)
                    for name, options in VARIANTS.items():
                        recipe = Recipe(method="magnitude", keep_per_iter=keep, **options)
                        cells.append({"dataset": dataset, "seed": seed, "rate": rate, "schedule": schedule_name(keep),
                                      "method": "magnitude", "objective": name, "directory": directory,
                                      "spec": replace(base, rate=rate), "recipe": recipe})  # fmt: skip
                continue
            for rate, schedules in SCHEDULES.items():
                for keep in schedules:
                    for method in METHODS:
                        for objective in OBJECTIVES:
                            recipe = Recipe(method=method, keep_per_iter=keep, objective=objective)
                            cells.append({"dataset": dataset, "seed": seed, "rate": rate,
                                          "schedule": schedule_name(keep), "method": method, "objective": objective,
                                          "directory": directory, "spec": replace(base, rate=rate),
                                          "recipe": recipe})  # fmt: skip
    return cells


def label_of(cell: dict) -> str:
    return "-".join(part.replace(" ", "") for part in (cell["method"], cell["objective"], cell["schedule"]))


def _prepare(directory: Path, spec) -> None:
    prepare(directory, spec)


def _run(cell: dict) -> dict:
    report = run_recipes(cell["directory"], cell["spec"], {label_of(cell): cell["recipe"]})[label_of(cell)].to_dict()
    row = {key: cell[key] for key in ("dataset", "seed", "rate", "schedule", "method", "objective")}
    row.update({name: read(report) for name, (read, _) in METRICS.items()})
    row["groups"] = {g["group"]: {"accuracy": g["accuracy"], "drop": g["drop"]} for g in report["groups"]}
    return row


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--variants", action="store_true", help="compare the objectives' options instead")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each on one thread)")
    parser.add_argument("--output", type=Path, default=Path("benchmark-runs/fairness"))
    args = parser.parse_args()

    cells = grid(args)
    started = time.perf_counter()
    dense = {(cell["dataset"], cell["seed"]): cell for cell in cells}
    with ProcessPoolExecutor(args.jobs, initializer=_single_threaded if args.jobs > 1 else None) as pool:
        list(pool.map(_prepare, [c["directory"] for c in dense.values()], [c["spec"] for c in dense.values()]))
        print(f"{len(dense)} dense model(s) ready after {(time.perf_counter() - started) / 60:.1f} min", flush=True)
        rows = []
        for row in pool.map(_run, cells):
            rows.append(row)
            print(json.dumps(row), flush=True)
    elapsed = time.perf_counter() - started
    (args.output / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{len(rows)} runs, {elapsed / 60:.1f} min on {os.cpu_count()} cores, {args.jobs} job(s); "
          f"rows in {args.output / 'results.json'}\n")  # fmt: skip
    summarise(rows)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict]) -> None:
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        for rate in dict.fromkeys(row["rate"] for row in rows):
            mine = [row for row in rows if row["dataset"] == dataset and row["rate"] == rate]
            if not mine:
                continue
            seeds = len({row["seed"] for row in mine})
            print(f"## {dataset}, rate {rate}: mean ± std over {seeds} seed(s); accuracy in %, drops in points\n")
            recipes = {}
            for row in mine:
                recipes.setdefault((row["schedule"], row["method"], row["objective"]), []).append(row)
            groups = sorted(mine[0]["groups"])
            header = ["schedule", "method", "objective", *METRICS, *(f"{g} drop" for g in groups)]
            table = []
            means = {}
            for key, runs in recipes.items():
                columns = {name: [run[name] for run in runs] for name in METRICS}
                columns.update({f"{g} drop": [run["groups"][g]["drop"] for run in runs] for g in groups})
                means[key] = {name: _mean_std(values)[0] for name, values in columns.items()}
                table.append([*key, *(f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in map(_mean_std, columns.values()))])
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for line in table:
                print("| " + " | ".join(line) + " |")
            best_accuracy = max(m["accuracy"] for m in means.values())
            near = {key: m for key, m in means.items() if m["accuracy"] >= best_accuracy - 0.01}
            chosen = min(near, key=lambda key: near[key]["drop_gap"])
            print(f"\nbest mean accuracy {100 * best_accuracy:.1f}%; within 1 point of it, the lowest drop_gap: "
                  f"{', '.join(chosen)} ({100 * near[chosen]['drop_gap']:.1f} points at "
                  f"{100 * near[chosen]['accuracy']:.1f}%)")  # fmt: skip
            print("against plain magnitude (erm) on the same schedule, the five lowest drop_gaps:")
            for key, m in sorted(means.items(), key=lambda item: item[1]["drop_gap"])[:5]:
                plain = means.get((key[0], "magnitude", "erm"))
                if plain is None:
                    continue
                ratio = m["drop_gap"] / plain["drop_gap"] if plain["drop_gap"] > 0 else float("inf")
                print(f"  {', '.join(key)}: drop_gap {ratio:.2f}x plain magnitude's, accuracy "
                      f"{100 * (m['accuracy'] - plain['accuracy']):+.1f} points")  # fmt: skip
            print()
    pick_over_datasets(rows)


def pick_over_datasets(rows: list[dict]) -> None:
    """The recipe rule on every run of a rate pooled over the datasets (one recipe for both)."""
    for rate in dict.fromkeys(row["rate"] for row in rows):
        recipes = {}
        for row in rows:
            if row["rate"] == rate:
                recipes.setdefault((row["schedule"], row["method"], row["objective"]), []).append(row)
        means = {
            key: {name: statistics.fmean(run[name] for run in runs) for name in METRICS}
            for key, runs in recipes.items()
        }
        best = max(m["accuracy"] for m in means.values())
        near = sorted((m["drop_gap"], key) for key, m in means.items() if m["accuracy"] >= best - 0.01)
        print(f"## every dataset, rate {rate}: best mean accuracy {100 * best:.1f}%; within 1 point of it:")
        for gap, key in near:
            m = means[key]
            print(f"  {', '.join(key)}: drop_gap {100 * gap:.1f}, accuracy {100 * m['accuracy']:.1f}, "
                  f"worst group {100 * m['worst_group_accuracy']:.1f} ({len(recipes[key])} runs)")  # fmt: skip
        print()


if __name__ == "__main__":
    main()

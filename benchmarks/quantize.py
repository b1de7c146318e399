"""int8 quantization: how much smaller and faster, and what does it cost each group?

Speed (``--part speed``): resnet18 at 224 px with random weights (10 classes), dense and
channel-pruned at rate 0.5 (`prune --granularity channel --method magnitude`, per layer: the kept
widths, hence the speed, do not depend on the method), each written as a checkpoint, exported to
fp32 ONNX (`fairgrape export`) and quantized (`fairgrape quantize`, calibrated on --data's images at
224 px). File sizes, and CPU latency at batch 1 and 64 of the PyTorch checkpoint and of both ONNX
files in onnxruntime, the same thread count for all (one by default: on a shared machine a
two-thread kernel waits for whichever thread was descheduled), measured in interleaved rounds in
the same run so that the machine's load falls on every model alike; median and interquartile
range of the rounds; speed-up = median of the rounds' ratios against the dense fp32 checkpoint.

Accuracy (``--part accuracy``): real images, Fashion-MNIST (the Debian package
dataset-fashion-mnist, /usr/share/datasets/fashion-mnist; the fairness benchmark's real-image
datasets were not on main when this ran). Its natural subgroup: how dark a garment is; "dark" are
the quarter of each class's images with the lowest mean intensity over the garment's pixels,
"light" the rest. A resnet18 (random init) is trained on --train images (`finetune --dense`,
32 px), then quantized with and without `--max-group-drop` (calibration seeds --seeds: the
balanced calibration sample is drawn anew), and each file is judged with `fairgrape report` on the
test split against the checkpoint: per-group accuracy and drop, the file's size.

    python benchmarks/quantize.py --part speed --data benchmark-runs/quantize/fashion
    python benchmarks/quantize.py --part accuracy --output benchmark-runs/quantize --seeds 0 1 2

Not run by CI. RESULTS (README.md, "Smaller still: int8 quantization", has them with what they say),
on our 2-core VM under a load average of 7 to 12 from other jobs:

Speed, batch 64, one thread: the dense fp32 checkpoint 20.6 s; dense fp32 ONNX 2.15x faster, dense
int8 5.94x, slim fp32 checkpoint 2.90x, slim fp32 ONNX 7.81x, slim int8 14.46x (IQR 4.28). Files:
dense fp32 ONNX 44.7 MB, int8 11.3 MB (25%); slim 11.2 MB and 2.9 MB.

Accuracy (--epochs 2, seeds 0 1 2), test split, accuracy % dark / light: checkpoint and fp32 ONNX
78.63 / 81.01 (identical); int8 78.76 ± 0.09 / 81.16 ± 0.17, with and without --max-group-drop 0.01
(no layer returned: no group dropped).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def run(*args: str) -> int:
    """``fairgrape ARGS`` in this process, as the shell runs it; returns the exit code."""
    from fairgrape_cli.cli import main

    sys.argv = ["fairgrape", *map(str, args)]
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


# ------------------------------------------------------------------------------------------- data


def _idx(name: str) -> np.ndarray:
    with gzip.open(FASHION / name) as handle:
        data = handle.read()
    if name.endswith("labels-idx1-ubyte.gz"):
        return np.frombuffer(data, dtype=np.uint8, offset=8)
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 28, 28)


def make_fashion(root: Path, *, train: int, val: int, test: int, seed: int = 0) -> Path:
    """labels.csv (path, label, shade, split) and 28x28 PNGs: train and val from Fashion-MNIST's
    training set, test from its test set; shade = dark (lowest quarter of the class's garment
    intensity) or light."""
    from PIL import Image

    if (root / "labels.csv").exists():
        return root
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    train_images, train_labels = _idx("train-images-idx3-ubyte.gz"), _idx("train-labels-idx1-ubyte.gz")
    test_images, test_labels = _idx("t10k-images-idx3-ubyte.gz"), _idx("t10k-labels-idx1-ubyte.gz")

    def shade(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        garment = np.where(images > 0, images, np.nan).reshape(len(images), -1)
        brightness = np.nanmean(garment, axis=1)
        dark = np.zeros(len(images), dtype=bool)
        for label in range(len(CLASSES)):
            members = labels == label
            dark[members] = brightness[members] <= np.quantile(brightness[members], 0.25)
        return dark

    rows = []
    order = rng.permutation(len(train_images))
    sources = [("train", train_images, train_labels, order[:train]),
               ("val", train_images, train_labels, order[train : train + val]),
               ("test", test_images, test_labels, rng.permutation(len(test_images))[:test])]  # fmt: skip
    darks = {"train": shade(train_images, train_labels), "test": shade(test_images, test_labels)}
    for split, images, labels, chosen in sources:
        dark = darks["test" if split == "test" else "train"]
        for index in chosen:
            name = f"images/{split}-{index:05d}.png"
            Image.fromarray(images[index]).save(root / name)
            rows.append((name, CLASSES[labels[index]], "dark" if dark[index] else "light", split))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "shade", "split"])
        writer.writerows(rows)
    return root


# ------------------------------------------------------------------------------------------ speed


def _native(path: Path, model: torch.nn.Module, image_size: int) -> Path:
    torch.save({"arch": "resnet18", "num_classes": 10, "classes": list(CLASSES), "state_dict": model.state_dict(),
                "image_size": image_size}, path)  # fmt: skip
    return path


def measure_speed(data: Path, work: Path, *, rounds: int, threads: int) -> list[dict]:
    import onnxruntime
    import torchvision

    from fairgrape_cli import stages
    from fairgrape_cli.io.checkpoints import load_checkpoint

    work.mkdir(parents=True, exist_ok=True)
    # calibration and the per-group check read 64 test images (32 per shade): random weights
    # have no accuracy to keep, and 2000 images at 224 px would take minutes per model here
    with open(data / "labels.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    few = [row for row in rows if row["shade"] == "dark"][:32] + [row for row in rows if row["shade"] == "light"][:32]
    labels = work / "speed-labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "shade", "split"])
        writer.writeheader()
        writer.writerows(few)
    torch.manual_seed(0)
    dense = _native(work / "dense.pt", torchvision.models.resnet18(num_classes=10).eval(), 224)
    stages.prune(rate=0.5, model=stages.ModelSource(dense), method="magnitude", granularity="channel",
                 output=work / "channels.safetensors", model_output=work / "slim.pt")  # fmt: skip
    models = {}
    for name in ("dense", "slim"):
        checkpoint = work / f"{name}.pt"
        assert run("export", checkpoint, "-o", work / f"{name}.onnx", "-q") == 0
        assert run("quantize", checkpoint, "--data", data, "--labels", labels, "--groups", "shade",
                   "--calibration-size", "64", "-o", work / f"{name}.int8.onnx", "-q") == 0  # fmt: skip
        models[f"{name} fp32 checkpoint (torch)"] = ("torch", checkpoint)
        models[f"{name} fp32 onnx"] = ("onnx", work / f"{name}.onnx")
        models[f"{name} int8 onnx"] = ("onnx", work / f"{name}.int8.onnx")
    torch.set_num_threads(threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    runners = {}
    for label, (kind, path) in models.items():
        if kind == "torch":
            module = load_checkpoint(path).model.eval()
            runners[label] = lambda batch, module=module: module(torch.from_numpy(batch))
        else:
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            runners[label] = lambda batch, session=session: session.run(None, {"images": batch})
    rows = []
    for batch_size, repeats in ((1, 20), (64, 1)):
        batch = np.random.default_rng(0).standard_normal((batch_size, 3, 224, 224)).astype(np.float32)
        times: dict[str, list[float]] = {label: [] for label in runners}
        with torch.no_grad():
            for runner in runners.values():
                runner(batch)  # warm-up
            for _ in range(rounds):
                for label, runner in runners.items():
                    started = time.perf_counter()
                    for _ in range(repeats):
                        runner(batch)
                    times[label].append(1000 * (time.perf_counter() - started) / repeats)
        reference = times["dense fp32 checkpoint (torch)"]
        for label, measured in times.items():
            ratios = [base / own for base, own in zip(reference, measured)]
            rows.append({"model": label, "batch": batch_size, "bytes": models[label][1].stat().st_size,
                         "median_ms": statistics.median(measured), "iqr_ms": _iqr(measured),
                         "speedup": statistics.median(ratios), "speedup_iqr": _iqr(ratios)})  # fmt: skip
    return rows


def _iqr(values: list[float]) -> float:
    low, _, high = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return high - low


def print_speed(rows: list[dict]) -> None:
    print(f"{'model':32} {'file':>9}  {'batch':>5}  {'median ms (IQR)':>18}  speed-up vs dense fp32 checkpoint (IQR)")
    for row in rows:
        print(f"{row['model']:32} {row['bytes'] / 1e6:7.1f} MB  {row['batch']:5d}  "
              f"{row['median_ms']:9.1f} ({row['iqr_ms']:6.1f})  {row['speedup']:5.2f}x ({row['speedup_iqr']:.2f})")  # fmt: skip


# --------------------------------------------------------------------------------------- accuracy


def measure_accuracy(data: Path, work: Path, *, seeds: list[int], epochs: int, bound: float) -> dict:
    import torchvision

    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.pt"
    if not model.exists():
        torch.manual_seed(0)
        initial = _native(work / "initial.pt", torchvision.models.resnet18(num_classes=10), 32)
        assert run("finetune", initial, data, "--dense", "--epochs", str(epochs), "--lr", "1e-3", "--batch-size", "64",
                   "--groups", "shade", "-o", model, "-q") == 0  # fmt: skip
    assert run("export", model, "-o", work / "model.onnx", "-q") == 0
    results: dict = {"checkpoint": _report(model, data, work / "checkpoint.json"),
                     "fp32 onnx": _report(work / "model.onnx", data, work / "fp32.json")}  # fmt: skip
    for seed in seeds:
        for label, extra in (("int8", ()), (f"int8 max-group-drop {bound:g}", ("--max-group-drop", str(bound)))):
            output = work / f"seed{seed}-{'gated' if extra else 'plain'}.int8.onnx"
            code = run("quantize", model, "--data", data, "--groups", "shade", "--seed", str(seed), "-o", output,
                       "-q", *extra)  # fmt: skip
            entry = {"exit": code}
            if code == 0:
                entry.update(_report(output, data, output.with_suffix(".json")))
                meta = _recorded(output)
                entry["float_layers"] = meta["float_layers"]
                entry["val_drops"] = meta["group_drops"]
            results.setdefault(label, []).append(entry)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _report(model: Path, data: Path, out: Path) -> dict:
    """``fairgrape report`` on the test split, as a CI gate would read the file."""
    assert run("report", model, data, "--groups", "shade", "--json", out, "--bootstrap", "0", "-q") == 0
    report = json.loads(out.read_text())
    return {"groups": {row["group"]: row["accuracy"] for row in report["groups"]},
            "accuracy": report["overall"]["accuracy"], "bytes": model.stat().st_size}  # fmt: skip


def _recorded(path: Path) -> dict:
    import onnx

    from fairgrape_cli.io.onnx_models import read_metadata

    return read_metadata(onnx.load(str(path)))["fairgrape"]["quantization"]


def print_accuracy(results: dict) -> None:
    reference = results["checkpoint"]
    groups = list(reference["groups"])
    print(f"{'model':34} {'file':>9}  {'accuracy':>15}  " + "  ".join(f"{g + ' (drop pts)':>22}" for g in groups)
          + "  layers left in float")  # fmt: skip
    for label, entries in results.items():
        entries = entries if isinstance(entries, list) else [entries]
        done = [entry for entry in entries if entry.get("exit", 0) == 0]
        if not done:
            print(f"{label:34} exit {entries[0]['exit']} (nothing written)")
            continue

        def cell(values: list[float]) -> str:
            mean = 100 * statistics.mean(values)
            return f"{mean:.2f} ± {100 * statistics.pstdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"

        line = f"{label:34} {done[0]['bytes'] / 1e6:7.2f} MB  {cell([e['accuracy'] for e in done]):>15}  "
        line += "  ".join(
            f"{cell([e['groups'][g] for e in done])} ({cell([reference['groups'][g] - e['groups'][g] for e in done]):>8})"
            .rjust(22) for g in groups
        )  # fmt: skip
        floats = [len(e.get("float_layers", [])) for e in done]
        line += f"  {floats}" if "float_layers" in done[0] else ""
        print(line + (f"  ({len(done)} of {len(entries)} seeds wrote a file)" if len(done) < len(entries) else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("speed", "accuracy", "both"), default="both")
    parser.add_argument("--output", type=Path, default=Path("benchmark-runs/quantize"))
    parser.add_argument("--data", type=Path, default=None, help="Fashion-MNIST folder [default: OUTPUT/fashion].")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-group-drop", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    data = make_fashion(args.data or args.output / "fashion", train=args.train, val=args.val, test=args.test)
    started = time.perf_counter()
    if args.part in ("accuracy", "both"):
        results = measure_accuracy(data, args.output / "accuracy", seeds=args.seeds, epochs=args.epochs,
                                   bound=args.max_group_drop)  # fmt: skip
        print_accuracy(results)
        print(f"load average {os.getloadavg()}, {(time.perf_counter() - started) / 60:.1f} min")
    if args.part in ("speed", "both"):
        rows = measure_speed(data, args.output / "speed", rounds=args.rounds, threads=args.threads)
        print_speed(rows)
        print(f"load average {os.getloadavg()}, {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()

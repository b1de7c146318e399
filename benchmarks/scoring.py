"""Benchmark: the whole ``fairgrape score`` process against a plain forward+backward epoch.

Generates a folder of JPEG images (labels.csv with a label and a group column) and a native
torchvision checkpoint, then times, each as a whole process over the same images at the same batch
size and image size:

  (a) ``fairgrape score MODEL DATA --groups group`` (default flags otherwise), and
  (b) a plain epoch: its own DataLoader with workers, PIL decode + resize + normalise,
      ``model.eval()``, cross-entropy, ``loss.backward()``, nothing else.

and prints both and their ratio (target: <= 1.3). Runs alternate (b, a, b, a, ...) so drift in a
shared machine's load hits both; the ratio is taken from the medians.

    python benchmarks/scoring.py                          # ~1k images, resnet18 at 112 px
    python benchmarks/scoring.py --images 4000 --image-size 224 --arch resnet34 --repeat 3

Timings on a shared machine are noisy: compare ratios from the same run, not across runs.

Recorded (2-core CPU VM, no GPU, torch 2.15; medians; others' jobs idle unless noted):

    default (resnet18, 112 px, 1024 images, 4 groups), --repeat 3:  plain 17.14 s, score 18.04 s, ratio 1.05
    resnet34, 224 px from 448 px JPEGs, 384 images, 7 groups:        plain 39.74 s, score 39.16 s, ratio 0.99
    mobilenet_v3_small, 224 px from 448 px, 2048 images, 7 groups:  plain 40.57 s, score 40.21 s, ratio 0.99
    default, --repeat 3, machine busy (load 4-7 on 2 cores):        ratio 1.22 (runs spread 50-98 s)

Peak memory (resnet18, batch 64, in-process ru_maxrss minus RSS after loading the model): plain
fwd+bwd 579 MiB; score G=1 615, G=4 737, G=16 (batches of 32) 1017 MiB, i.e. G x prunable (43 MiB)
+ one batch's activations + ~30 MiB (the input batch, one layer's gradient).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = ("no", "yes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="images in the generated folder")
    parser.add_argument("--groups", type=int, default=4, help="groups (uneven sizes)")
    parser.add_argument("--source-size", type=int, default=200, help="side of the stored JPEGs")
    parser.add_argument("--image-size", type=int, default=112, help="--image-size for both runs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--arch", default="resnet18", help="torchvision classification model")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the plain epoch [default: CPU count, at most 8]; "
                        "fairgrape score keeps its own default")
    parser.add_argument("--score-args", default="", help="extra flags for fairgrape score")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each")
    parser.add_argument("--dir", type=Path, default=None, help="work folder [default: a temp dir]")
    parser.add_argument("--peak-memory", action="store_true",
                        help="also report each process's peak resident memory (Linux)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------ generation


def generate_images(root: Path, *, count: int, groups: int, size: int, seed: int = 0) -> None:
    """Smooth colour fields with noise (decode like photos, not like flat or pure-noise images)."""
    import numpy as np
    from PIL import Image

    if (root / "labels.csv").is_file():
        return  # reuse a folder made by an earlier run with --dir
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = np.arange(groups, 0, -1, dtype=float)  # uneven groups, like real data
    group_of = rng.choice(groups, size=count, p=weights / weights.sum())
    rows = []
    for index in range(count):
        coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=float)
        pixels = np.clip(field + rng.normal(0, 12, size=field.shape), 0, 255).astype(np.uint8)
        name = f"images/{index:06d}.jpg"
        Image.fromarray(pixels).save(root / name, quality=90)
        rows.append((name, CLASSES[int(rng.integers(0, 2))], f"g{int(group_of[index])}"))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        writer.writerows(rows)


def save_checkpoint(path: Path, *, arch: str, image_size: int) -> None:
    import torch
    import torchvision

    if path.is_file():
        return
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, num_classes=len(CLASSES))
    torch.save(
        {"arch": arch, "num_classes": len(CLASSES), "classes": list(CLASSES),
         "state_dict": model.state_dict(), "image_size": image_size},
        path,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ plain epoch


def plain_epoch(model_path: str, data: str, image_size: int, batch_size: int, workers: int) -> None:
    """What a practitioner would write: eval-mode forward+backward over every image, once."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from PIL import Image
    from torchvision import transforms

    checkpoint = torch.load(model_path, map_location="cpu", weights_only=True)
    model = torchvision.models.get_model(checkpoint["arch"], num_classes=checkpoint["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    with open(Path(data) / "labels.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    transform = transforms.Compose([
        transforms.Resize((image_size, image_size)),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])  # fmt: skip
    classes = checkpoint["classes"]

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, index):
            with Image.open(Path(data) / rows[index]["path"]) as image:
                x = transform(image.convert("RGB"))
            return x, classes.index(rows[index]["label"])

    loader = torch.utils.data.DataLoader(Images(), batch_size=batch_size, num_workers=workers)
    for x, y in loader:
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------- timing


def timed(command: list[str], *, peak_memory: bool) -> tuple[float, float | None]:
    """Wall seconds of a whole process (and its peak RSS in MiB, children excluded)."""
    if peak_memory:
        command = ["/usr/bin/time", "-f", "PEAK_RSS_KB %M", *command]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    peak = None
    for line in done.stderr.splitlines():
        if line.startswith("PEAK_RSS_KB"):
            peak = int(line.split()[1]) / 1024
    return seconds, peak


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="fairgrape-bench-"))
    data, model = work / "data", work / f"{args.arch}-{args.image_size}.pt"
    print(f"generating {args.images} images ({args.source_size}px JPEG, {args.groups} groups) in {work}")
    generate_images(data, count=args.images, groups=args.groups, size=args.source_size)
    save_checkpoint(model, arch=args.arch, image_size=args.image_size)
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)

    plain = [sys.executable, __file__, "--plain-epoch", str(model), str(data),
             str(args.image_size), str(args.batch_size), str(workers)]  # fmt: skip
    output = work / "importance.safetensors"
    score = [sys.executable, "-m", "fairgrape_cli", "score", str(model), str(data),
             "--groups", "group", "--image-size", str(args.image_size),
             "--batch-size", str(args.batch_size), "-o", str(output), "--quiet",
             *args.score_args.split()]  # fmt: skip

    times: dict[str, list[float]] = {"plain": [], "score": []}
    peaks: dict[str, list[float]] = {"plain": [], "score": []}
    for run in range(args.repeat):
        for name, command in (("plain", plain), ("score", score)):
            seconds, peak = timed(command, peak_memory=args.peak_memory)
            times[name].append(seconds)
            if peak is not None:
                peaks[name].append(peak)
            extra = f", peak RSS {peak:,.0f} MiB" if peak is not None else ""
            print(f"  run {run + 1} {name:5s}: {seconds:7.2f} s{extra}", flush=True)

    plain_s, score_s = statistics.median(times["plain"]), statistics.median(times["score"])
    print(f"{args.arch} @ {args.image_size}px, batch {args.batch_size}, {args.images} images, "
          f"plain-epoch workers {workers}, cpus {os.cpu_count()}")
    print(f"plain eval fwd+bwd epoch (whole process): {plain_s:.2f} s "
          f"({args.images / plain_s:.1f} images/s)")
    print(f"fairgrape score         (whole process): {score_s:.2f} s "
          f"({args.images / score_s:.1f} images/s)")
    print(f"ratio score / plain epoch: {score_s / plain_s:.3f}  (target <= 1.3)")
    if peaks["score"]:
        prunable_mib = prunable_weights(model) * 4 / 2**20
        print(f"peak RSS: plain {max(peaks['plain']):,.0f} MiB, score {max(peaks['score']):,.0f} MiB; "
              f"G x prunable float32 = {args.groups} x {prunable_mib:,.0f} MiB "
              f"(score - plain should be about (G - 1) x prunable: the plain epoch keeps all gradients)")


def prunable_weights(model_path: Path) -> int:
    """Elements of the conv and linear weights (the prunable layers) of a native checkpoint."""
    import torch

    state = torch.load(model_path, map_location="cpu", weights_only=True)["state_dict"]
    return sum(t.numel() for k, t in state.items() if k.endswith("weight") and t.ndim >= 2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--plain-epoch":
        model_path, data, size, batch, workers = sys.argv[2:7]
        plain_epoch(model_path, data, int(size), int(batch), int(workers))
    else:
        main()

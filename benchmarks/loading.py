"""Benchmark: fairgrape's image loader against a plain torchvision DataLoader, in images/s.

Generates JPEGs stored at 448 px (smooth colour fields with noise, quality 90: they decode like
photos) and reads them at 224 px, as normalised float batches on the CPU, two ways, with the same
number of worker processes, the same batch size, in the same run, alternating:

  (a) fairgrape: ``io.images.ImageLoader`` (JPEG draft decoding at the size needed, uint8 batches
      between processes) + ``Normalizer`` in the main process (on a GPU it runs there);
  (b) plain: a ``torch.utils.data.DataLoader`` over a Dataset doing ``PIL.Image.open``,
      ``convert("RGB")``, ``Resize((224, 224))``, ``ToTensor()``, ``Normalize(ImageNet)``.

Prints each run, the medians with their spread, and the ratio (target: at least 1.5). It also
measures how far draft decoding moves the pixels from a full decode + bilinear resize (the
price of the speed), on the same images.

    python benchmarks/loading.py                          # 1,024 images, default workers, 3 repeats
    python benchmarks/loading.py --images 4000 --workers 8 --repeat 5

Timings on a shared machine are noisy: compare the ratio from one run, and note ``uptime``.

Recorded (2-core CPU VM, no GPU, torch 2.14, Pillow 11; other agents' jobs running; medians
(min-max) of 5 alternating runs):

    --images 1024 --repeat 5, 2 workers (the default here), load average 15-17 on 2 cores:
      plain torchvision       41 images/s (40-49)
      fairgrape               96 images/s (83-98)
      ratio                   2.33x (per pair 1.97-2.46)
      draft vs full decode + resize: mean 2.23 uint8 levels, 99th percentile 8, max 24,
      0.65% of values off by more than 8
    --images 512 --repeat 2, load average 11-12:  ratio 2.47x (per pair 1.98-3.20)

The absolute rates are low because the machine was shared (torch itself took 10 s to import);
read the ratio.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="JPEGs in the generated folder")
    parser.add_argument("--source-size", type=int, default=448, help="side of the stored JPEGs")
    parser.add_argument("--image-size", type=int, default=224, help="side they are read at")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes for both loaders [default: fairgrape's default_workers]")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes of each loader")
    parser.add_argument("--dir", type=Path, default=None, help="work folder [default: a temp dir]")
    return parser.parse_args(argv)


def generate_images(root: Path, *, count: int, size: int, seed: int = 0) -> None:
    """Smooth colour fields with noise (decode like photos, not like flat or pure-noise images)."""
    if (root / "labels.csv").is_file():
        return  # reuse a folder made by an earlier run with --dir
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=float)
        pixels = np.clip(field + rng.normal(0, 12, size=field.shape), 0, 255).astype(np.uint8)
        name = f"images/{index:06d}.jpg"
        Image.fromarray(pixels).save(root / name, quality=90)
        rows.append((name, "yes" if index % 2 else "no", f"g{index % 4}"))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        writer.writerows(rows)


# --------------------------------------------------------------------------------- the loaders


def fairgrape_pass(root: Path, image_size: int, batch_size: int, workers: int) -> int:
    from fairgrape_cli.io.data import DataSpec, load_table
    from fairgrape_cli.io.images import ImageLoader, Normalizer
    from fairgrape_cli.method.batches import sequential_batches

    table = load_table(DataSpec(root=root, groups="group"))
    normalise = Normalizer(MEAN, STD, torch.device("cpu"))
    loader = ImageLoader(table, image_size, sequential_batches(len(table), batch_size), workers=workers)
    seen = 0
    for images, _ in loader:
        seen += len(normalise(images))
    return seen


class PlainImages(torch.utils.data.Dataset):
    """What a practitioner writes with torchvision."""

    def __init__(self, root: Path, image_size: int):
        from torchvision import transforms

        with open(root / "labels.csv", encoding="utf-8") as handle:
            self.files = [root / row["path"] for row in csv.DictReader(handle)]
        self.transform = transforms.Compose([
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB"))


def plain_pass(root: Path, image_size: int, batch_size: int, workers: int) -> int:
    loader = torch.utils.data.DataLoader(PlainImages(root, image_size), batch_size=batch_size, num_workers=workers)
    return sum(len(batch) for batch in loader)


# ------------------------------------------------------------------------ what draft mode costs


def draft_difference(root: Path, image_size: int, sample: int = 200) -> dict[str, float]:
    """Draft decode (fairgrape) against full decode + bilinear resize, in uint8 levels."""
    from fairgrape_cli.io.images import read_image

    files = sorted((root / "images").glob("*.jpg"))[:sample]
    differences = []
    for path in files:
        ours = read_image(path, image_size).numpy().astype(np.int16)
        with Image.open(path) as image:
            full = image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
        reference = np.asarray(full, dtype=np.int16).transpose(2, 0, 1)
        differences.append(np.abs(ours - reference))
    stacked = np.stack(differences)
    return {
        "mean": float(stacked.mean()),
        "p99": float(np.percentile(stacked, 99)),
        "max": float(stacked.max()),
        "over_8": float((stacked > 8).mean()),
    }


def main(argv: list[str] | None = None) -> None:
    from fairgrape_cli.io.images import default_workers

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.dir or Path(scratch) / "jpegs"
        generate_images(root, count=args.images, size=args.source_size)
        workers = args.workers if args.workers is not None else default_workers(args.images // args.batch_size)
        for path in (root / "images").iterdir():  # both read from the page cache
            path.read_bytes()
        print(f"{args.images} JPEGs at {args.source_size} px read at {args.image_size} px, batch "
              f"{args.batch_size}, {workers} workers, {os.cpu_count()} CPUs")  # fmt: skip
        print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        rates: dict[str, list[float]] = {"plain": [], "fairgrape": []}
        passes = {"plain": plain_pass, "fairgrape": fairgrape_pass}
        for repeat in range(args.repeat):
            for name, run in passes.items():
                started = time.perf_counter()
                seen = run(root, args.image_size, args.batch_size, workers)
                seconds = time.perf_counter() - started
                rates[name].append(seen / seconds)
                print(f"  run {repeat + 1} {name:>9}: {seen / seconds:8.0f} images/s ({seconds:.2f} s)")
        print("load after: ", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        for name, values in rates.items():
            print(f"{name:>9}: median {statistics.median(values):.0f} images/s "
                  f"(min {min(values):.0f}, max {max(values):.0f})")  # fmt: skip
        pairs = [ours / plain for ours, plain in zip(rates["fairgrape"], rates["plain"])]
        print(f"    ratio: {statistics.median(rates['fairgrape']) / statistics.median(rates['plain']):.2f}x "
              f"(per pair {min(pairs):.2f}-{max(pairs):.2f}; target >= 1.5)")  # fmt: skip
        difference = draft_difference(root, args.image_size)
        print(f"draft vs full decode + resize, uint8 levels: mean {difference['mean']:.2f}, "
              f"99th percentile {difference['p99']:.0f}, max {difference['max']:.0f}, "
              f"{100 * difference['over_8']:.2f}% of values off by more than 8")  # fmt: skip


if __name__ == "__main__":
    main()

"""Generated group-labelled image folders and a small CNN: for the demo, tests and benchmarks.

The data is biased on purpose: a majority and a minority group whose images carry the class in
different ways (the majority by the orientation of stripes, the minority by the colour of a few
spots), so a model has to learn the minority's cue separately, from fewer examples. That is the
situation in which pruning can cost one group far more than another.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


@dataclass(frozen=True)
class SyntheticSpec:
    size: int = 32
    per_split: tuple[tuple[str, int], ...] = (("train", 480), ("val", 120), ("test", 240))
    minority_fraction: float = 0.2
    noise: float = 0.35
    seed: int = 0
    groups: tuple[str, str] = ("majority", "minority")
    classes: tuple[str, str] = ("no", "yes")


def _stripes(size: int, vertical: bool, rng: np.random.Generator) -> np.ndarray:
    period = rng.integers(4, 7)
    phase = rng.integers(0, period)
    axis = np.arange(size)
    wave = ((axis + phase) // (period // 2)) % 2
    pattern = np.tile(wave, (size, 1)) if vertical else np.tile(wave[:, None], (1, size))
    return pattern.astype(np.float32)


def _blobs(size: int, rng: np.random.Generator, count: int = 3) -> np.ndarray:
    """A few soft round spots at random places (position carries no information)."""
    pattern = np.zeros((size, size), dtype=np.float32)
    rows, cols = np.ogrid[:size, :size]
    radius = max(2, size // 10)
    for _ in range(count):
        centre_r, centre_c = rng.integers(radius, size - radius, size=2)
        pattern[(rows - centre_r) ** 2 + (cols - centre_c) ** 2 <= radius**2] = 1.0
    return pattern


# colour of the spots that carries the minority's class: reddish (class 0) or bluish (class 1)
_SPOT_COLOURS = (np.array([0.95, 0.35, 0.25], dtype=np.float32), np.array([0.25, 0.45, 0.95], dtype=np.float32))


def synthetic_image(group: int, label: int, spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    size = spec.size
    if group == 0:  # majority: stripe orientation carries the class
        signal = _stripes(size, vertical=bool(label), rng=rng)
        image = signal[..., None] * np.array([0.9, 0.75, 0.6], dtype=np.float32)
    else:  # minority: the colour of a few spots carries it; faint stripes are a distractor
        distractor = 0.3 * _stripes(size, vertical=bool(rng.integers(0, 2)), rng=rng)
        image = distractor[..., None] * np.array([0.5, 0.4, 0.35], dtype=np.float32)
        spots = _blobs(size, rng)[..., None]
        image = image * (1 - spots) + spots * _SPOT_COLOURS[label]
    image = image + spec.noise * rng.standard_normal((size, size, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_biased_dataset(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write ``root/images/*.png`` and ``root/labels.csv`` (path, label, group, split)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    rows = []
    counter = 0
    for split, count in spec.per_split:
        for _ in range(count):
            group = int(rng.random() < spec.minority_fraction)
            label = int(rng.integers(0, 2))
            name = f"images/{counter:05d}.png"
            Image.fromarray(synthetic_image(group, label, spec, rng)).save(root / name)
            rows.append((name, spec.classes[label], spec.groups[group], split))
            counter += 1
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group", "split"])
        writer.writerows(rows)
    return root


class TinyCNN(nn.Module):
    """Four conv layers and a linear head: small enough to train in seconds on a CPU."""

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def tiny_cnn(num_classes: int = 2) -> TinyCNN:
    return TinyCNN(num_classes=num_classes)


TINY_ARCH = "fairgrape_cli.synthetic:TinyCNN"

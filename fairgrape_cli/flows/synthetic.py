"""Generated group-labelled image folders and a small CNN: for the demo, tests and benchmarks.

The data is biased on purpose: a majority and a minority group (20% of the images by default)
whose images carry the class in different ways (both by the orientation and width of stripes,
but the minority's are tinted differently and map them to classes in another order), so a model
has to learn the minority's mapping separately, from fewer examples. That is the situation in which pruning
can cost one group far more than another.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..io.files import atomic_output


@dataclass(frozen=True)
class SyntheticSpec:
    """A generated biased dataset: classes, groups, sizes, how the minority differs."""

    size: int = 32
    per_split: tuple[tuple[str, int], ...] = (("train", 480), ("val", 120), ("test", 240))
    minority_fraction: float = 0.2
    noise: float = 0.35
    seed: int = 0
    groups: tuple[str, str] = ("majority", "minority")
    classes: tuple[str, ...] = ("no", "yes")  # 2 to 4, one per stripe cue

    def __post_init__(self) -> None:
        if not 2 <= len(self.classes) <= len(_CUES):
            raise ValueError(f"SyntheticSpec: 2 to {len(_CUES)} classes, got {len(self.classes)}")

    def build(self, root: str | Path) -> Path:
        """Write the dataset to ``root`` (an experiment's data source, like ``PhotoSpec``)."""
        return make_biased_dataset(root, self)


# The class cue: stripe orientation and width. Only horizontal and vertical stripes, because the
# horizontal flips used in fine-tuning would turn a 45-degree image into a 135-degree one.
_CUES = ((0, 2), (90, 2), (0, 4), (90, 4))  # (angle, band width in pixels) per class
_TINTS = (np.array([0.9, 0.75, 0.6], dtype=np.float32), np.array([0.45, 0.6, 0.9], dtype=np.float32))


def _stripes(size: int, cue: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Square-wave stripes, horizontal (0) or vertical (90), with the given band width, random phase."""
    angle, band = cue
    rows, cols = np.mgrid[:size, :size]
    position = rows if angle == 0 else cols
    return (((position + rng.integers(0, 2 * band)) // band) % 2).astype(np.float32)


def synthetic_image(group: int, label: int, spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """Both groups show the class as stripes (orientation and width), equally hard to see, but the
    minority's images look different (a cool tint) and map the cues to classes in another order:
    a model must learn the minority's mapping separately."""
    size = spec.size
    cue = _CUES[label] if group == 0 else _CUES[(label + 1) % len(spec.classes)]
    stripes = _stripes(size, cue, rng)
    image = (0.15 + 0.7 * stripes)[..., None] * _TINTS[group]
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
            label = int(rng.integers(0, len(spec.classes)))
            name = f"images/{counter:05d}.png"
            Image.fromarray(synthetic_image(group, label, spec, rng)).save(root / name)
            rows.append((name, spec.classes[label], spec.groups[group], split))
            counter += 1
    write_labels_csv(root, rows)
    return root


def write_labels_csv(root: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """A generated folder's ``labels.csv`` (path, label, group, split), written atomically and
    last: a folder whose labels.csv exists is reused, so a build killed before this leaves none
    (the next run makes the folder again) rather than half of one."""
    with atomic_output(root / "labels.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group", "split"])
        writer.writerows(rows)


class TinyCNN(nn.Module):
    """Four conv layers and a linear head: small enough to train in seconds on a CPU."""

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        # pooling right after the first layer: a quarter of the compute, the same weights
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of images."""
        return self.classifier(torch.flatten(self.features(x), 1))


def wide_cnn(num_classes: int = 2) -> TinyCNN:
    """The same layers, 4x wider: enough redundancy that 90-99% pruning is a real trade-off."""
    return TinyCNN(num_classes=num_classes, width=64)


TINY_ARCH = "fairgrape_cli.flows.synthetic:TinyCNN"
WIDE_ARCH = "fairgrape_cli.flows.synthetic:wide_cnn"

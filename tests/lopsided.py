"""A model and data built so that quantizing one layer costs one group its accuracy, the other
group nothing: what the per-group accuracy control of ``fairgrape quantize`` must find.

Images are 8x8 and flat. Majority images show the class in their red channel (0.1 or 0.9), the
minority's in a faint green (0.45 or 0.55). ``conv1`` puts both into one tensor: the majority's
signal at +-40, the minority's at +-0.05. int8 with one range per tensor (activations are
quantized so) has steps of about 0.3 there: the minority's signal rounds to zero at the input of
``conv2``, and only there. ``conv2`` reads each channel into its own output, scaled to +-0.4, so
everything after it quantizes well. Returning ``conv2`` to float (its input read in float)
restores the minority; no other layer does. The checkpoint normalises with mean 0 and std 1.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

ARCH = "lopsided:LopsidedNet"
GROUPS = ("majority", "minority")


class LopsidedNet(nn.Module):
    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 1)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, num_classes)
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[0, 0] = 100.0  # red -> +-40 around 0
            self.conv1.weight[1, 1] = 1.0  # green -> +-0.05 around 0
            self.conv1.bias.copy_(torch.tensor([-50.0, -0.5]))
            self.conv2.weight.zero_()
            self.conv2.weight[0, 0] = 0.01
            self.conv2.weight[1, 1] = 8.0
            self.conv2.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv2(self.conv1(images))), 1))


def save_lopsided(path: Path) -> Path:
    torch.save(
        {"arch": ARCH, "num_classes": 2, "classes": ["no", "yes"], "state_dict": LopsidedNet().state_dict(),
         "image_size": 8, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        path,
    )  # fmt: skip
    return path


def make_lopsided_data(root: Path, *, per_split=(("train", 32), ("val", 48), ("test", 48)), seed: int = 0) -> Path:
    """labels.csv (path, label, group, split) and 8x8 PNGs; both groups in every split, evenly."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for split, count in per_split:
        for i in range(count):
            group, label = i % 2, int(rng.integers(0, 2))
            image = np.full((8, 8, 3), 128, dtype=np.uint8)
            if group == 0:
                image[..., 0] = 230 if label else 26
            else:
                image[..., 1] = 140 if label else 115
            name = f"images/{split}-{i:03d}.png"
            Image.fromarray(image).save(root / name)
            rows.append((name, ("no", "yes")[label], GROUPS[group], split))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group", "split"])
        writer.writerows(rows)
    return root


STUCK_ARCH = "lopsided:StuckNet"


class StuckNet(LopsidedNet):
    """The same signals, but ``conv2`` passes both channels on unchanged and the head reads them:
    the minority's signal is lost where the pooling layer's input is quantized, which no weight
    layer returned to float can undo."""

    def __init__(self, num_classes: int = 2):
        super().__init__(num_classes)
        with torch.no_grad():
            self.conv2.weight.zero_()
            self.conv2.weight[0, 0] = 1.0
            self.conv2.weight[1, 1] = 1.0
            self.fc.weight.copy_(torch.tensor([[-0.01, -8.0], [0.01, 8.0]]))


def save_stuck(path: Path) -> Path:
    save_lopsided(path)
    saved = torch.load(path, weights_only=True)
    saved.update(arch=STUCK_ARCH, state_dict=StuckNet().state_dict())
    torch.save(saved, path)
    return path

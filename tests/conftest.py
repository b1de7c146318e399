"""Shared fixtures: tiny generated image folders and tiny checkpoints, made once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision

from fairgrape_cli.flows.synthetic import TINY_ARCH, SyntheticSpec, TinyCNN, make_biased_dataset

SMALL = SyntheticSpec(per_split=(("train", 48), ("val", 16), ("test", 32)), minority_fraction=0.3)


@pytest.fixture(scope="session")
def biased_data(tmp_path_factory) -> Path:
    """labels.csv manifest: path,label,group,split; groups majority/minority; 32x32 PNGs."""
    return make_biased_dataset(tmp_path_factory.mktemp("data") / "data", SMALL)


def save_native(path: Path, model: torch.nn.Module, arch: str, classes=("no", "yes"), image_size=32) -> Path:
    torch.save(
        {
            "arch": arch,
            "num_classes": len(classes),
            "classes": list(classes),
            "state_dict": model.state_dict(),
            "image_size": image_size,
        },
        path,
    )
    return path


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = TinyCNN(num_classes=2)
    _randomize_batchnorm(model)
    return save_native(tmp_path_factory.mktemp("models") / "tiny.pt", model, TINY_ARCH)


@pytest.fixture(scope="session")
def resnet_path(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=2)
    _randomize_batchnorm(model)
    return save_native(tmp_path_factory.mktemp("models") / "resnet18.pt", model, "resnet18")


def _randomize_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial running statistics, so eval mode vs train mode makes a visible difference."""
    generator = torch.Generator().manual_seed(7)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-800:]!r}, err={self.err[-1500:]!r})"


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``fairgrape ARGS...`` in-process through the real entry point; returns a CliResult."""
    from fairgrape_cli.cli import main

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["fairgrape", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


ATTRIBUTES = ("Red", "Green", "Blue")


def make_attribute_dataset(root: Path, *, rows: int = 96, seed: int = 0) -> Path:
    """A multi-attribute manifest: each image shows up to three binary cues (a red top half, a
    green left half, a blue corner; CelebA's -1/1 coding), the minority's images upside down."""
    import csv

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(rows):
        split = "train" if i < rows // 2 else "val" if i < 3 * rows // 4 else "test"
        minority = rng.random() < 0.3
        present = rng.integers(0, 2, len(ATTRIBUTES))
        image = np.full((32, 32, 3), 0.2, dtype=np.float32)
        image[:16, :, 0] += 0.7 * present[0]
        image[:, :16, 1] += 0.7 * present[1]
        image[16:, 16:, 2] += 0.7 * present[2]
        if minority:
            image = image[::-1]
        image = np.clip(image + 0.15 * rng.standard_normal(image.shape), 0, 1)
        Image.fromarray((image * 255).astype(np.uint8)).save(root / f"images/{i:04d}.png")
        lines.append([f"images/{i:04d}.png", *("1" if v else "-1" for v in present),
                      "minority" if minority else "majority", split])  # fmt: skip
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", *ATTRIBUTES, "group", "split"])
        writer.writerows(lines)
    return root


@pytest.fixture(scope="session")
def attribute_data(tmp_path_factory) -> Path:
    return make_attribute_dataset(tmp_path_factory.mktemp("attributes") / "data")


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float) -> None:
    """``actual`` equals ``expected`` to ``rtol`` of the tensor's largest magnitude.

    Sums taken in another order (other batch splits, processes, kernels) differ in their last
    bits; next to zero that is a large relative difference on a correct program, so the
    absolute tolerance scales with the tensor rather than being 0 or a fixed constant.
    """
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)

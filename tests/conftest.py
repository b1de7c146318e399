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
    from fairgrape_cli.commands import _options

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["fairgrape", *map(str, args)])
        monkeypatch.setitem(_options._debug, "enabled", False)
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run

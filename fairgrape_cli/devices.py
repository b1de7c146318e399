"""``--device`` and ``--seed``."""

from __future__ import annotations

import random

import torch

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable device is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available here")
        return torch.device(name)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise InputError("--device mps: no Apple MPS device is available here")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"--device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)

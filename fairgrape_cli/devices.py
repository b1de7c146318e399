"""``--device``, ``--precision`` and ``--seed``."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import ContextManager

import torch

from . import distributed
from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable device is a usage error.

    Under torchrun, ``auto`` and ``cuda`` mean this process's GPU (``cuda:LOCAL_RANK``).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available here")
        if name == "cuda" and distributed.launched():
            index, count = distributed.local_rank(), torch.cuda.device_count()
            if index >= count:
                raise InputError(
                    f"torchrun started {distributed.local_world_size()} processes on this machine, "
                    f"which has {count} CUDA device(s): use --nproc-per-node {count} (or --device cpu)"
                )
            return torch.device("cuda", index)
        return torch.device(name)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise InputError("--device mps: no Apple MPS device is available here")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"--device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")


def check_precision(precision: str, device: torch.device, *, flag: str = "--precision") -> None:
    """bf16 runs on CUDA only: CPU autocast is slower than fp32 on most CPUs and would change
    results for no gain, so it is refused rather than silently used."""
    if precision not in PRECISIONS:
        raise InputError(f"{flag} {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type != "cuda":
        raise InputError(
            f"{flag} bf16 needs a CUDA device (bf16 autocast + channels_last); this runs on "
            f"{device.type}: use fp32"
        )


def autocast_for(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """What the forward passes run under: nothing for fp32, bf16 autocast for bf16 (matrix
    products and convolutions in bf16; losses, softmax and reductions stay float32)."""
    if precision == "fp32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def uses_channels_last(precision: str, device: torch.device) -> bool:
    """bf16 convolutions on CUDA are fastest with NHWC tensors (tensor cores, no layout copies)."""
    return precision == "bf16" and device.type == "cuda"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    random.seed(seed)
    torch.manual_seed(seed)

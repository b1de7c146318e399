"""What a model's outputs mean, and so its loss, its predictions and when a prediction is right.

- ``single-label``: one class per image; cross-entropy; the prediction is the arg-max.
- ``multi-label``: several binary attributes per image from one head of that many outputs (a
  face-attribute model: CelebA's 39); the loss is the binary cross-entropy averaged over the
  attributes; an attribute is predicted present when its logit is above 0.

Targets are class indices ``[N]`` (long) or 0/1 per attribute ``[N, A]`` (float), and that shape
is what picks the head. ``right`` is ``[B, A]`` (``A = 1`` for a single label), so every count
downstream (accuracy per group, per attribute, the bootstrap) is the same code for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import Registry


@dataclass(frozen=True)
class Head:
    """How a kind of target is trained and judged: its loss, prediction, what counts as right."""

    name: str
    loss: Callable[[torch.Tensor, torch.Tensor, str], torch.Tensor]  # (logits, targets, "mean" | "none")
    predict: Callable[[torch.Tensor], torch.Tensor]  # logits -> class [B] or 0/1 per attribute [B, A]
    right: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (predictions, targets) -> bool [B, A]


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    return F.cross_entropy(logits, targets, reduction=reduction)


def _mean_binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    per_sample = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none").mean(1)
    return per_sample if reduction == "none" else per_sample.mean()


HEADS: Registry[Head] = Registry("head")
HEADS.add(
    "single-label",
    Head(
        "single-label",
        loss=_cross_entropy,
        predict=lambda logits: logits.argmax(1),
        right=lambda predictions, targets: (predictions == targets).unsqueeze(-1),
    ),
)
HEADS.add(
    "multi-label",
    Head(
        "multi-label",
        loss=_mean_binary_cross_entropy,
        predict=lambda logits: (logits > 0).long(),
        right=lambda predictions, targets: predictions == targets.long(),
    ),
)


def head_for(targets: torch.Tensor) -> Head:
    """The head that ``targets`` (class indices, or 0/1 per attribute) belong to."""
    return HEADS["multi-label" if targets.ndim == 2 else "single-label"]

"""Applying masks to a model, keeping them applied during training, and sparsity stats."""

from __future__ import annotations

from collections.abc import Mapping

import torch


@torch.no_grad()
def apply_masks(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero every masked-out weight in place (exact zeros)."""
    for name, mask in masks.items():
        weight = weights[name]
        weight.mul_(mask.to(device=weight.device, dtype=weight.dtype))


def nonzero_density(weights: Mapping[str, torch.Tensor]) -> float:
    """Fraction of weights that are not exactly zero: the density a model actually has."""
    total = sum(weight.numel() for weight in weights.values())
    kept = sum(int(torch.count_nonzero(weight)) for weight in weights.values())
    return kept / total if total else 1.0


class MaskEnforcer:
    """Keeps masked weights exactly zero while an optimizer trains the model.

    Gradients of masked weights are zeroed before the step (so optimizer state stays zero there)
    and the weights are re-zeroed after it, which also covers weight decay and momentum.
    """

    def __init__(self, weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]):
        # laid out like the weight (channels_last under bf16), so masking is a plain elementwise pass
        self.pairs = [(weights[name], torch.zeros_like(weights[name]).copy_(mask)) for name, mask in masks.items()]

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Zero the gradients of masked weights."""
        for weight, mask in self.pairs:
            if weight.grad is not None:
                weight.grad.mul_(mask)

    @torch.no_grad()
    def mask_weights(self) -> None:
        """Zero the masked weights."""
        for weight, mask in self.pairs:
            weight.mul_(mask)

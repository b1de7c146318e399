"""Structured pruning's arithmetic: per-unit scores from per-weight ones, and the selection of units.

A *unit* is one channel of a coupled channel group (``channel_groups`` finds them): removing it
removes a slice of several prunable weights. Its importance for group g is the sum of ``I_g`` over
every weight it removes, its magnitude the L2 norm of those weights. Selection is the weight-level
selection run on units instead of weights (``selection.build_masks``: the same criteria registry,
the same FairGRAPE greedy, per layer or over a global pool), with a "layer" being a channel group.

``--rate`` counts channels against the architecture's dense widths (``dense_sizes``), as the
weight-level rate counts weights against the whole layer: a group already narrowed by an earlier
pruning enters with its removed channels as removed candidates, so rates are cumulative.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from .selection import CRITERIA, build_masks, select


@dataclass(frozen=True)
class WeightSlice:
    """Positions ``indices`` along dimension ``dim`` of prunable weight ``weight``, each removed
    with unit ``units[i]`` of its group (several positions may share a unit: a flattened
    feature map feeding a linear layer)."""

    weight: str
    dim: int
    indices: torch.Tensor  # [m] int64
    units: torch.Tensor  # [m] int64


class UnitLayout(Protocol):
    """A coupled channel group as selection sees it: its name, width and weight slices."""

    name: str
    size: int
    slices: list[WeightSlice]


def unit_importance(
    groups: Iterable[UnitLayout], importance: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``[G, size]`` float64 per group: each unit's summed importance for every group g."""
    return _summed(groups, lambda name: importance[name], squared=False)


def unit_norms(groups: Iterable[UnitLayout], weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``[size]`` float64 per group: the L2 norm of each unit's slices of the prunable weights."""
    summed = _summed(groups, lambda name: weights[name].detach().cpu().unsqueeze(0), squared=True)
    return {name: rows[0].sqrt() for name, rows in summed.items()}


def _summed(
    groups: Iterable[UnitLayout], read: Callable[[str], torch.Tensor], *, squared: bool
) -> dict[str, torch.Tensor]:
    """Per group, ``[R, size]``: the sum over its slices of ``read(weight)`` ([R, *shape]).

    Each weight is read once (an importance file may load lazily), for every slice that cuts it.
    """
    groups = list(groups)
    by_weight: dict[str, list[tuple[int, WeightSlice]]] = {}
    for position, group in enumerate(groups):
        for piece in group.slices:
            by_weight.setdefault(piece.weight, []).append((position, piece))
    sums: list[torch.Tensor | None] = [None] * len(groups)
    for name, pieces in by_weight.items():
        values = read(name)
        for position, piece in pieces:
            taken = values.index_select(piece.dim + 1, piece.indices).to(torch.float64)
            if squared:
                taken = taken.square()
            moved = taken.movedim(piece.dim + 1, 1)  # [R, m, ...]
            per_position = moved.reshape(taken.shape[0], piece.indices.numel(), -1).sum(-1)
            if sums[position] is None:
                sums[position] = torch.zeros(taken.shape[0], groups[position].size, dtype=torch.float64)
            sums[position].index_add_(1, piece.units, per_position)
        del values
    return {
        group.name: total if total is not None else torch.zeros(1, group.size, dtype=torch.float64)
        for group, total in zip(groups, sums)
    }


def select_units(
    *,
    norms: Mapping[str, torch.Tensor],
    importance: Mapping[str, torch.Tensor] | None,
    dense_sizes: Mapping[str, int],
    method: str,
    rate: float,
    scope: str = "layer",
    min_layer_density: float = 0.01,
    seed: int = 0,
    on_layer: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Kept units (bool ``[size]`` per group) at ``rate``, the fraction of channels removed.

    Each group is laid out at its dense width, its present units first and the channels removed
    earlier after them as removed candidates; ``selection.build_masks`` then applies the method
    exactly as it does to weights. Every group keeps at least one unit (a layer without output
    channels would cut the network in two), which can keep a unit more than the rate asks.
    """
    padded_norms, padded_importance, candidates = {}, {} if importance is not None else None, {}
    for name, norm in norms.items():
        size = norm.numel()
        width = max(size, int(dense_sizes.get(name, size)))
        padded_norms[name] = torch.cat([norm, norm.new_zeros(width - size)])
        present = torch.zeros(width, dtype=torch.bool)
        present[:size] = True
        candidates[name] = present
        if importance is not None:
            rows = importance[name]
            padded_importance[name] = torch.cat([rows, rows.new_zeros(rows.shape[0], width - size)], dim=1)
    masks = build_masks(
        weights=padded_norms, method=method, rate=rate, importance=padded_importance, previous=candidates,
        scope=scope, min_layer_density=min_layer_density, seed=seed, on_layer=on_layer,
    )  # fmt: skip
    kept = {name: masks[name][: norms[name].numel()].clone() for name in norms}
    criterion = CRITERIA.choose(method)
    generator = torch.Generator().manual_seed(seed)
    for name, mask in kept.items():
        if mask.any():
            continue
        rows = criterion.scores(
            weight=norms[name], importance=importance[name] if importance is not None else None,
            generator=generator,
        )  # fmt: skip
        kept[name] = select(rows, torch.ones_like(mask), 1, norms[name])
    return kept

"""Scores -> masks: the FairGRAPE greedy and the baselines, per layer or over one global pool.

A pruning method is a *criterion*: a small function registered by name that turns a layer's
weight and importance into score rows ``[R, *weight.shape]``. One row (``taylor``, ``magnitude``,
``random``) means "keep the top k"; several rows (``fairgrape``: one per group) mean "keep k
while each row keeps its share of the total", the FairGRAPE greedy. The top-k is exactly that
greedy with a single row, so every method shares one mask-building path and both scopes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .errors import InputError

SCOPES = ("layer", "global")


@dataclass(frozen=True)
class Criterion:
    name: str
    needs_importance: bool
    summary: str
    scores: Callable[..., torch.Tensor]  # (weight=, importance=, generator=) -> [R, *shape]


CRITERIA: dict[str, Criterion] = {}


def criterion(name: str, *, needs_importance: bool, summary: str):
    """Register a pruning criterion under ``name`` (the value of ``--method``)."""

    def register(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        CRITERIA[name] = Criterion(name, needs_importance, summary, function)
        return function

    return register


@criterion("fairgrape", needs_importance=True, summary="keep every group's share of importance")
def _group_importance(*, weight, importance, generator):
    return importance.float()


@criterion("taylor", needs_importance=True, summary="group-agnostic: rank by importance summed over groups")
def _summed_importance(*, weight, importance, generator):
    return importance.double().sum(0, keepdim=True)


@criterion("magnitude", needs_importance=False, summary="rank by |w|")
def _magnitude(*, weight, importance, generator):
    return weight.detach().abs().unsqueeze(0)


@criterion("random", needs_importance=False, summary="random ranking (seeded with --seed)")
def _random(*, weight, importance, generator):
    return torch.rand(weight.shape, generator=generator).unsqueeze(0)


def get_criterion(name: str) -> Criterion:
    try:
        return CRITERIA[name]
    except KeyError:
        raise InputError(f"--method {name}: choose one of {', '.join(CRITERIA)}") from None


def kept_count(rate: float, size: int) -> int:
    """Weights a layer (or pool) of ``size`` keeps at cumulative pruning rate ``rate``."""
    return round((1.0 - rate) * size)


# ---------------------------------------------------------------------------------- mask building


def build_masks(
    *,
    weights: Mapping[str, torch.Tensor],
    method: str,
    rate: float,
    importance: Mapping[str, torch.Tensor] | None = None,
    previous: Mapping[str, torch.Tensor] | None = None,
    scope: str = "layer",
    min_layer_density: float = 0.01,
    seed: int = 0,
    on_layer: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks (bool, True = kept, shaped like each weight) for ``weights`` at ``rate``.

    ``rate`` is the fraction of each layer (``scope="layer"``) or of the pool (``"global"``)
    pruned in total, counting weights ``previous`` masks already removed, which stay removed.
    """
    chosen = get_criterion(method)
    if chosen.needs_importance and importance is None:
        raise InputError(f"--method {method} needs an importance file (run fairgrape score first)")
    if not 0.0 <= rate < 1.0:
        raise InputError(f"--rate {rate}: must be in [0, 1)")
    if scope not in SCOPES:
        raise InputError(f"--scope {scope}: choose layer or global")
    names = [name for name in weights if importance is None or name in importance]
    generator = torch.Generator().manual_seed(seed)

    def layer_inputs(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weight = weights[name].detach().cpu()
        layer_importance = importance[name] if importance is not None else None
        scores = chosen.scores(weight=weight, importance=layer_importance, generator=generator)
        candidates = _candidates(name, weight, previous)
        return scores.reshape(scores.shape[0], -1), candidates, weight.reshape(-1)

    if scope == "layer":
        masks = {}
        for name in names:
            scores, candidates, weight = layer_inputs(name)
            keep = kept_count(rate, weight.numel())
            masks[name] = select(scores, candidates, keep, weight).view(weights[name].shape)
            if on_layer is not None:
                on_layer(name)
        return masks
    return _build_global(names, weights, layer_inputs, rate, min_layer_density, on_layer)


def _candidates(
    name: str, weight: torch.Tensor, previous: Mapping[str, torch.Tensor] | None
) -> torch.Tensor:
    if previous is None or name not in previous:
        return torch.ones(weight.numel(), dtype=torch.bool)
    return previous[name].reshape(-1).to(torch.bool).cpu()


def _build_global(names, weights, layer_inputs, rate, min_layer_density, on_layer):
    """One pool over all layers; each layer first keeps ``min_layer_density`` of itself."""
    if not 0.0 <= min_layer_density <= 1.0:
        raise InputError(f"--min-layer-density {min_layer_density}: must be in [0, 1]")
    score_rows, candidate_parts, weight_parts, reserved_parts, sizes = [], [], [], [], []
    for name in names:
        scores, candidates, weight = layer_inputs(name)
        floor = min(math.ceil(min_layer_density * weight.numel()), int(candidates.sum()))
        reserved_parts.append(select(scores, candidates, floor, weight))
        score_rows.append(scores)
        candidate_parts.append(candidates)
        weight_parts.append(weight)
        sizes.append(weight.numel())
        if on_layer is not None:
            on_layer(name)
    rows = {part.shape[0] for part in score_rows}
    if len(rows) != 1:
        raise InputError("importance files must list the same groups for every layer")
    scores = torch.cat(score_rows, dim=1)
    pool = select(
        scores,
        torch.cat(candidate_parts),
        kept_count(rate, sum(sizes)),
        torch.cat(weight_parts),
        already_kept=torch.cat(reserved_parts),
    )
    return {
        name: part.view(weights[name].shape)
        for name, part in zip(names, torch.split(pool, sizes))
    }


# ---------------------------------------------------------------------------------------- select


def select(
    scores: torch.Tensor,
    candidates: torch.Tensor,
    keep: int,
    weight: torch.Tensor,
    *,
    already_kept: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flat bool mask keeping ``keep`` of the ``candidates`` by the greedy on ``scores [R, n]``.

    ``already_kept`` (a subset of the candidates) starts the kept set. When the candidates'
    scores are all zero (nothing was learned about them) the ranking falls back to ``|w|``.
    """
    num_candidates = int(candidates.sum())
    kept = already_kept.clone() if already_kept is not None else torch.zeros_like(candidates)
    if keep >= num_candidates:
        return candidates.clone()
    if keep <= int(kept.sum()):
        return kept
    candidate_scores = scores[:, candidates]
    if not bool(torch.isfinite(candidate_scores).all()):
        raise InputError("importance contains NaN or infinite values; rescore the model")
    if not bool(candidate_scores.any()):
        scores = weight.abs().unsqueeze(0)
    if scores.shape[0] == 1:
        return _top_k(scores[0], candidates, keep, kept)
    return _greedy(scores, candidates, keep, kept)


def _ranking(scores: torch.Tensor, candidates: torch.Tensor, length: int) -> torch.Tensor:
    """Each row's candidates, best first, ties by lower flat index (a stable descending sort)."""
    ranked = scores.masked_fill(~candidates, -math.inf)
    return torch.sort(ranked, dim=-1, descending=True, stable=True).indices[..., :length]


def _top_k(row: torch.Tensor, candidates: torch.Tensor, keep: int, kept: torch.Tensor) -> torch.Tensor:
    order = _ranking(row, candidates & ~kept, int((candidates & ~kept).sum()))
    kept[order[: keep - int(kept.sum())]] = True
    return kept


def _greedy(
    scores: torch.Tensor, candidates: torch.Tensor, keep: int, kept: torch.Tensor
) -> torch.Tensor:
    from ._greedy import greedy_fill

    num_groups = scores.shape[0]
    scores = scores.float().contiguous()
    totals = scores[:, candidates].double().sum(dim=1)
    overall = float(totals.sum())
    targets = totals / overall if overall > 0 else torch.full((num_groups,), 1.0 / num_groups)
    sums = scores[:, kept].double().sum(dim=1)
    order = _ranking(scores, candidates, int(candidates.sum())).contiguous()
    pointers = torch.zeros(num_groups, dtype=torch.int64)
    quota = keep - int(kept.sum())
    kept_np = kept.numpy()
    added = greedy_fill(
        order.numpy(), scores.numpy(), kept_np, sums.numpy(), targets.numpy(), pointers.numpy(), quota
    )
    if added != quota:  # cannot happen with full rankings; guards the kernel's contract
        raise RuntimeError(f"greedy stopped after {added} of {quota} selections")
    return kept

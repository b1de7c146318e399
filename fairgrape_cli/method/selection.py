"""Scores -> masks: the FairGRAPE greedy and the baselines, per layer or over one global pool.

A pruning method is a *criterion*: a small function registered by name that turns a layer's
weight and importance into score rows ``[R, *weight.shape]``. One row (``taylor``, ``magnitude``,
``random``) means "keep the top k"; several rows (``fairgrape``: one per group) mean "keep k
while each row keeps its share of the total", the FairGRAPE greedy. The top-k is exactly that
greedy with a single row, so every method shares one mask-building path and both scopes.

Where the time goes: each row is ranked (a stable sort, with torch, of integer keys made from the
scores, which torch radix-sorts many times faster than floats), only as deep as the greedy reads
it (the top alone at high rates, extended when a group runs out), and the greedy walks the
rankings in compiled code (``_greedy``). Two layers are selected at a time, one per core.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..errors import InputError
from ..registry import Registry
from .ranking import CORES, on_both_cores, ranking_places, rankings, scratch, torch_threads

SCOPES = ("layer", "global")


@dataclass(frozen=True)
class Criterion:
    """A registered pruning criterion (``--method``): the score rows it ranks by."""

    name: str
    needs_importance: bool
    summary: str
    scores: Callable[..., torch.Tensor]  # (weight=, importance=, generator=) -> [R, *shape]


CRITERIA: Registry[Criterion] = Registry("--method")


def criterion(name: str, *, needs_importance: bool, summary: str):
    """Register a pruning criterion under ``name`` (the value of ``--method``)."""
    return CRITERIA.decorator(name, lambda scores: Criterion(name, needs_importance, summary, scores))


@criterion("fairgrape", needs_importance=True, summary="keep every group's share of importance")
def _group_importance(*, weight, importance, generator):
    return importance


@criterion("taylor", needs_importance=True, summary="group-agnostic: rank by importance summed over groups")
def _summed_importance(*, weight, importance, generator):
    summed = importance[0].double()  # one float64 row, not a float64 copy of every group
    for group_scores in importance[1:]:
        summed += group_scores
    return summed.unsqueeze(0)


@criterion("magnitude", needs_importance=False, summary="rank by |w|")
def _magnitude(*, weight, importance, generator):
    return weight.detach().abs().unsqueeze(0)


@criterion("random", needs_importance=False, summary="random ranking (seeded with --seed)")
def _random(*, weight, importance, generator):
    return torch.rand(weight.shape, generator=generator).unsqueeze(0)


def kept_count(rate: float, size: int) -> int:
    """Weights a layer (or pool) of ``size`` keeps at cumulative pruning rate ``rate``."""
    return round((1.0 - rate) * size)


# ---------------------------------------------------------------------------------- mask building


@dataclass
class LayerInputs:
    """One layer, flattened: score rows ``[R, n]``, candidates ``[n]`` (bool), weight ``[n]``."""

    rows: torch.Tensor
    candidates: torch.Tensor
    weight: torch.Tensor


def check_options(*, rate: float, scope: str, min_layer_density: float) -> None:
    """Refuse a rate, scope or layer floor that cannot be met, before any work."""
    if not 0.0 <= rate < 1.0:
        raise InputError(f"--rate {rate}: must be in [0, 1) (the fraction of weights pruned)")
    if scope not in SCOPES:
        raise InputError(f"--scope {scope}: choose {' or '.join(SCOPES)}")
    if scope != "global":
        return
    if not 0.0 <= min_layer_density <= 1.0:
        raise InputError(f"--min-layer-density {min_layer_density}: must be in [0, 1]")
    if min_layer_density > 1.0 - rate + 1e-12:
        raise InputError(
            f"--min-layer-density {min_layer_density}: more than the {1.0 - rate:.4g} of the weights "
            f"--rate {rate} keeps; it would override the rate"
        )


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
    ``importance`` may load lazily: each layer's tensor is read once, when it is ranked.
    """
    chosen = CRITERIA.choose(method)
    if chosen.needs_importance and importance is None:
        raise InputError(f"--method {method} needs an importance file (run fairgrape score first)")
    check_options(rate=rate, scope=scope, min_layer_density=min_layer_density)
    names = [name for name in weights if importance is None or name in importance]
    generator = torch.Generator().manual_seed(seed)

    def layer_inputs(name: str) -> LayerInputs:
        weight = weights[name].detach().cpu().reshape(-1)
        layer_importance = importance[name] if importance is not None else None
        rows = chosen.scores(weight=weight, importance=_flat(layer_importance), generator=generator)
        rows = rows.reshape(rows.shape[0], -1)
        if rows.shape[1] != weight.numel():
            raise InputError(
                f"importance of {name} has {rows.shape[1]} values per group; the weight has {weight.numel()}"
            )
        return LayerInputs(rows, _candidates(name, weight, previous), weight)

    shapes = {name: weights[name].shape for name in names}
    # torch's own thread pool at one thread while the selection runs its two: beside them (or on
    # a busy machine) it made even the masks' bookkeeping sums up to 50x slower (measured), and
    # the sorts slower rather than faster. Around the selection alone: loading, tracing and
    # counting FLOPs keep torch's threads.
    try:
        with torch_threads(1):
            if scope == "layer":
                flat = _masks_per_layer(names, layer_inputs, rate, on_layer)
            else:
                sizes = {name: weights[name].numel() for name in names}
                flat = _masks_over_pool(sizes, layer_inputs, rate, min_layer_density, on_layer)
    finally:
        scratch.buffers.clear()  # (the worker threads' buffers go with their threads)
    return {name: flat[name].view(shapes[name]) for name in names}


def _flat(importance: torch.Tensor | None) -> torch.Tensor | None:
    return importance.reshape(importance.shape[0], -1) if importance is not None else None


def _candidates(
    name: str, weight: torch.Tensor, previous: Mapping[str, torch.Tensor] | None
) -> torch.Tensor:
    if previous is None or name not in previous:
        return torch.ones(weight.numel(), dtype=torch.bool)
    return previous[name].reshape(-1).to(device="cpu", dtype=torch.bool).contiguous()


def _masks_per_layer(names, layer_inputs, rate, on_layer) -> dict[str, torch.Tensor]:
    def select_layer(inputs: LayerInputs) -> torch.Tensor:
        keep = kept_count(rate, inputs.weight.numel())
        return select(inputs.rows, inputs.candidates, keep, inputs.weight)

    masks = {}
    # layer inputs are made here, in order (the random criterion draws from one generator)
    for name, kept in zip(names, on_both_cores(select_layer, map(layer_inputs, names))):
        masks[name] = kept
        if on_layer is not None:
            on_layer(name)
    return masks


def _masks_over_pool(sizes, layer_inputs, rate, min_layer_density, on_layer) -> dict[str, torch.Tensor]:
    """One pool over all layers; each layer first keeps ``min_layer_density`` of itself (chosen
    by the same selection within the layer), then the greedy fills the pool from there."""

    def reserve(inputs: LayerInputs) -> tuple[LayerInputs, torch.Tensor]:
        floor = math.ceil(round(min_layer_density * inputs.weight.numel(), 9))  # 0.07 * 100 is 7, not 8
        return inputs, select(inputs.rows, inputs.candidates, floor, inputs.weight)

    # buffers allocated once and filled layer by layer: never a list of parts plus their concatenation
    total = sum(sizes.values())
    candidates = torch.empty(total, dtype=torch.bool)
    weight = torch.empty(total, dtype=torch.float32)
    reserved = torch.empty(total, dtype=torch.bool)
    rows = None
    spans, start = {}, 0
    for name, (inputs, kept) in zip(sizes, on_both_cores(reserve, map(layer_inputs, sizes))):
        if rows is None:
            dtype = torch.float64 if inputs.rows.dtype == torch.float64 else torch.float32
            rows = torch.empty(inputs.rows.shape[0], total, dtype=dtype)
        elif inputs.rows.shape[0] != rows.shape[0]:
            raise InputError("importance files must list the same groups for every layer")
        stop = start + sizes[name]
        rows[:, start:stop] = inputs.rows
        candidates[start:stop] = inputs.candidates
        weight[start:stop] = inputs.weight
        reserved[start:stop] = kept
        spans[name], start = (start, stop), stop
        del inputs, kept  # the layer's own buffers are not needed past here
        if on_layer is not None:
            on_layer(name)
    if rows is None:
        return {}
    pool = plan_selection(
        rows, candidates, kept_count(rate, total), weight, already_kept=reserved,
        rank_threads=CORES,
    )  # fmt: skip
    kept = pool.run()
    return {name: kept[first:last] for name, (first, last) in spans.items()}


def warm_up() -> None:
    """Load the compiled loops (from numba's cache, else compile them) on a tiny selection, so a
    caller can have that done on another thread while it loads its model."""
    rows = torch.arange(128, dtype=torch.float32).reshape(2, 64)  # too small for torch's threads
    try:
        select(rows, torch.ones(64, dtype=torch.bool), 8, rows[0])
    except Exception:  # noqa: BLE001 - a failure shows again, with the real inputs, in the selection
        logging.getLogger("fairgrape").debug("warming up the compiled selection failed", exc_info=True)


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
    return plan_selection(scores, candidates, keep, weight, already_kept=already_kept).run()


class Plan(Protocol):
    """A selection with its rankings made; ``run`` makes the picks and returns the kept mask."""

    def run(self) -> torch.Tensor:
        """Make the picks; the kept mask."""


@dataclass
class _Decided:
    kept: torch.Tensor

    def run(self) -> torch.Tensor:
        return self.kept


@dataclass
class _TopK:
    """One score row: keep the best ``len(best)`` of the pool (the greedy with one group)."""

    kept: torch.Tensor
    best: torch.Tensor

    def run(self) -> torch.Tensor:
        self.kept[self.best] = True
        return self.kept


@dataclass
class _Greedy:
    """Several rows: the FairGRAPE greedy over the first places of each row's ranking."""

    kept: torch.Tensor
    rows: torch.Tensor  # [G, n] float32/float64, C order
    candidates: torch.Tensor
    order: torch.Tensor  # [G, m] int32/int64: each group's first m places
    sums: np.ndarray  # [G] float64, S_g of the starting kept set
    targets: np.ndarray  # [G] float64
    quota: int
    limit: int  # the most places a group can ever need

    def run(self) -> torch.Tensor:
        from ._greedy import greedy_fill

        pointers = np.zeros(self.rows.shape[0], dtype=np.int64)
        added = 0
        while True:
            added += greedy_fill(
                self.order.numpy(), self.rows.numpy(), self.kept.numpy(), self.sums, self.targets,
                pointers, self.quota - added,
            )  # fmt: skip
            if added == self.quota:
                return self.kept
            length = self.order.shape[1]
            if length >= self.limit:  # cannot happen: no group reads past ``limit`` places
                raise RuntimeError(f"greedy stopped after {added} of {self.quota} selections")
            # the chosen group reached the end of its places: rank further, resume where it was
            longer = min(self.limit, 2 * length)
            self.order = rankings(self.rows, self.candidates, longer, previous=self.order)


def _first_places(quota: int, groups: int) -> int:
    """Places ranked up front. A group's pointer passes its own picks (about quota / G) and the
    weights other groups took first; on the benchmark's scores it stops within 2.2x quota / G at
    every rate. Ranking further only when a group runs out saves most of the sort at low rates."""
    return 3 * math.ceil(quota / groups) + 64


def plan_selection(
    scores: torch.Tensor,
    candidates: torch.Tensor,
    keep: int,
    weight: torch.Tensor,
    *,
    already_kept: torch.Tensor | None = None,
    rank_threads: int = 1,
) -> Plan:
    """Everything :func:`select` does before its picks: checks, targets and rankings
    (``rank_threads`` rows at a time: for one large pool, not inside the per-layer threads)."""
    from ._greedy import candidate_totals, kept_sums

    candidates = candidates.reshape(-1).to(torch.bool).contiguous()
    kept = (
        already_kept.reshape(-1).to(torch.bool).clone().contiguous()
        if already_kept is not None
        else torch.zeros_like(candidates)
    )
    num_candidates = int(candidates.sum())
    if keep >= num_candidates:
        return _Decided(candidates.clone())
    already = int(kept.sum())
    if keep <= already:
        return _Decided(kept)
    rows = _as_rows(scores)
    totals, finite, nonzero = candidate_totals(rows.numpy(), candidates.numpy())
    if not finite:
        raise InputError("importance contains NaN or infinite values; rescore the model")
    if not nonzero:
        rows = _as_rows(weight.detach().abs().reshape(1, -1))
    if rows.shape[0] == 1:
        best = ranking_places(rows[0], candidates & ~kept, out=torch.empty(keep - already, dtype=torch.int64))
        return _TopK(kept, best)
    totals = totals.tolist()
    overall = sum(totals)
    groups = len(totals)
    targets = np.array([t / overall if overall > 0 else 1.0 / groups for t in totals])
    sums = kept_sums(rows.numpy(), kept.numpy()) if already else np.zeros(groups)
    # A group's pointer only ever passes weights already kept, so it never goes deeper than the
    # number kept in the end: the first ``keep`` places of each ranking are all the greedy reads.
    limit = min(keep, num_candidates)
    first = min(limit, _first_places(keep - already, groups))
    order = rankings(rows, candidates, first, threads=rank_threads)
    return _Greedy(kept, rows, candidates, order, sums, targets, keep - already, limit)


def _as_rows(scores: torch.Tensor) -> torch.Tensor:
    rows = scores.detach().cpu()
    rows = rows.reshape(rows.shape[0], -1) if rows.ndim > 1 else rows.reshape(1, -1)
    if rows.dtype not in (torch.float32, torch.float64):
        rows = rows.float()
    return rows.contiguous()

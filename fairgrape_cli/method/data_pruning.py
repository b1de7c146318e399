"""Data pruning with fair quotas (DRoP): how many training rows each unit keeps, and which rows.

A *unit* is a class (DRoP's setting), a group, or a class x group cell. Two kinds of small
registered definitions decide a pruned training set:

- a quota rule (``QUOTAS``, the value of ``--quota``) turns each unit's size ``N_k`` and the
  query model's validation recall ``r_k`` into a keep fraction ``d_k``;
- a within rule (``WITHIN``, the value of ``--within``) picks that many rows of a unit.

``drop`` is the paper's form (Vysogorets, Ahuja, Kempe, "DRoP: Distributionally Robust Data
Pruning", Algorithm 1): fractions ``d_k = d (1 - r_k) / Z`` with ``Z = sum_k (N_k / N)(1 - r_k)``;
a fraction above 1 is capped at 1 and the excess is given to the uncapped units in proportion to
``(1 - r_k)`` (on the fraction scale), repeatedly, so the result is ``d_k = min(1, c (1 - r_k))``
with the one ``c`` that keeps ``N d`` rows. The authors' code instead sets per-class *counts*
proportional to ``(1 - r_k)``; the two agree when the classes are the same size.

Two cases the formula leaves open, decided here: when every unit with ``r_k < 1`` is capped (or
there is none: all recalls perfect, ``Z = 0``), the rows still missing from ``N d`` are spread
over the units with perfect recall as one equal fraction, so with all recalls perfect every unit
keeps ``d`` (no unit is harder than another) and ``d = 1`` always keeps everything.

A unit with recall 1 keeps no rows under the formula, and a model trained on the result never
sees it. ``min_quota`` (``--min-quota f``, default 0: the formula as published) guards against
that: every unit first keeps ``f`` of its rows, and the rule distributes the rest, i.e.
``d_k = f + (1 - f) q_k`` where ``q_k`` are the rule's quotas at density ``(d - f) / (1 - f)``.

Rounding: the kept total is ``N d`` rounded half up; each unit keeps ``floor(N_k d_k)`` rows and
the rows still missing go one each to the units with the largest remainders, equal remainders in
an order drawn from the seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..registry import Registry

_EPSILON = 1e-9  # float noise in products like 0.3 * 10 that are integers in exact arithmetic
QUOTA_FORM = (
    "paper's form: fractions d_k = d(1-r_k)/Z, Z = sum_k (N_k/N)(1-r_k), capped at 1, the excess "
    "redistributed over uncapped units in proportion to (1-r_k)"
)


@dataclass(frozen=True)
class Quotas:
    """Each unit's kept fraction, which were capped at 1, and a note on how."""

    fractions: np.ndarray  # d_k per unit, float64
    capped: np.ndarray  # bool per unit: held at 1 by the cap
    note: str | None = None  # a rule that went beyond the formula says so here


@dataclass(frozen=True)
class QuotaRule:
    """A registered quota rule (``--quota``)."""

    name: str
    summary: str
    needs_recall: bool
    quotas: Callable[..., Quotas]  # (sizes=, recalls=, density=) -> Quotas


QUOTAS: Registry[QuotaRule] = Registry("--quota")


def quota_rule(name: str, *, needs_recall: bool, summary: str):
    """Register a quota rule under ``name`` (the value of ``--quota``)."""
    return QUOTAS.decorator(name, lambda quotas: QuotaRule(name, summary, needs_recall, quotas))


@quota_rule("drop", needs_recall=True, summary="DRoP: harder units (lower val recall) keep more")
def drop_quotas(*, sizes: np.ndarray, recalls: np.ndarray, density: float) -> Quotas:
    """DRoP: d_k = d (1 - r_k) / Z, capped at 1, the excess shared in proportion to (1 - r_k)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    hardness = 1.0 - np.asarray(recalls, dtype=np.float64)
    wanted = density * sizes.sum()  # rows to keep, before rounding
    capped = np.zeros(len(sizes), dtype=bool)
    fractions = np.zeros(len(sizes))
    while True:  # cap, then share what is left over the rest in proportion to (1 - r_k), again
        open_ = ~capped & (hardness > 0)
        mass = float((sizes[open_] * hardness[open_]).sum())
        if mass <= 0:
            break
        scale = (wanted - sizes[capped].sum()) / mass  # first pass: d / Z
        over = open_ & (scale * hardness > 1.0)
        if not over.any():
            fractions[open_] = scale * hardness[open_]
            break
        capped |= over
    fractions[capped] = 1.0
    missing = wanted - float((sizes * fractions).sum())
    perfect = ~capped & (hardness <= 0)
    if missing > _EPSILON * max(1.0, wanted) and perfect.any():
        fractions[perfect] = min(1.0, missing / sizes[perfect].sum())
        if hardness.max() <= 0:
            note = "every recall is 1 (Z = 0): every unit keeps d"
        else:
            note = (
                "every unit with recall below 1 is capped at 1: the rest of N*d is spread evenly "
                "over the units with recall 1"
            )
        return Quotas(fractions, capped, note)
    return Quotas(fractions, capped)


@quota_rule("uniform", needs_recall=False, summary="every unit keeps d (random pruning, the baseline)")
def uniform_quotas(*, sizes: np.ndarray, recalls: np.ndarray, density: float) -> Quotas:
    """Every unit keeps ``density``."""
    return Quotas(np.full(len(sizes), float(density)), np.zeros(len(sizes), dtype=bool))


# ------------------------------------------------------------------------------ within a unit


@dataclass(frozen=True)
class WithinRule:
    """A registered within-unit rule (``--within``)."""

    name: str
    summary: str
    needs_scores: bool
    choose: Callable[..., np.ndarray]  # (rows=, count=, scores=, rng=) -> the kept rows


WITHIN: Registry[WithinRule] = Registry("--within")


def within_rule(name: str, *, needs_scores: bool, summary: str):
    """Register a within-unit rule under ``name`` (the value of ``--within``)."""
    return WITHIN.decorator(name, lambda choose: WithinRule(name, summary, needs_scores, choose))


@within_rule("random", needs_scores=False, summary="a seeded random subset (DRoP proper)")
def _random_rows(*, rows: np.ndarray, count: int, scores: np.ndarray | None, rng: np.random.Generator):
    return rng.choice(rows, size=count, replace=False)


@within_rule("el2n", needs_scores=True, summary="the highest EL2N scores (hardest rows) first")
def _hardest_rows(*, rows: np.ndarray, count: int, scores: np.ndarray | None, rng: np.random.Generator):
    ties = rng.random(len(rows))
    unit_scores = np.nan_to_num(scores[rows], nan=-np.inf)  # rows never scored go last
    return rows[np.lexsort((ties, -unit_scores))[:count]]


# ----------------------------------------------------------------------------- counts and plan


def kept_total(size: int, density: float) -> int:
    """``size * density`` rounded half up: the exact number of rows a plan keeps."""
    return int(math.floor(size * density + 0.5 + _EPSILON))


def kept_counts(sizes: Sequence[int], fractions: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer rows per unit, summing to ``total`` exactly (largest remainders; seeded ties)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = sizes * np.asarray(fractions, dtype=np.float64)
    counts = np.minimum(np.floor(exact + _EPSILON).astype(np.int64), sizes)
    remainders = np.round(np.maximum(exact - counts, 0.0), 9)  # equal up to float noise: a tie
    ties = rng.random(len(sizes))
    short = total - int(counts.sum())
    if short > 0:
        room = np.flatnonzero(counts < sizes)
        order = room[np.lexsort((ties[room], -remainders[room]))]
        counts[order[:short]] += 1
    elif short < 0:
        filled = np.flatnonzero(counts > 0)
        order = filled[np.lexsort((ties[filled], remainders[filled]))]
        counts[order[:-short]] -= 1
    if int(counts.sum()) != total:
        raise ValueError(f"cannot keep {total} rows of {int(sizes.sum())}")
    return counts


@dataclass(frozen=True)
class Unit:
    """One unit of a data-pruning plan: its rows, recall, quota and rows kept."""

    name: str
    rows: int  # N_k: training rows
    val_rows: int  # validation rows its recall was measured on
    recall: float | None  # r_k (None when not measured)
    quota: float  # d_k
    kept: int
    capped: bool


@dataclass
class DataPlan:
    """A data-pruning plan: the units, the rows kept, notes."""

    units: list[Unit]
    density: float  # d asked for
    rows: int  # N
    kept: int  # rows kept, exactly kept_total(N, d)
    quota: str
    within: str
    kept_rows: np.ndarray  # indices of the kept pool rows, ascending
    notes: list[str] = field(default_factory=list)


def check_density(density: float, min_quota: float = 0.0) -> None:
    """Refuse a keep fraction or floor outside their ranges."""
    if not (isinstance(density, (int, float)) and 0.0 < density <= 1.0):
        raise InputError(f"--keep {density}: must be in (0, 1] (the fraction of training rows kept)")
    if not 0.0 <= min_quota <= density:
        raise InputError(f"--min-quota {min_quota}: must be in [0, --keep {density}]")


def floored_quotas(rule: QuotaRule, *, sizes, recalls, density: float, min_quota: float) -> Quotas:
    """The rule's quotas with every unit keeping at least ``min_quota`` of its rows: that share
    is set aside first, the rule distributes the rest (no floor: the rule itself)."""
    if min_quota <= 0.0:
        return rule.quotas(sizes=sizes, recalls=recalls, density=density)
    if min_quota >= 1.0:
        return Quotas(np.ones(len(sizes)), np.zeros(len(sizes), dtype=bool))
    rest = rule.quotas(sizes=sizes, recalls=recalls, density=(density - min_quota) / (1.0 - min_quota))
    return Quotas(min_quota + (1.0 - min_quota) * rest.fractions, rest.capped, rest.note)


def plan_data_pruning(
    *,
    unit_of_row: np.ndarray,
    unit_names: Sequence[str],
    recalls: Sequence[float | None],
    val_rows: Sequence[int],
    density: float,
    quota: str = "drop",
    within: str = "random",
    min_quota: float = 0.0,
    scores: np.ndarray | None = None,
    seed: int = 0,
) -> DataPlan:
    """Quotas, counts and the kept rows of a pool whose row ``i`` belongs to unit ``unit_of_row[i]``.

    ``recalls`` holds each unit's validation recall (``None`` where it was not measured, allowed
    only for a rule that does not read it); ``scores`` one score per pool row for a within rule
    that needs them (higher = kept first). The same inputs and seed give the same plan.
    """
    check_density(density, min_quota)
    rule, chooser = QUOTAS.choose(quota), WITHIN.choose(within)
    unit_of_row = np.asarray(unit_of_row, dtype=np.int64)
    sizes = np.bincount(unit_of_row, minlength=len(unit_names))
    if (sizes == 0).any():
        raise ValueError("every unit needs at least one pool row")
    if rule.needs_recall and any(r is None or not 0.0 <= r <= 1.0 for r in recalls):
        raise ValueError(f"--quota {quota} needs a recall in [0, 1] for every unit")
    if chooser.needs_scores and (scores is None or len(scores) != len(unit_of_row)):
        raise ValueError(f"--within {within} needs one score per pool row")
    total = kept_total(int(sizes.sum()), density)
    if total == 0:
        raise InputError(
            f"--keep {density}: keeps no row of the {int(sizes.sum())} training rows; keep more"
        )
    measured = np.array([np.nan if r is None else r for r in recalls], dtype=np.float64)
    result = floored_quotas(rule, sizes=sizes, recalls=measured, density=float(density), min_quota=min_quota)
    rng = np.random.default_rng(seed)
    counts = kept_counts(sizes, result.fractions, total, rng)
    kept = []
    for unit, count in enumerate(counts):
        rows = np.flatnonzero(unit_of_row == unit)
        if count:
            kept.append(chooser.choose(rows=rows, count=int(count), scores=scores, rng=rng))
    units = [
        Unit(
            name=str(unit_names[k]),
            rows=int(sizes[k]),
            val_rows=int(val_rows[k]),
            recall=None if recalls[k] is None else float(recalls[k]),
            quota=float(result.fractions[k]),
            kept=int(counts[k]),
            capped=bool(result.capped[k]),
        )
        for k in range(len(unit_names))
    ]
    notes = [result.note] if result.note else []
    empty = [unit.name for unit in units if unit.kept == 0]
    if empty:
        notes.append(
            f"no training rows kept of {', '.join(empty)}: a model trained on this set never sees "
            "them (--min-quota keeps a share of every unit)"
        )
    kept_rows = np.sort(np.concatenate(kept)) if kept else np.empty(0, dtype=np.int64)
    return DataPlan(units, float(density), int(sizes.sum()), total, quota, within, kept_rows, notes)


# ------------------------------------------------------------------------ what the model says


def unit_recalls(
    right: np.ndarray, scored: np.ndarray, unit_of_row: np.ndarray, num_units: int
) -> tuple[list[float | None], list[int]]:
    """Recall of each unit (rows right / rows) over the rows that were scored.

    ``right`` and ``scored`` are bool per row; rows whose unit is ``-1`` (a class or cell without
    training rows) are left out.
    """
    units = np.asarray(unit_of_row, dtype=np.int64)
    counted = np.asarray(scored, dtype=bool) & (units >= 0)
    hits = np.asarray(right, dtype=bool) & counted
    counts = np.bincount(units[counted], minlength=num_units)
    correct = np.bincount(units[hits], minlength=num_units)
    recalls = [float(correct[k] / counts[k]) if counts[k] else None for k in range(num_units)]
    return recalls, counts.tolist()


def el2n(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """EL2N (Paul et al., 2021): the L2 norm of softmax(logits) minus the one-hot target."""
    error = torch.softmax(logits.float(), dim=1)
    error[torch.arange(len(targets)), targets] -= 1.0
    return error.norm(dim=1)


@torch.no_grad()
def el2n_scores(
    model: nn.Module,
    batches,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    num_rows: int,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """EL2N of every row under ``model`` in eval mode (NaN for rows never yielded)."""
    scores = torch.full((num_rows,), float("nan"), dtype=torch.float64)
    model.eval()
    for images, indices in batches:
        logits = model(prepare(images)).cpu()
        scores[indices] = el2n(logits, targets[indices]).double()
        if on_batch is not None:
            on_batch(len(indices))
    return scores.numpy()

"""Confidence intervals for per-group rates and for the disparity metrics that summarise them.

The method was chosen by a coverage study (``benchmarks/intervals.py``; its table is in that
file's docstring and in the README), against today's percentile bootstrap, the basic bootstrap
and the bias-corrected bootstrap, on groups of a few dozen to thousands of images:

- a rate of one group (accuracy, a flip rate, a true or false positive rate, a selection rate)
  has Wilson's score interval; a mean of per-image fractions (a multi-attribute head's share of
  attributes right) has Wilson's interval at its effective sample size ``n p (1 - p) / s**2``
  (``s**2`` the fractions' variance), which is ``n`` for 0/1 scores;
- a difference of two rates has the MOVER interval (Newcombe's hybrid score; Zou and Donner,
  2008) built from the two rates' intervals, with their correlation when they are measured on the
  same images (a group's drop: the baseline's and the model's scores, paired) and without it for
  two groups (disjoint images);
- a disparity metric (the spread, minimum, maximum or standard deviation of a per-group number) is
  bounded over every set of per-group values that its per-group intervals allow together: a
  spread over the intervals of all pairwise differences (``k = G (G - 1) / 2`` statements), a
  minimum, maximum or standard deviation over the groups' own intervals (``k = G``), each
  statement made at the Sidak level ``confidence ** (1 / k)`` so that all ``k`` hold together
  with ``confidence``. Such an interval contains its point value by construction, and it covers
  the true value whenever all ``k`` statements do.

The percentile bootstrap that this replaces resampled a max-minus-min statistic, whose
resamples lie mostly above its own value when groups are alike: the interval of a gap near zero
excluded zero and, at times, the gap itself.

Everything here is numpy on arrays whose last axis holds the groups (leading axes broadcast), so
the coverage study computes thousands of replicates in one call; nothing here knows files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

METHOD = (
    "Wilson score intervals per group (at the effective sample size for several attributes), "
    "MOVER for differences (paired with the baseline on the same images), and for each disparity "
    "metric its bounds over the per-group intervals at the Sidak-adjusted level; "
    "benchmarks/intervals.py measures their coverage"
)


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def sidak(confidence: float, statements: int) -> float:
    """The confidence each of ``statements`` independent statements needs so that all hold
    together with ``confidence``."""
    return confidence ** (1.0 / max(statements, 1))


# --------------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rate:
    """A rate per group with what its interval needs: the value (a mean of per-image scores in
    [0, 1]), the number of images it is a mean over, and the scores' variance (population,
    ``p (1 - p)`` for 0/1 scores). Arrays broadcast; the last axis holds the groups."""

    value: np.ndarray
    n: np.ndarray
    variance: np.ndarray | None = None  # None: 0/1 scores
    most: float = 1.0  # the effective sample size is at most ``most * n`` (a head's attribute count)

    def effective_n(self) -> np.ndarray:
        """The number of 0/1 trials whose binomial variance the scores' mean has."""
        n = np.asarray(self.n, dtype=float)
        if self.variance is None:
            return n
        binomial = np.asarray(self.value) * (1 - np.asarray(self.value))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.asarray(self.variance) > 0, binomial / np.asarray(self.variance), self.most)
        ratio = np.where(binomial > 0, ratio, 1.0)  # all right or all wrong: no more than n trials
        return n * np.clip(ratio, 1.0, self.most)

    def interval(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """Wilson's score interval at ``confidence``; ``[0, 1]`` where there are no images."""
        return wilson(np.asarray(self.value, dtype=float), self.effective_n(), confidence=confidence)


def wilson(value: np.ndarray, n: np.ndarray, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval of a proportion ``value`` of ``n`` trials (arrays broadcast);
    ``[0, 1]`` where ``n`` is 0. It always contains ``value``."""
    z = z_value(confidence)
    value, n = np.broadcast_arrays(np.asarray(value, dtype=float), np.asarray(n, dtype=float))
    safe = np.where(n > 0, n, 1.0)
    value = np.where(n > 0, value, 0.5)
    scale = 1 + z * z / safe
    centre = (value + z * z / (2 * safe)) / scale
    half = z / scale * np.sqrt(value * (1 - value) / safe + z * z / (4 * safe * safe))
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    # rounding can put an end a hair past the value at 0 or 1; the interval contains it exactly
    return np.minimum(low, value), np.maximum(high, np.where(n > 0, value, 1.0))


def difference(
    first: tuple[np.ndarray, np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    correlation: np.ndarray | float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MOVER: ``first - second`` and its interval from each one's ``(value, low, high)`` at the
    same confidence; ``correlation`` of the two estimates (0 for disjoint images)."""
    value1, low1, high1 = (np.asarray(part, dtype=float) for part in first)
    value2, low2, high2 = (np.asarray(part, dtype=float) for part in second)
    r = np.clip(np.asarray(correlation, dtype=float), -1.0, 1.0)
    down1, up1 = value1 - low1, high1 - value1
    down2, up2 = value2 - low2, high2 - value2
    value = value1 - value2
    low = value - np.sqrt(np.maximum(down1**2 + up2**2 - 2 * r * down1 * up2, 0.0))
    high = value + np.sqrt(np.maximum(up1**2 + down2**2 - 2 * r * up1 * down2, 0.0))
    return value, low, high


def mean_of_two(
    first: tuple[np.ndarray, np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MOVER for ``(first + second) / 2`` of two independent estimates (balanced accuracy: the
    mean of the true positive rate and the true negative rate, measured on disjoint images)."""
    value1, low1, high1 = (np.asarray(part, dtype=float) for part in first)
    value2, low2, high2 = (np.asarray(part, dtype=float) for part in second)
    value = value1 + value2
    low = value - np.sqrt((value1 - low1) ** 2 + (value2 - low2) ** 2)
    high = value + np.sqrt((high1 - value1) ** 2 + (high2 - value2) ** 2)
    return value / 2, low / 2, high / 2


@dataclass(frozen=True)
class PairedRates:
    """Two rates measured on the same images of each group (the baseline's and the model's
    accuracy), with the correlation of their per-image scores; their difference is the drop."""

    first: Rate  # the baseline
    second: Rate  # the model
    correlation: np.ndarray

    @property
    def value(self) -> np.ndarray:
        """``first - second`` per group."""
        return np.asarray(self.first.value) - np.asarray(self.second.value)

    def interval(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """The MOVER interval of ``first - second``, paired."""
        _, low, high = difference(
            (self.first.value, *self.first.interval(confidence)),
            (self.second.value, *self.second.interval(confidence)),
            correlation=self.correlation,
        )
        return low, high


@dataclass(frozen=True)
class BalancedAccuracy:
    """The mean of a group's true positive rate and true negative rate (1 - its false positive
    rate), each measured on its own images."""

    true_positive: Rate
    false_positive: Rate

    @property
    def value(self) -> np.ndarray:
        """The balanced accuracy per group."""
        return (np.asarray(self.true_positive.value) + 1 - np.asarray(self.false_positive.value)) / 2

    def interval(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """The MOVER interval of the mean of the two rates (disjoint images)."""
        low_fp, high_fp = self.false_positive.interval(confidence)
        true_negative = (1 - np.asarray(self.false_positive.value), 1 - high_fp, 1 - low_fp)
        _, low, high = mean_of_two((self.true_positive.value, *self.true_positive.interval(confidence)), true_negative)
        return low, high


# ----------------------------------------------------------------------- disparity metrics


def pairwise_differences(
    estimate: Rate | PairedRates, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair of groups' difference ``x_i - x_j`` and its MOVER interval (groups are
    disjoint images, so independent), each ``[..., G, G]``."""
    value = np.asarray(estimate.value, dtype=float)
    low, high = (np.broadcast_to(end, value.shape) for end in estimate.interval(confidence))
    first = (value[..., :, None], low[..., :, None], high[..., :, None])
    second = (value[..., None, :], low[..., None, :], high[..., None, :])
    return difference(first, second)


def spread_interval(estimate: Rate | PairedRates, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of ``max - min`` over the groups: the largest lower and upper ends of the
    pairwise differences' intervals, all ``G (G - 1) / 2`` at the Sidak level together."""
    groups = np.shape(estimate.value)[-1]
    if groups < 2:
        zero = np.zeros(np.shape(estimate.value)[:-1])
        return zero, zero
    _, low, high = pairwise_differences(estimate, sidak(confidence, groups * (groups - 1) // 2))
    off_diagonal = ~np.eye(groups, dtype=bool)
    low = np.where(off_diagonal, low, -np.inf).max(axis=(-2, -1))
    high = np.where(off_diagonal, high, -np.inf).max(axis=(-2, -1))
    return np.maximum(low, 0.0), high


def _group_box(estimate, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    groups = np.shape(estimate.value)[-1]
    low, high = estimate.interval(sidak(confidence, groups))
    shape = np.shape(estimate.value)
    return np.broadcast_to(low, shape), np.broadcast_to(high, shape)


def min_interval(estimate, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the smallest group's value: where every group's value may lie together."""
    low, high = _group_box(estimate, confidence)
    return low.min(axis=-1), high.min(axis=-1)


def max_interval(estimate, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the largest group's value: where every group's value may lie together."""
    low, high = _group_box(estimate, confidence)
    return low.max(axis=-1), high.max(axis=-1)


def std_interval(estimate, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the population standard deviation over the groups: its least value over
    the box the per-group intervals span together (exact), and a bound on its largest (the
    least over centres ``c`` of the root mean square distance to each interval's far end)."""
    low, high = _group_box(estimate, confidence)
    return np.sqrt(_least_variance(low, high)), np.sqrt(_variance_bound(low, high))


def _least_variance(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``min over x in the box of var(x)`` = ``min over c of mean(dist(c, [low, high])**2)``: a
    convex piecewise quadratic in ``c``, least at a break point or at a piece's stationary point."""

    def objective(c):
        gap = np.maximum(np.maximum(low[..., None, :] - c[..., None], c[..., None] - high[..., None, :]), 0.0)
        return (gap**2).mean(axis=-1)

    def stationary(c):  # on the piece holding c: the mean of the ends c lies beyond
        below, above = low[..., None, :] > c[..., None], high[..., None, :] < c[..., None]
        count = below.sum(-1) + above.sum(-1)
        total = np.where(below, low[..., None, :], 0).sum(-1) + np.where(above, high[..., None, :], 0).sum(-1)
        return np.where(count > 0, total / np.maximum(count, 1), c)

    return _least_over_pieces(np.concatenate([low, high], axis=-1), objective, stationary)


def _variance_bound(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """An upper bound of ``max over x in the box of var(x)``: for any centre ``c``,
    ``var(x) <= mean((x - c)**2) <= mean((|c - mid| + half)**2)``; the least over ``c``."""
    mid, half = (low + high) / 2, (high - low) / 2

    def objective(c):
        return ((np.abs(c[..., None] - mid[..., None, :]) + half[..., None, :]) ** 2).mean(axis=-1)

    def stationary(c):  # on the piece holding c: the mean of mid -/+ half by the side c is on
        side = np.where(c[..., None] >= mid[..., None, :], 1.0, -1.0)
        return (mid[..., None, :] - side * half[..., None, :]).mean(axis=-1)

    return _least_over_pieces(mid, objective, stationary)


def _least_over_pieces(breaks: np.ndarray, objective, stationary) -> np.ndarray:
    """The least value of a convex piecewise quadratic with these break points (``[..., K]``):
    at a break point or at a piece's stationary point clipped to the piece."""
    breaks = np.sort(breaks, axis=-1)
    span = np.maximum(breaks[..., -1:] - breaks[..., :1], 1.0)
    edges = np.concatenate([breaks[..., :1] - span, breaks, breaks[..., -1:] + span], axis=-1)
    middles = (edges[..., :-1] + edges[..., 1:]) / 2
    candidates = np.clip(stationary(middles), edges[..., :-1], edges[..., 1:])
    return np.minimum(objective(breaks).min(axis=-1), objective(candidates).min(axis=-1))


# reduction (as the report's disparity metrics name them) -> its interval from per-group estimates
REDUCTION_INTERVALS = {
    "spread": spread_interval,
    "min": min_interval,
    "max": max_interval,
    "std": std_interval,
}


def worst_of(intervals: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the largest of several metrics, from their intervals holding together."""
    lows, highs = zip(*intervals)
    return np.maximum.reduce(lows), np.maximum.reduce(highs)


def equalized_odds_interval(
    true_positive: Rate, false_positive: Rate, *, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of ``max(spread of TPR, spread of FPR)``: both spreads at the Sidak level of
    two statements, so that both hold together."""
    level = sidak(confidence, 2)
    return worst_of([
        spread_interval(true_positive, confidence=level), spread_interval(false_positive, confidence=level)
    ])  # fmt: skip


# ------------------------------------------------------------------------------- helpers


def scores_rate(scores: np.ndarray, group_index: np.ndarray, num_groups: int, *, most: float = 1.0) -> Rate:
    """Per group, the mean of per-image ``scores`` in [0, 1] (their variance too, unless the
    scores are all 0 or 1), as a :class:`Rate`."""
    scores = np.asarray(scores, dtype=float)
    groups = np.asarray(group_index)
    n = np.array([(groups == g).sum() for g in range(num_groups)], dtype=float)
    means = np.array([scores[groups == g].mean() if n[g] else 0.0 for g in range(num_groups)])
    binary = bool(np.isin(scores, (0.0, 1.0)).all())
    variance = None if binary else np.array([scores[groups == g].var() if n[g] else 0.0 for g in range(num_groups)])
    return Rate(means, n, variance, most=most)


def paired_rates(
    baseline: np.ndarray, model: np.ndarray, group_index: np.ndarray, num_groups: int, *, most: float = 1.0
) -> PairedRates:
    """Per group, the baseline's and the model's mean scores on the same images and the
    correlation of their scores (0 where either is constant)."""
    baseline, model = np.asarray(baseline, dtype=float), np.asarray(model, dtype=float)
    groups = np.asarray(group_index)
    correlation = np.zeros(num_groups)
    for g in range(num_groups):
        rows = groups == g
        if rows.sum() > 1 and baseline[rows].std() > 0 and model[rows].std() > 0:
            correlation[g] = float(np.corrcoef(baseline[rows], model[rows])[0, 1])
    return PairedRates(
        scores_rate(baseline, groups, num_groups, most=most), scores_rate(model, groups, num_groups, most=most),
        correlation,
    )  # fmt: skip


def as_pair(low: np.ndarray | float, high: np.ndarray | float) -> list[float] | None:
    """An interval as the report's JSON holds it, ``[low, high]``; None if it is not finite."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return [low, high]

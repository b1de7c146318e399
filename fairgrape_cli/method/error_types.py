"""Error types of a binary prediction per group: true and false positive rates, selection rate,
balanced accuracy, and the equalized odds and demographic parity differences.

Definitions are fairlearn's (``fairlearn.metrics``, method ``between_groups``, the positive label
1): ``equalized_odds_difference`` is the larger of the spreads (largest minus smallest over the
groups) of the true positive rate and of the false positive rate;
``demographic_parity_difference`` is the spread of the selection rate (the share predicted
positive). A rate over no images (a group without positives has no true positive rate) counts as
0, as fairlearn's (scikit-learn's confusion matrix) does; :attr:`GroupErrors.undefined` names them
so a renderer can say so.

A binary target is a single-label model of two classes (the second, in the checkpoint's class
order, is the positive one) or each attribute of a multi-attribute head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .intervals import BalancedAccuracy, Rate, as_pair, equalized_odds_interval, sidak, spread_interval


@dataclass(frozen=True)
class GroupErrors:
    """One group's confusion counts and rates, with 95% intervals (None without)."""

    group: str
    true_positives: int
    false_negatives: int
    false_positives: int
    true_negatives: int
    intervals: dict[str, list[float] | None] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """The group's scored images."""
        return self.true_positives + self.false_negatives + self.false_positives + self.true_negatives

    @property
    def positives(self) -> int:
        """Images whose target is positive."""
        return self.true_positives + self.false_negatives

    @property
    def negatives(self) -> int:
        """Images whose target is negative."""
        return self.false_positives + self.true_negatives

    @property
    def true_positive_rate(self) -> float:
        """Positives predicted positive, of the positives (0 without positives)."""
        return self.true_positives / self.positives if self.positives else 0.0

    @property
    def false_positive_rate(self) -> float:
        """Negatives predicted positive, of the negatives (0 without negatives)."""
        return self.false_positives / self.negatives if self.negatives else 0.0

    @property
    def selection_rate(self) -> float:
        """Images predicted positive, of all."""
        return (self.true_positives + self.false_positives) / self.n if self.n else math.nan

    @property
    def balanced_accuracy(self) -> float:
        """The mean of the true positive and true negative rates."""
        return (self.true_positive_rate + 1 - self.false_positive_rate) / 2

    @property
    def undefined(self) -> list[str]:
        """The rates taken as 0 because the group has no images to take them over."""
        return [name for name, count in (("true_positive_rate", self.positives),
                                         ("false_positive_rate", self.negatives)) if not count]  # fmt: skip


RATES = ("true_positive_rate", "false_positive_rate", "selection_rate", "balanced_accuracy")


@dataclass(frozen=True)
class ErrorTypes:
    """Error types of one binary target over the groups, and the two differences."""

    groups: list[GroupErrors]
    equalized_odds_difference: float
    demographic_parity_difference: float
    equalized_odds_difference_ci: list[float] | None = None
    demographic_parity_difference_ci: list[float] | None = None

    def rate(self, name: str) -> np.ndarray:
        """One rate (``RATES``) of every group, in order."""
        return np.array([getattr(group, name) for group in self.groups])


def _spread(values: np.ndarray) -> float:
    return float(values.max() - values.min()) if len(values) else math.nan


def error_types(
    predicted: np.ndarray,
    target: np.ndarray,
    group_index: np.ndarray,
    group_names: list[str],
    *,
    scored: np.ndarray | None = None,
    confidence: float | None = 0.95,
) -> ErrorTypes:
    """Per group error types of 0/1 ``predicted`` against 0/1 ``target`` (rows where
    ``scored``), and the equalized odds and demographic parity differences, with intervals at
    ``confidence`` (None: none)."""
    predicted, target = np.asarray(predicted).astype(bool), np.asarray(target).astype(bool)
    groups = np.asarray(group_index)
    keep = np.ones(len(target), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    counts = np.zeros((len(group_names), 4), dtype=np.int64)
    for g in range(len(group_names)):
        rows = keep & (groups == g)
        p, t = predicted[rows], target[rows]
        counts[g] = [(p & t).sum(), (~p & t).sum(), (p & ~t).sum(), (~p & ~t).sum()]
    rates = _rates(counts)
    if confidence is not None:
        per_group = {name: rate.interval(confidence) for name, rate in rates.items()}
    rows = []
    for g, name in enumerate(group_names):
        intervals = {}
        if confidence is not None:
            intervals = {key: as_pair(low[g], high[g]) for key, (low, high) in per_group.items()}
        rows.append(GroupErrors(name, *map(int, counts[g]), intervals=intervals))
    result = ErrorTypes(
        rows,
        equalized_odds_difference=max(_spread(rates["true_positive_rate"].value), _spread(rates["false_positive_rate"].value)),
        demographic_parity_difference=_spread(rates["selection_rate"].value),
    )
    if confidence is None or not len(group_names):
        return result
    return ErrorTypes(
        rows, result.equalized_odds_difference, result.demographic_parity_difference,
        as_pair(*equalized_odds_interval(rates["true_positive_rate"], rates["false_positive_rate"], confidence=confidence)),
        as_pair(*spread_interval(rates["selection_rate"], confidence=confidence)),
    )  # fmt: skip


def _rates(counts: np.ndarray) -> dict:
    tp, fn, fp, tn = (counts[:, k].astype(float) for k in range(4))
    positives, negatives, n = tp + fn, fp + tn, counts.sum(1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        true_positive = Rate(np.where(positives > 0, tp / positives, 0.0), positives)
        false_positive = Rate(np.where(negatives > 0, fp / negatives, 0.0), negatives)
        selection = Rate(np.where(n > 0, (tp + fp) / n, 0.0), n)
    return {
        "true_positive_rate": true_positive,
        "false_positive_rate": false_positive,
        "selection_rate": selection,
        "balanced_accuracy": BalancedAccuracy(true_positive, false_positive),
    }


def worst_attribute(
    sections: list[ErrorTypes], *, confidence: float | None = 0.95
) -> tuple[float, float, list[float] | None, list[float] | None]:
    """A multi-attribute head's equalized odds and demographic parity differences: the largest
    of its attributes', with intervals for all attributes together (each attribute's at the Sidak
    level of their number, recomputed from its counts)."""
    if not sections:
        return math.nan, math.nan, None, None
    odds = max(section.equalized_odds_difference for section in sections)
    parity = max(section.demographic_parity_difference for section in sections)
    if confidence is None:
        return odds, parity, None, None
    level = sidak(confidence, len(sections))
    odds_ends, parity_ends = [], []
    for section in sections:
        counts = np.array([[g.true_positives, g.false_negatives, g.false_positives, g.true_negatives]
                           for g in section.groups])  # fmt: skip
        rates = _rates(counts)
        odds_ends.append(equalized_odds_interval(rates["true_positive_rate"], rates["false_positive_rate"], confidence=level))
        parity_ends.append(spread_interval(rates["selection_rate"], confidence=level))
    odds_ci = as_pair(max(low for low, _ in odds_ends), max(high for _, high in odds_ends))
    parity_ci = as_pair(max(low for low, _ in parity_ends), max(high for _, high in parity_ends))
    return odds, parity, odds_ci, parity_ci

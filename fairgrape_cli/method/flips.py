"""Flips: the predictions compression changed from right to wrong (lost) or wrong to right
(gained), per group, and the images themselves ("compression identified exemplars", Hooker et
al. 2019).

A group's accuracy moves by (gained - lost) / n, so it can stay put while many of its
predictions flip both ways; the flip rate (lost + gained) / n is that churn. For a
multi-attribute head a flip is one attribute of one image, and rates are over the group's images
times the attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .intervals import Rate, as_pair, max_interval, scores_rate
from .metrics import Outcomes


@dataclass(frozen=True)
class GroupFlips:
    """One group's flips; ``cells``: its images times the head's attributes (the rates'
    denominator)."""

    group: str
    cells: int
    lost: int
    gained: int
    flip_rate_ci: list[float] | None = None

    def rate(self, count: int) -> float:
        """``count`` over the group's cells (NaN for none)."""
        return count / self.cells if self.cells else float("nan")

    @property
    def lost_rate(self) -> float:
        """Lost flips over the group's cells."""
        return self.rate(self.lost)

    @property
    def gained_rate(self) -> float:
        """Gained flips over the group's cells."""
        return self.rate(self.gained)

    @property
    def flip_rate(self) -> float:
        """Flips either way over the group's cells."""
        return self.rate(self.lost + self.gained)


@dataclass(frozen=True)
class Flips:
    """Per group flips, and the largest flip rate of any group (with its interval)."""

    groups: list[GroupFlips]
    worst_group_flip_rate: float
    worst_group_flip_rate_ci: list[float] | None = None

    @property
    def lost(self) -> int:
        """Lost flips over all groups."""
        return sum(group.lost for group in self.groups)

    @property
    def gained(self) -> int:
        """Gained flips over all groups."""
        return sum(group.gained for group in self.groups)


def flip_masks(model: Outcomes, baseline: Outcomes) -> tuple[np.ndarray, np.ndarray]:
    """``(lost, gained)``, each bool ``[N, A]``: the baseline right and the model wrong, and the
    reverse, on scored rows."""
    scored = model.scored[:, None] & baseline.scored[:, None]
    return scored & baseline.right & ~model.right, scored & model.right & ~baseline.right


def count_flips(
    model: Outcomes,
    baseline: Outcomes,
    group_index: np.ndarray,
    group_names: list[str],
    *,
    confidence: float | None = 0.95,
) -> Flips:
    """Each group's lost and gained flips, their rates and the worst group's flip rate, with
    95% intervals (Wilson per group; the worst over the groups together) unless ``confidence``
    is None."""
    lost, gained = flip_masks(model, baseline)
    groups = np.asarray(group_index)
    scored = model.scored & baseline.scored
    attributes = model.right.shape[1]
    churn = (lost | gained).mean(axis=1)  # per image: the share of its attributes that flipped
    rates: Rate = scores_rate(churn[scored], groups[scored], len(group_names), most=float(attributes))
    intervals = rates.interval(confidence) if confidence is not None else None
    result = []
    for g, name in enumerate(group_names):
        rows = scored & (groups == g)
        ci = as_pair(intervals[0][g], intervals[1][g]) if intervals is not None and rows.any() else None
        result.append(GroupFlips(name, int(rows.sum()) * attributes, int(lost[rows].sum()), int(gained[rows].sum()), ci))
    worst = max((group.flip_rate for group in result), default=float("nan"))
    worst_ci = None
    if confidence is not None and all(group.cells for group in result):
        worst_ci = as_pair(*max_interval(rates, confidence=confidence))
    return Flips(result, worst, worst_ci)


@dataclass(frozen=True)
class Exemplar:
    """One flip: the row, the attribute (its column; 0 for a single label), lost or gained, and
    the baseline's confidence in its own prediction (the order of the list)."""

    row: int
    attribute: int
    kind: str  # "lost" or "gained"
    baseline_confidence: float


def exemplars(model: Outcomes, baseline: Outcomes, baseline_confidence: np.ndarray) -> list[Exemplar]:
    """Every flip, the baseline's most confident prediction first (ties: row, then attribute)."""
    lost, gained = flip_masks(model, baseline)
    found = []
    for kind, mask in (("lost", lost), ("gained", gained)):
        for row, attribute in zip(*np.nonzero(mask)):
            found.append(Exemplar(int(row), int(attribute), kind, float(baseline_confidence[row, attribute])))
    return sorted(found, key=lambda item: (-item.baseline_confidence, item.row, item.attribute))

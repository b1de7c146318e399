"""Per-group evaluation, disparity metrics, bootstrap intervals and ``--fail-if`` conditions.

Definitions are tables, not near-duplicate functions: ``DISPARITY`` maps each metric to how it is
computed from per-group accuracies and drops (the same function serves the point value and every
bootstrap resample); counts travel beside every per-group number.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError


@torch.no_grad()
def predict(
    models: Sequence[nn.Module],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    prepares: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    num_rows: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Predicted class of every row for each model, decoding every image once for all models.

    Rows that were never yielded (skipped bad images) predict ``-1``.
    """
    predictions = [torch.full((num_rows,), -1, dtype=torch.long) for _ in models]
    for model in models:
        model.eval()
    for images, indices in batches:
        for model, prepare, out in zip(models, prepares, predictions):
            out[indices] = model(prepare(images)).argmax(1).cpu()
        if on_batch is not None:
            on_batch(len(indices))
    return predictions


@dataclass(frozen=True)
class GroupAccuracy:
    group: str
    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan


def group_accuracies(
    predictions: torch.Tensor, targets: torch.Tensor, group_index: np.ndarray, group_names: list[str]
) -> list[GroupAccuracy]:
    scored = predictions >= 0
    hits = ((predictions == targets) & scored).numpy()
    groups = np.asarray(group_index)
    counted = scored.numpy()
    return [
        GroupAccuracy(name, int(counted[groups == g].sum()), int(hits[groups == g].sum()))
        for g, name in enumerate(group_names)
    ]


def _spread(values: np.ndarray) -> np.ndarray:
    return values.max(axis=-1) - values.min(axis=-1)


# name -> (needs a baseline, function of (per-group accuracies, per-group drops)); the arrays hold
# groups along the last axis, so one definition computes a point value ([G]) and every bootstrap
# resample at once ([B, G]).
DISPARITY: dict[str, tuple[bool, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "accuracy_gap": (False, lambda accuracies, drops: _spread(accuracies)),
    "worst_group_accuracy": (False, lambda accuracies, drops: accuracies.min(axis=-1)),
    "drop_std": (True, lambda accuracies, drops: drops.std(axis=-1)),  # population std, ddof 0
    "drop_gap": (True, lambda accuracies, drops: _spread(drops)),
}


# ----------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Bootstrap:
    """Percentile bootstrap intervals: images resampled with replacement within each group."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 0:
            raise InputError(f"--bootstrap {self.resamples}: must be 0 (no intervals) or more")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence {self.confidence}: must be in (0, 1)")


def paired_outcomes(
    predictions: torch.Tensor,
    baseline_predictions: torch.Tensor | None,
    targets: torch.Tensor,
    group_index: np.ndarray,
    num_groups: int,
) -> np.ndarray:
    """``[G, 4]`` counts of each group's scored images by outcome: both models right, only the
    model, only the baseline, neither (without a baseline it counts as never right)."""
    scored = (predictions >= 0).numpy()
    mine = (predictions == targets).numpy()
    theirs = (baseline_predictions == targets).numpy() if baseline_predictions is not None else np.zeros_like(mine)
    category = np.where(mine, np.where(theirs, 0, 1), np.where(theirs, 2, 3))
    cells = np.asarray(group_index)[scored] * 4 + category[scored]
    return np.bincount(cells, minlength=4 * num_groups).reshape(num_groups, 4)


def bootstrap_intervals(outcomes: np.ndarray, *, has_baseline: bool, settings: Bootstrap) -> dict | None:
    """Intervals for each group's accuracy (and baseline accuracy and drop), the overall accuracy
    and every disparity metric, from ``settings.resamples`` stratified resamples of ``outcomes``.

    A resample draws each group's n images with replacement from its own images, keeping each
    image's pair of outcomes (model, baseline), so drops are resampled paired; drawing the four
    outcome counts from a multinomial is the same draw, at a cost independent of n.
    """
    sizes = outcomes.sum(axis=1)
    if settings.resamples == 0 or (sizes == 0).any():
        return None
    generator = np.random.default_rng(settings.seed)
    draws = np.stack(
        [generator.multinomial(n, counts / n, size=settings.resamples) for n, counts in zip(sizes, outcomes)],
        axis=1,
    )  # [B, G, 4]
    accuracies = (draws[..., 0] + draws[..., 1]) / sizes
    baselines = (draws[..., 0] + draws[..., 2]) / sizes
    drops = baselines - accuracies
    tail = (1 - settings.confidence) / 2

    def interval(values: np.ndarray) -> list:
        low, high = np.quantile(values, [tail, 1 - tail], axis=0)
        return np.stack([low, high], axis=-1).tolist()

    result = {
        "accuracy": interval(accuracies),
        "overall_accuracy": interval((draws[..., 0] + draws[..., 1]).sum(axis=1) / sizes.sum()),
        "disparity": {
            name: interval(function(accuracies, drops))
            for name, (needs_baseline, function) in DISPARITY.items()
            if has_baseline or not needs_baseline
        },
    }
    if has_baseline:
        result["baseline_accuracy"] = interval(baselines)
        result["drop"] = interval(drops)
        overall_baseline = (draws[..., 0] + draws[..., 2]).sum(axis=1) / sizes.sum()
        result["overall_drop"] = interval(overall_baseline - (draws[..., 0] + draws[..., 1]).sum(axis=1) / sizes.sum())
    return result


def build_report(
    *,
    model: str,
    data: str,
    split: str | None,
    target: str,
    attribute: str,
    density: float,
    groups: list[GroupAccuracy],
    baseline_groups: list[GroupAccuracy] | None = None,
    intervals: dict | None = None,
) -> dict:
    """The report in the exact shape of DESIGN.md (baseline fields null without a baseline);
    ``intervals`` (from :func:`bootstrap_intervals`) add ``*_ci`` pairs beside the point values."""
    n = sum(group.n for group in groups)
    overall_accuracy = sum(group.correct for group in groups) / n if n else math.nan
    rows = []
    for position, group in enumerate(groups):
        baseline = baseline_groups[position].accuracy if baseline_groups else None
        rows.append({
            "group": group.group,
            "n": group.n,
            "accuracy": group.accuracy,
            "baseline_accuracy": baseline,
            "drop": baseline - group.accuracy if baseline is not None else None,
        })  # fmt: skip
    accuracies = np.array([row["accuracy"] for row in rows])
    drops = np.array([row["drop"] for row in rows]) if baseline_groups else None
    disparity = {
        name: (float(function(accuracies, drops)) if (drops is not None or not needs_baseline) else None)
        for name, (needs_baseline, function) in DISPARITY.items()
    }
    baseline_overall = None
    if baseline_groups:
        baseline_overall = sum(group.correct for group in baseline_groups) / n if n else math.nan
    overall = {"n": n, "accuracy": overall_accuracy, "baseline_accuracy": baseline_overall}
    if intervals is not None:
        overall["accuracy_ci"] = intervals["overall_accuracy"]
        overall["accuracy_drop_ci"] = intervals.get("overall_drop")
        for position, row in enumerate(rows):
            for key in ("accuracy", "baseline_accuracy", "drop"):
                row[f"{key}_ci"] = intervals[key][position] if key in intervals else None
        for name in DISPARITY:
            disparity[f"{name}_ci"] = intervals["disparity"].get(name)
    return {
        "model": model,
        "data": data,
        "split": split,
        "target": target,
        "attribute": attribute,
        "density": density,
        "overall": overall,
        "groups": rows,
        "disparity": disparity,
    }


# --------------------------------------------------------------------------------- CI conditions

# metric name -> where to find it in a report
CONDITION_METRICS: dict[str, Callable[[dict], float | None]] = {
    **{name: (lambda report, name=name: report["disparity"][name]) for name in DISPARITY},
    "accuracy": lambda report: report["overall"]["accuracy"],
    "baseline_accuracy": lambda report: report["overall"]["baseline_accuracy"],
    "accuracy_drop": lambda report: (
        None
        if report["overall"]["baseline_accuracy"] is None
        else report["overall"]["baseline_accuracy"] - report["overall"]["accuracy"]
    ),
    "density": lambda report: report["density"],
}
BASELINE_METRICS = {"drop_std", "drop_gap", "baseline_accuracy", "accuracy_drop"}
_COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    metric: str
    comparison: str
    threshold: float
    text: str

    def holds(self, report: dict) -> bool:
        value = CONDITION_METRICS[self.metric](report)
        return value is not None and _COMPARISONS[self.comparison](value, self.threshold)

    def value(self, report: dict) -> float | None:
        return CONDITION_METRICS[self.metric](report)


def parse_condition(text: str, *, has_baseline: bool) -> Condition:
    """``drop_gap>0.05`` -> Condition; refuse unknown metrics and baseline metrics without one."""
    match = _CONDITION.match(text)
    if match is None:
        raise InputError(
            f"--fail-if {text!r}: expected METRIC>VALUE (or <, >=, <=), e.g. drop_gap>0.05"
        )
    metric, comparison, threshold = match.groups()
    if metric not in CONDITION_METRICS:
        raise InputError(
            f"--fail-if {text!r}: unknown metric {metric!r}; choose from "
            f"{', '.join(CONDITION_METRICS)}"
        )
    if metric in BASELINE_METRICS and not has_baseline:
        raise InputError(f"--fail-if {text!r}: {metric} needs --baseline DENSE_MODEL")
    return Condition(metric, comparison, float(threshold), text.strip())

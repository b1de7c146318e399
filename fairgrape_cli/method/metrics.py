"""Per-group evaluation, disparity metrics, and ``--fail-if`` conditions.

Definitions are tables, not near-duplicate functions: ``DISPARITY`` maps each metric to how it is
computed from per-group accuracies and drops; counts travel beside every per-group number.
"""

from __future__ import annotations

import math
import operator
import re
import statistics
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


def _spread(values: list[float]) -> float:
    return max(values) - min(values)


# name -> (needs a baseline, function of (per-group accuracies, per-group drops))
DISPARITY: dict[str, tuple[bool, Callable[[list[float], list[float]], float]]] = {
    "accuracy_gap": (False, lambda accuracies, drops: _spread(accuracies)),
    "worst_group_accuracy": (False, lambda accuracies, drops: min(accuracies)),
    "drop_std": (True, lambda accuracies, drops: statistics.pstdev(drops)),
    "drop_gap": (True, lambda accuracies, drops: _spread(drops)),
}


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
) -> dict:
    """The report in the exact shape of DESIGN.md (baseline fields null without a baseline)."""
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
    accuracies = [row["accuracy"] for row in rows]
    drops = [row["drop"] for row in rows] if baseline_groups else []
    disparity = {
        name: (function(accuracies, drops) if (drops or not needs_baseline) else None)
        for name, (needs_baseline, function) in DISPARITY.items()
    }
    baseline_overall = None
    if baseline_groups:
        baseline_overall = sum(group.correct for group in baseline_groups) / n if n else math.nan
    return {
        "model": model,
        "data": data,
        "split": split,
        "target": target,
        "attribute": attribute,
        "density": density,
        "overall": {"n": n, "accuracy": overall_accuracy, "baseline_accuracy": baseline_overall},
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

"""Per-group evaluation, disparity metrics, bootstrap intervals and ``--fail-if`` conditions.

Definitions are tables, not near-duplicate functions: each disparity metric is one row of
``io.reports.DISPARITY_METRICS`` (the per-group number it summarises and how), computed here by
``REDUCTIONS`` (the same function serves the point value and every bootstrap resample); counts
travel beside every per-group number. The report built here is ``io.reports.Report``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..io.reports import DISPARITY_METRICS, METRICS, AttributeSection, Disparity, GroupRow, Overall, Report
from ..registry import Registry
from . import intervals as score
from .heads import head_for


@dataclass
class Outcomes:
    """Which rows a model got right: ``right`` is ``[N, A]`` (one column per attribute; A = 1 for
    a single label); ``scored`` is False for rows never evaluated (skipped bad images)."""

    right: np.ndarray  # bool [N, A]
    scored: np.ndarray  # bool [N]

    def image_scores(self) -> np.ndarray:
        """The fraction of each row's attributes predicted right (0 or 1 for a single label)."""
        return self.right.mean(axis=1)


@torch.no_grad()
def predict(
    models: Sequence[nn.Module],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    prepares: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    targets: torch.Tensor,
    on_batch: Callable[[int], None] | None = None,
) -> list[Outcomes]:
    """What each model got right on every row, decoding every image once for all models."""
    head = head_for(targets)
    width = targets.shape[1] if targets.ndim == 2 else 1
    right = [torch.zeros((len(targets), width), dtype=torch.bool) for _ in models]
    scored = torch.zeros(len(targets), dtype=torch.bool)
    for model in models:
        model.eval()
    for images, indices in batches:
        for model, prepare, out in zip(models, prepares, right):
            out[indices] = head.right(head.predict(model(prepare(images))).cpu(), targets[indices])
        scored[indices] = True
        if on_batch is not None:
            on_batch(len(indices))
    return [Outcomes(out.numpy(), scored.numpy()) for out in right]


@dataclass(frozen=True)
class GroupAccuracy:
    """One group's scored images and how many were right."""

    group: str
    n: int
    correct: float  # images right (for several attributes: the sum of each image's fraction right)

    @property
    def accuracy(self) -> float:
        """The fraction right (NaN for an empty group)."""
        return self.correct / self.n if self.n else math.nan


def group_accuracies(
    outcomes: Outcomes, group_index: np.ndarray, group_names: list[str], *, attribute: int | None = None
) -> list[GroupAccuracy]:
    """Accuracy per group: of the mean over attributes, or of one ``attribute`` (a column)."""
    scores = outcomes.image_scores() if attribute is None else outcomes.right[:, attribute].astype(float)
    groups = np.asarray(group_index)
    return [
        GroupAccuracy(
            name, int(outcomes.scored[groups == g].sum()), float(scores[outcomes.scored & (groups == g)].sum())
        )
        for g, name in enumerate(group_names)
    ]


def _spread(values: np.ndarray) -> np.ndarray:
    return values.max(axis=-1) - values.min(axis=-1)


# How a disparity metric (``io.reports.DISPARITY_METRICS``) reduces a per-group number over the
# groups. The arrays hold groups along the last axis, so one reduction computes a point value
# ([G]) and every bootstrap resample at once ([B, G]).
REDUCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "spread": _spread,
    "min": lambda values: values.min(axis=-1),
    "max": lambda values: values.max(axis=-1),
    "std": lambda values: values.std(axis=-1),  # population std, ddof 0
}


def no_better_than_guessing(accuracy: float, targets: np.ndarray, *, margin: float = 0.01) -> tuple[int, float] | None:
    """The most common class and its share of ``targets`` (class indices) when ``accuracy`` is
    below that share plus ``margin`` (at most half of the rest, so that a class of 99.5% of the
    rows leaves a good model room): a model no better than always answering that class, whose
    per-group numbers then say nothing about fairness. None when it is better, or no rows."""
    if len(targets) == 0:
        return None
    counts = np.bincount(np.asarray(targets, dtype=np.int64))
    common = int(counts.argmax())
    share = float(counts[common] / counts.sum())
    return (common, share) if accuracy < share + min(margin, (1 - share) / 2) else None


def disparity_values(per_group: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
    """Every disparity metric from the per-group numbers it summarises (``accuracy``, ``drop``,
    each ``[..., G]``); None for a metric whose number is missing (drops without a baseline)."""
    values = {}
    for name, spec in DISPARITY_METRICS.items():
        numbers = per_group.get(spec.of)
        values[name] = None if numbers is None else REDUCTIONS[spec.reduce](numbers)
    return values


# ----------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Bootstrap:
    """How the report's intervals are computed: ``method`` (``INTERVAL_METHODS``: ``score``, the
    default, or ``bootstrap``, the percentile bootstrap of fairgrape 0.2 with ``resamples``
    seeded by ``seed``); ``resamples=0``: no intervals, whatever the method."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    method: str = "score"

    def __post_init__(self) -> None:
        if self.resamples < 0:
            raise InputError(f"--bootstrap {self.resamples}: must be 0 (no intervals) or more")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence {self.confidence}: must be in (0, 1)")
        INTERVAL_METHODS.choose(self.method)  # InputError naming the choices

    @property
    def wanted(self) -> bool:
        """Whether the report gets intervals."""
        return self.resamples > 0

    def description(self) -> str:
        """The method in words, as the report records it."""
        return INTERVAL_METHODS[self.method].description


def paired_outcomes(
    outcomes: Outcomes, baseline: Outcomes | None, group_index: np.ndarray, num_groups: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group, the distinct ``(model, baseline)`` pairs of image scores ``[K, 2]`` and how many
    of the group's scored images have each ``[K]`` (without a baseline its score is 0). A single
    label has at most four pairs; A attributes at most ``(A + 1) ** 2``."""
    mine = outcomes.image_scores()
    theirs = baseline.image_scores() if baseline is not None else np.zeros_like(mine)
    pairs = np.stack([mine, theirs], axis=1)
    groups = np.asarray(group_index)
    result = []
    for g in range(num_groups):
        rows = outcomes.scored & (groups == g)
        values, counts = np.unique(pairs[rows], axis=0, return_counts=True)
        result.append((values.reshape(-1, 2), counts))
    return result


def bootstrap_intervals(
    outcomes: list[tuple[np.ndarray, np.ndarray]], *, has_baseline: bool, settings: Bootstrap
) -> dict | None:
    """Intervals for each group's accuracy (and baseline accuracy and drop), the overall accuracy
    (and drop) and every disparity metric, from ``settings.resamples`` stratified resamples.

    A resample draws each group's n images with replacement from its own images, keeping each
    image's pair of scores (model, baseline), so drops are resampled paired; drawing how many
    times each distinct pair is drawn from a multinomial is the same draw, at a cost that does
    not grow with n.
    """
    sizes = np.array([counts.sum() for _, counts in outcomes])
    if settings.resamples == 0 or (sizes == 0).any():
        return None
    generator = np.random.default_rng(settings.seed)
    sums = np.stack(
        [generator.multinomial(n, counts / n, size=settings.resamples) @ values for (values, counts), n in zip(outcomes, sizes)],
        axis=1,
    )  # [B, G, 2]: the resample's summed scores of the model and of the baseline, per group
    accuracies, baselines = sums[..., 0] / sizes, sums[..., 1] / sizes
    drops = baselines - accuracies
    overall = sums.sum(axis=1) / sizes.sum()  # [B, 2]
    tail = (1 - settings.confidence) / 2

    def interval(values: np.ndarray) -> list:
        low, high = np.quantile(values, [tail, 1 - tail], axis=0)
        return np.stack([low, high], axis=-1).tolist()

    result = {
        "accuracy": interval(accuracies),
        "overall_accuracy": interval(overall[:, 0]),
        "disparity": {
            name: interval(values)
            for name, values in disparity_values(
                {"accuracy": accuracies, "drop": drops if has_baseline else None}
            ).items()
            if values is not None
        },
    }
    if has_baseline:
        result["baseline_accuracy"] = interval(baselines)
        result["drop"] = interval(drops)
        result["overall_drop"] = interval(overall[:, 1] - overall[:, 0])
    return result


def score_intervals(
    outcomes: Outcomes, baseline: Outcomes | None, group_index: np.ndarray, num_groups: int, *, settings: Bootstrap
) -> dict | None:
    """The intervals :func:`bootstrap_intervals` gives, by ``method.intervals``: Wilson per group
    (at the effective sample size for several attributes), MOVER for drops (paired with the
    baseline), each disparity metric bounded over the per-group intervals at the Sidak level."""
    level, most = settings.confidence, float(outcomes.right.shape[1])
    groups = np.asarray(group_index)[outcomes.scored]
    mine = outcomes.image_scores()[outcomes.scored]
    if settings.resamples == 0 or any((groups == g).sum() == 0 for g in range(num_groups)):
        return None
    theirs = baseline.image_scores()[outcomes.scored] if baseline is not None else np.zeros_like(mine)
    paired = score.paired_rates(theirs, mine, groups, num_groups, most=most)
    overall = score.paired_rates(theirs, mine, np.zeros_like(groups), 1, most=most)

    def pairs(low, high) -> list:
        return np.stack([np.atleast_1d(low), np.atleast_1d(high)], axis=-1).tolist()

    estimates = {"accuracy": paired.second, "drop": paired if baseline is not None else None}
    result = {
        "accuracy": pairs(*paired.second.interval(level)),
        "overall_accuracy": pairs(*overall.second.interval(level))[0],
        "disparity": {
            name: score.as_pair(*score.REDUCTION_INTERVALS[spec.reduce](estimates[spec.of], confidence=level))
            for name, spec in DISPARITY_METRICS.items()
            if estimates.get(spec.of) is not None
        },
    }
    if baseline is not None:
        result["baseline_accuracy"] = pairs(*paired.first.interval(level))
        result["drop"] = pairs(*paired.interval(level))
        result["overall_drop"] = pairs(*overall.interval(level))[0]
    return result


@dataclass(frozen=True)
class IntervalMethod:
    """One way to compute the report's intervals (``--intervals NAME``) and its words."""

    compute: Callable[..., dict | None]
    description: str


def _bootstrap(outcomes, baseline, group_index, num_groups, *, settings):
    pairs = paired_outcomes(outcomes, baseline, group_index, num_groups)
    return bootstrap_intervals(pairs, has_baseline=baseline is not None, settings=settings)


INTERVAL_METHODS: Registry[IntervalMethod] = Registry("--intervals")
INTERVAL_METHODS.add("score", IntervalMethod(score_intervals, score.METHOD))
INTERVAL_METHODS.add(
    "bootstrap",
    IntervalMethod(_bootstrap, "percentile bootstrap; images resampled within each group, paired with the baseline"),
)


def report_intervals(
    outcomes: Outcomes, baseline: Outcomes | None, group_index: np.ndarray, num_groups: int, *, settings: Bootstrap
) -> dict | None:
    """The intervals of a report's accuracy section by the method ``settings`` names."""
    return INTERVAL_METHODS.choose(settings.method).compute(outcomes, baseline, group_index, num_groups, settings=settings)


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
) -> Report:
    """The report (docs/design.md, "Report"; baseline fields null without a baseline);
    ``intervals`` (from :func:`bootstrap_intervals`) add ``*_ci`` pairs beside the point values."""
    overall, rows, disparity = accuracy_section(groups, baseline_groups)
    if intervals is not None:
        overall = replace(
            overall, accuracy_ci=intervals["overall_accuracy"], accuracy_drop_ci=intervals.get("overall_drop"),
            absent=frozenset(),
        )  # fmt: skip
        rows = [
            replace(row, absent=frozenset(), **{
                f"{key}_ci": intervals[key][position] if key in intervals else None
                for key in ("accuracy", "baseline_accuracy", "drop")
            })
            for position, row in enumerate(rows)
        ]  # fmt: skip
        disparity = replace(disparity, intervals={name: intervals["disparity"].get(name) for name in DISPARITY_METRICS})
    return Report(
        model=model, data=data, split=split, target=target, attribute=attribute, density=density,
        overall=overall, groups=rows, disparity=disparity,
    )  # fmt: skip


_NO_INTERVALS = frozenset({"accuracy_ci", "accuracy_drop_ci", "baseline_accuracy_ci", "drop_ci"})


def accuracy_section(
    groups: list[GroupAccuracy], baseline_groups: list[GroupAccuracy] | None
) -> tuple[Overall, list[GroupRow], Disparity]:
    """``overall``, the group rows and ``disparity`` of a report (or of one of its attributes),
    without intervals."""
    n = sum(group.n for group in groups)
    overall_accuracy = sum(group.correct for group in groups) / n if n else math.nan
    rows = []
    for position, group in enumerate(groups):
        baseline = baseline_groups[position].accuracy if baseline_groups else None
        drop = baseline - group.accuracy if baseline is not None else None
        rows.append(GroupRow(group.group, group.n, group.accuracy, baseline, drop, absent=_NO_INTERVALS))
    accuracies = np.array([row.accuracy for row in rows])
    drops = np.array([row.drop for row in rows]) if baseline_groups else None
    disparity = Disparity({
        name: None if value is None else float(value)
        for name, value in disparity_values({"accuracy": accuracies, "drop": drops}).items()
    })  # fmt: skip
    baseline_overall = None
    if baseline_groups:
        baseline_overall = sum(group.correct for group in baseline_groups) / n if n else math.nan
    return Overall(n, overall_accuracy, baseline_overall, absent=_NO_INTERVALS), rows, disparity


def attribute_sections(
    outcomes: Outcomes,
    baseline: Outcomes | None,
    group_index: np.ndarray,
    group_names: list[str],
    attributes: list[str],
) -> list[AttributeSection]:
    """Per attribute of a multi-label model: its overall accuracy, per-group accuracies and drops,
    and the disparity metrics of that attribute alone."""
    sections = []
    for position, name in enumerate(attributes):
        groups = group_accuracies(outcomes, group_index, group_names, attribute=position)
        base = group_accuracies(baseline, group_index, group_names, attribute=position) if baseline else None
        overall, rows, disparity = accuracy_section(groups, base)
        sections.append(AttributeSection(name, overall, rows, disparity))
    return sections


# --------------------------------------------------------------------------------- CI conditions

# Every metric is a fraction (0.05 = 5 points) while the table shows percent and points, so a
# threshold may carry a unit: 5% and 5pp both mean 0.05. Differences read best in points.
_UNITS = {"": 1.0, "%": 0.01, "pp": 0.01}
_COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_CONDITION = re.compile(
    r"^\s*([a-z_]+)(?:\.(lo|hi))?\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%|pp)?\s*$", re.IGNORECASE
)


_ENDS = {"lo": 0, "hi": 1}  # drop_gap.hi: the upper end of drop_gap's 95% interval


@dataclass(frozen=True)
class Condition:
    """A parsed ``--fail-if`` condition: metric, the end of its interval gated on (``lo``,
    ``hi``; None: the point value), comparison, threshold (a fraction)."""

    metric: str
    comparison: str
    threshold: float
    text: str
    end: str | None = None

    def holds(self, report: Report) -> bool:
        """Whether the condition holds on ``report`` (never on a metric it lacks)."""
        value = self.measured(report)
        return value is not None and _COMPARISONS[self.comparison](value, self.threshold)

    def value(self, report: Report) -> float | None:
        """The metric's (point) value in ``report``."""
        return report.metric(self.metric)

    def interval(self, report: Report) -> list | None:
        """The metric's 95% interval in ``report`` (None without one)."""
        return METRICS[self.metric].interval(report)

    def measured(self, report: Report) -> float | None:
        """What the condition compares: the point value, or the end of the interval it names."""
        if self.end is None:
            return self.value(report)
        pair = self.interval(report)
        return None if pair is None else pair[_ENDS[self.end]]


@dataclass(frozen=True)
class ConditionCheck:
    """A condition checked on a report: held or not, the metric's value and its interval."""

    text: str
    held: bool
    value: float | None
    interval: list | None


def check_conditions(conditions: Sequence[Condition], report: Report) -> list[ConditionCheck]:
    """Each condition checked on ``report``; InputError for a condition on a metric (or an
    interval end) the report has no value of, so a gate never passes on a missing number."""
    checks = []
    for condition in conditions:
        if condition.measured(report) is None:
            spec = METRICS[condition.metric]
            what = "interval" if condition.end and condition.value(report) is not None else "value"
            need = f" (it needs {spec.requires})" if spec.requires and what == "value" else ""
            raise InputError(f"--fail-if {condition.text!r}: this report has no {what} of {condition.metric}{need}")
        pair = condition.interval(report)
        checks.append(ConditionCheck(condition.text, condition.holds(report), condition.value(report), pair))
    return checks


def parse_condition(text: str, *, has_baseline: bool, has_intervals: bool = True) -> Condition:
    """``drop_gap>0.05`` (or ``drop_gap>5pp``, ``drop_gap>5%``; ``drop_gap.hi>0.05`` on the upper
    end of its 95% interval) -> Condition; refuse unknown metrics, baseline metrics without one,
    interval ends of a metric without intervals, and thresholds no fraction can reach."""
    match = _CONDITION.match(text)
    if match is None:
        raise InputError(
            f"--fail-if {text!r}: expected METRIC>VALUE (or <, >=, <=; METRIC.lo or METRIC.hi for an "
            "end of its 95% interval), e.g. drop_gap>0.05, drop_gap>5pp or drop_gap.hi>0.05"
        )
    metric, end, comparison, number, unit = match.groups()
    end = end.lower() if end else None
    metric, unit = metric.lower(), (unit or "").lower()
    if metric not in METRICS:
        raise InputError(
            f"--fail-if {text!r}: unknown metric {metric!r}; choose from "
            f"{', '.join(METRICS)}"
        )
    if METRICS[metric].needs_baseline and not has_baseline:
        raise InputError(f"--fail-if {text!r}: {metric} needs --baseline DENSE_MODEL")
    if end and not METRICS[metric].has_interval:
        raise InputError(f"--fail-if {text!r}: {metric} has no interval; gate on {metric} itself")
    if end and not has_intervals:
        raise InputError(f"--fail-if {text!r}: gates on an interval's end, but --bootstrap 0 turns intervals off")
    threshold = float(number) * _UNITS[unit]
    if not -1.0 <= threshold <= 1.0:
        suffix = "pp" if METRICS[metric].unit == "points" else "%"
        hint = (
            f"write {metric}{comparison}{float(number) / 100:g} or {metric}{comparison}{number}{suffix}"
            if not unit and -100 <= float(number) <= 100
            else "a value between -1 and 1 (or -100% and 100%)"
        )
        raise InputError(
            f"--fail-if {text!r}: {metric} is a fraction (0.05 = 5 points, as the table shows it), "
            f"so {number}{unit} is out of range; {hint}"
        )
    return Condition(metric, comparison, threshold, text.strip(), end)

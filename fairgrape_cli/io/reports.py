"""The report: typed records of what ``fairgrape report --json`` and ``fairgrape run`` write,
the metrics a report exposes by name, and reading report files with checks.

The JSON keys and their order are those of docs/design.md ("Report"); :class:`Report` reads a
file and writes it back byte for byte (see ``io.records``). Renderers, ``compare``, the
``--fail-if`` gate and the pipeline read attributes, never literal keys.

To add to the report:

- a per-group number: a field of :class:`GroupRow` (``optional()`` keeps older files valid);
- a section: a record and a ``nested(..., when_none="omit")`` field of :class:`Report`;
- a disparity metric: one line in ``DISPARITY_METRICS`` (what it summarises, how, its unit and
  direction); ``method.metrics`` computes it (point value and bootstrap), and the table, HTML,
  ``compare`` and ``--fail-if`` show and accept it by its row here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .files import require_file
from .records import Record, nested, optional

Interval = list  # [low, high], as the JSON holds it


# ------------------------------------------------------------------------------------ records


@dataclass
class Overall(Record):
    """Every scored image: count, accuracy (and the baseline's), with 95% intervals."""

    n: int
    accuracy: float
    baseline_accuracy: float | None = None
    accuracy_ci: Interval | None = optional()
    accuracy_drop_ci: Interval | None = optional()

    @property
    def drop(self) -> float | None:
        """Baseline accuracy minus accuracy (None without a baseline)."""
        if self.baseline_accuracy is None or self.accuracy is None:
            return None
        return self.baseline_accuracy - self.accuracy


@dataclass
class GroupRow(Record):
    """One group: images, accuracy, the baseline's and the drop, with 95% intervals."""

    group: str
    n: int
    accuracy: float
    baseline_accuracy: float | None = None
    drop: float | None = None
    accuracy_ci: Interval | None = optional()
    baseline_accuracy_ci: Interval | None = optional()
    drop_ci: Interval | None = optional()
    # with a baseline: predictions right before and wrong now (lost), the reverse (gained); rates
    # over the group's images (times the attributes of a multi-attribute head)
    flips_lost: int | None = optional(omit_if_none=True)
    flips_gained: int | None = optional(omit_if_none=True)
    flips_lost_rate: float | None = optional(omit_if_none=True)
    flips_gained_rate: float | None = optional(omit_if_none=True)
    flip_rate: float | None = optional(omit_if_none=True)
    flip_rate_ci: Interval | None = optional(omit_if_none=True)


@dataclass
class ErrorRow(Record):
    """One group's error types on a binary target: confusion counts, rates, 95% intervals. A
    rate over no images (no positives: no true positive rate) is 0, as fairlearn counts it."""

    group: str
    n: int
    positives: int
    true_positives: int
    false_positives: int
    true_positive_rate: float
    false_positive_rate: float
    selection_rate: float
    balanced_accuracy: float
    true_positive_rate_ci: Interval | None = optional(omit_if_none=True)
    false_positive_rate_ci: Interval | None = optional(omit_if_none=True)
    selection_rate_ci: Interval | None = optional(omit_if_none=True)
    balanced_accuracy_ci: Interval | None = optional(omit_if_none=True)


@dataclass
class ErrorSection(Record):
    """Error types of a binary target (the positive class named) per group, and fairlearn's
    equalized odds and demographic parity differences; for a multi-attribute head, at the top
    the largest over its attributes (no rows) and each attribute's in ``attributes``."""

    positive: str | None
    equalized_odds_difference: float | None
    demographic_parity_difference: float | None
    equalized_odds_difference_ci: Interval | None = optional(omit_if_none=True)
    demographic_parity_difference_ci: Interval | None = optional(omit_if_none=True)
    groups: list[ErrorRow] | None = nested(ErrorRow, many=True, when_none="omit")


@dataclass
class Disparity(Record):
    """Each disparity metric's value (``DISPARITY_METRICS``, by name: ``disparity.drop_gap``)
    and, when the report has intervals, its 95% interval (``disparity.interval("drop_gap")``).

    In the JSON the values come first, then each interval as ``NAME_ci``."""

    values: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, Interval | None] | None = None

    def __getattr__(self, name: str) -> float | None:
        if name.startswith("_") or name in ("values", "intervals"):
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"the report has no disparity metric {name!r}") from None

    def interval(self, name: str) -> Interval | None:
        """The 95% interval of metric ``name`` (None without intervals)."""
        return (self.intervals or {}).get(name)

    def to_dict(self) -> dict[str, Any]:
        """The values, then each interval as ``NAME_ci``."""
        out = dict(self.values)
        out.update({f"{name}_ci": pair for name, pair in (self.intervals or {}).items()})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Disparity:
        """Values and intervals from a report's ``disparity`` object."""
        values = {key: value for key, value in data.items() if not key.endswith("_ci")}
        intervals = {key[: -len("_ci")]: value for key, value in data.items() if key.endswith("_ci")}
        return cls(values, intervals or None)


@dataclass
class AttributeSection(Record):
    """One attribute of a multi-label model: its own overall, group rows and disparity."""

    attribute: str
    overall: Overall = nested(Overall)
    groups: list[GroupRow] = nested(GroupRow, many=True)
    disparity: Disparity = nested(Disparity)
    error_types: ErrorSection | None = nested(ErrorSection, when_none="omit")


@dataclass
class BootstrapInfo(Record):
    """How bootstrap intervals were drawn (``--intervals bootstrap``, and every report before
    fairgrape 0.3)."""

    resamples: int
    confidence: float
    seed: int
    method: str


@dataclass
class IntervalInfo(Record):
    """How the report's intervals were computed: the method in words, and their confidence."""

    method: str
    confidence: float


@dataclass
class PruningSettings(Record):
    """The settings of the masks the judged model names (as the masks file records them)."""

    method: str | None = None
    rate: float | None = None
    scope: str | None = None
    density: float | None = None
    granularity: str | None = None


@dataclass
class ModelSize(Record):
    """Parameters and FLOPs of the model and of a fresh build of its architecture (None when
    its file names none); ``nonzero_params``: weight pruning keeps the dense shapes with zeros;
    ``image_size``: the image the FLOPs are of."""

    params: int | None = None
    flops: int | None = None
    dense_params: int | None = None
    dense_flops: int | None = None
    nonzero_params: int | None = None
    image_size: int | None = None


@dataclass
class QuantizationFacts(Record):
    """How a quantized file was made (``fairgrape quantize`` records it in the file): the weight
    and activation types, the calibration, the bound, the layers left in float and the per-group
    drops it reached against the float model."""

    weights: str | None = None
    activations: str | None = None
    calibration: dict[str, Any] | None = None
    max_group_drop: float | None = None
    float_layers: list[str] | None = None
    group_drops: dict[str, float] | None = None


@dataclass
class FileFacts(Record):
    """The judged file when it is an exported one (``onnx``, ``torchscript``, ``sparse``): its
    format, its size, and for a quantized file how it was quantized. Absent for checkpoints."""

    format: str
    bytes: int
    quantization: QuantizationFacts | None = nested(QuantizationFacts, when_none="null")


@dataclass
class HistoryEntry(Record):
    """One evaluation of a run: the dense model (iteration 0), each iteration's, the final one."""

    density: float | None
    accuracy: float | None
    groups: dict[str, float | None] = field(default_factory=dict)
    iteration: int | None = optional(omit_if_none=True)
    stage: str | None = optional(omit_if_none=True)  # "dense", "iteration" or "final"
    rate: float | None = optional(omit_if_none=True)


@dataclass
class RunInfo(Record):
    """The schedule a run's report came from."""

    config: str | None = None
    method: str | None = None
    rate: float | None = None
    keep_per_iter: float | None = None
    iterations: int | None = None
    schedule: list[float] | None = None
    seed: int | None = None


@dataclass
class Report(Record):
    """What ``fairgrape report`` measured: per-group accuracy, drops, disparity, and context.

    ``to_json()`` is the text of report.json; ``Report.from_json(text)`` reads it back.
    """

    model: str
    data: str
    split: str | None
    target: str
    attribute: str
    density: float
    overall: Overall = nested(Overall)
    groups: list[GroupRow] = nested(GroupRow, many=True)
    disparity: Disparity = nested(Disparity)
    attributes: list[AttributeSection] | None = nested(AttributeSection, many=True, when_none="omit")
    error_types: ErrorSection | None = nested(ErrorSection, when_none="omit")
    intervals: IntervalInfo | None = nested(IntervalInfo, when_none="omit")
    bootstrap: BootstrapInfo | None = nested(BootstrapInfo, when_none="omit")
    baseline: str | None = None
    pruning: PruningSettings | None = nested(PruningSettings, when_none="null")
    size: ModelSize = nested(ModelSize, flatten=True)
    file: FileFacts | None = nested(FileFacts, when_none="omit")
    history: list[HistoryEntry] | None = nested(HistoryEntry, many=True, when_none="omit")
    run: RunInfo | None = nested(RunInfo, when_none="omit")

    @property
    def has_baseline(self) -> bool:
        """Whether the report compares against a baseline model (drops are measured)."""
        return self.overall.baseline_accuracy is not None

    @property
    def has_intervals(self) -> bool:
        """Whether intervals were computed for this report."""
        return bool(self.groups) and self.groups[0].accuracy_ci is not None

    def metric(self, name: str) -> float | None:
        """The value of metric ``name`` (``METRICS``: a disparity metric, ``accuracy``, ...)."""
        return METRICS[name].read(self)

    def to_json(self) -> str:
        """The text of report.json."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "report") -> Report:
        """The report ``text`` (report.json) holds; InputError naming ``source`` if it is none."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{source} is not a fairgrape report: invalid JSON (line {error.lineno}: {error.msg})"
            ) from None
        return as_report(data, source=source)


def as_report(value: Report | Mapping[str, Any], *, source: str = "report") -> Report:
    """``value`` as a Report: a Report as it is, a parsed report.json checked and read."""
    if isinstance(value, Report):
        return value
    check_report(value, source=source)
    return Report.from_dict(value)


# ------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class DisparityMetric:
    """How one disparity metric summarises a per-group number over the groups.

    ``of``: the per-group number (``accuracy``, ``drop``); ``reduce``: how (``spread`` = max -
    min, ``min``, ``std`` = population standard deviation; ``method.metrics.REDUCTIONS``);
    ``unit``: ``accuracy`` (a fraction shown as percent) or ``points`` (a difference of
    accuracies, shown in percentage points); ``better``: ``higher`` or ``lower``.
    """

    name: str
    of: str
    reduce: str
    unit: str
    better: str
    needs_baseline: bool = False


DISPARITY_METRICS: dict[str, DisparityMetric] = {
    metric.name: metric
    for metric in (
        DisparityMetric("accuracy_gap", of="accuracy", reduce="spread", unit="points", better="lower"),
        DisparityMetric("worst_group_accuracy", of="accuracy", reduce="min", unit="accuracy", better="higher"),
        DisparityMetric("drop_std", of="drop", reduce="std", unit="points", better="lower", needs_baseline=True),
        DisparityMetric("drop_gap", of="drop", reduce="spread", unit="points", better="lower", needs_baseline=True),
        DisparityMetric(
            "worst_group_flip_rate", of="flip_rate", reduce="max", unit="accuracy", better="lower", needs_baseline=True
        ),
    )
}


def _no_interval(report: Report) -> None:
    return None


@dataclass(frozen=True)
class Metric:
    """A number of a report by name (``--fail-if``, ``compare``): how to read it and its 95%
    interval, its unit (``fraction``, ``accuracy``, ``points``), which way is better (None:
    context, never ranked), whether it needs a baseline, and what else it needs (``requires``:
    words for the message when a report has no value of it)."""

    name: str
    unit: str
    better: str | None
    needs_baseline: bool
    read: Callable[[Report], float | None]
    interval: Callable[[Report], Interval | None] = _no_interval
    requires: str = ""

    @property
    def has_interval(self) -> bool:
        """Whether the metric has a 95% interval (a gate may act on its ends)."""
        return self.interval is not _no_interval


def _error_metric(name: str) -> Metric:
    """A difference of error types (fairlearn's), read from the report's ``error_types``."""
    return Metric(
        name, "points", "lower", False,
        read=lambda report: getattr(report.error_types, name) if report.error_types else None,
        interval=lambda report: getattr(report.error_types, f"{name}_ci") if report.error_types else None,
        requires="a binary target (two classes) or a multi-attribute head",
    )  # fmt: skip


def _disparity_metric(spec: DisparityMetric) -> Metric:
    return Metric(
        spec.name, spec.unit, spec.better, spec.needs_baseline,
        read=lambda report: report.disparity.values.get(spec.name),
        interval=lambda report: report.disparity.interval(spec.name),
    )  # fmt: skip


METRICS: dict[str, Metric] = {
    **{name: _disparity_metric(spec) for name, spec in DISPARITY_METRICS.items()},
    "accuracy": Metric(
        "accuracy", "accuracy", "higher", False,
        read=lambda report: report.overall.accuracy, interval=lambda report: report.overall.accuracy_ci,
    ),  # fmt: skip
    "baseline_accuracy": Metric(
        "baseline_accuracy", "accuracy", "higher", True, read=lambda report: report.overall.baseline_accuracy
    ),
    "accuracy_drop": Metric(
        "accuracy_drop", "points", "lower", True,
        read=lambda report: report.overall.drop, interval=lambda report: report.overall.accuracy_drop_ci,
    ),  # fmt: skip
    "density": Metric("density", "fraction", None, False, read=lambda report: report.density),
    **{name: _error_metric(name) for name in ("equalized_odds_difference", "demographic_parity_difference")},
}


# ------------------------------------------------------------------------------------ files

_REQUIRED = {
    "": ("data", "target", "attribute", "density", "overall", "groups", "disparity"),
    "overall": ("n", "accuracy"),
    "disparity": ("accuracy_gap", "worst_group_accuracy"),
}
_REQUIRED_GROUP_KEYS = ("group", "n", "accuracy")


def load_report(path: str | Path) -> Report:
    """Read and check one report file; every problem is an InputError naming the file."""
    file = require_file(path, "report")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{file} is not a fairgrape report: not UTF-8 text") from None
    return Report.from_json(text, source=str(file))


def check_report(report: object, *, source: str) -> None:
    """Refuse anything that is not shaped like a fairgrape report (docs/design.md, "Report")."""
    if not isinstance(report, dict):
        raise InputError(f"{source} is not a fairgrape report: expected a JSON object")
    for section, keys in _REQUIRED.items():
        holder = report if not section else report.get(section)
        if not isinstance(holder, dict):
            raise InputError(f"{source} is not a fairgrape report: no '{section}' object")
        missing = [key for key in keys if key not in holder]
        if missing:
            where = f"'{section}' lacks" if section else "lacks"
            raise InputError(f"{source} is not a fairgrape report: {where} {', '.join(missing)}")
    groups = report["groups"]
    if not isinstance(groups, list) or not groups:
        raise InputError(f"{source} is not a fairgrape report: 'groups' is not a non-empty list")
    for row in groups:
        if not isinstance(row, dict) or any(key not in row for key in _REQUIRED_GROUP_KEYS):
            raise InputError(
                f"{source} is not a fairgrape report: each group needs {', '.join(_REQUIRED_GROUP_KEYS)}"
            )
    names = [str(row["group"]) for row in groups]
    if len(set(names)) != len(names):
        raise InputError(f"{source} is not a fairgrape report: a group is listed twice")

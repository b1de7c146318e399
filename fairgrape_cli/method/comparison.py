"""Side-by-side comparison of reports: methods, their per-group accuracy and disparity.

Pure data in, data out: :func:`compare_reports` takes reports (``io.reports.Report``, or the
parsed JSON that ``fairgrape report --json`` or ``fairgrape run`` writes) and returns one entry
per report plus, per column, which entries are best. Column directions and units are the
metrics' own (``io.reports.METRICS``) and ``GROUP_COLUMNS``; reading files is ``io.reports``,
rendering ``render.comparison``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io.reports import DISPARITY_METRICS, METRICS, GroupRow, Metric, Report, as_report


@dataclass(frozen=True)
class Column:
    """A compared per-group number: how to read it from a group row, which way is better, how
    to show it, and its 95% interval when the report has one."""

    better: str | None  # "higher", "lower", or None when the column is context, not a score
    unit: str  # "fraction" (density), "accuracy" (percent), "points" (difference of accuracies)
    read: Callable[[GroupRow], float | None]
    interval: Callable[[GroupRow], object] = lambda row: None


# Whole-report columns, in display order: density (context: methods are compared at a density,
# not ranked by it), overall accuracy and drop, then the disparity metrics, worst-group accuracy
# first; a metric added to io.reports.DISPARITY_METRICS appears after them. Directions, units and
# how each is read are the metric's own (io.reports.METRICS).
_LEADING = ("density", "accuracy", "accuracy_drop", "worst_group_accuracy")
COLUMNS: dict[str, Metric] = {
    name: METRICS[name] for name in (*_LEADING, *(name for name in DISPARITY_METRICS if name not in _LEADING))
}

# Per-group columns: the group row's number -> direction and unit.
GROUP_COLUMNS: dict[str, Column] = {
    "accuracy": Column("higher", "accuracy", lambda row: row.accuracy, lambda row: row.accuracy_ci),
    "drop": Column("lower", "points", lambda row: row.drop, lambda row: row.drop_ci),
}

# Reports compare only when they measure the same thing on the same rows.
_SAME_EVALUATION = ("target", "attribute", "split")

# Two numbers this close are a tie (both are marked): equal counts can give floats that differ
# in the last bits once subtracted or averaged.
_TIE_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------- comparing


def compare_reports(
    reports: Sequence[Report | Mapping],
    *,
    labels: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> dict:
    """Reports side by side: one entry per report and, per column, the labels of the best entries.

    ``labels`` name the entries; without them an entry is named by its pruning method and rate
    (from the masks or the run config), else by its file's stem (``sources``: the file each
    report came from, also used in error messages). Reports sharing a name get what tells them
    apart (their run configs' names, else their folders, else their files: ``_told_apart``);
    names still repeated get ``(2)``, ``(3)``, ...
    Reports that do not measure the same groups on the same data are refused; each must be shaped
    as ``io.reports.load_report`` checks.
    """
    if not reports:
        raise InputError("nothing to compare: give at least one report")
    sources = list(sources) if sources is not None else [f"report {i + 1}" for i in range(len(reports))]
    if len(sources) != len(reports):
        raise ValueError("one source per report")
    if labels is not None and len(labels) != len(reports):
        raise InputError(f"got {len(labels)} --label(s) for {len(reports)} report(s); give one per report")
    reports = [as_report(report, source=source) for report, source in zip(reports, sources)]
    _check_comparable(reports, sources)

    if labels is None:
        names = _told_apart([_default_label(r, s) for r, s in zip(reports, sources)], reports, sources)
    else:
        names = list(labels)
    names = _unique(names)
    group_order = [str(row.group) for row in reports[0].groups]
    entries = [
        _entry(report, label=name, source=source, group_order=group_order)
        for report, name, source in zip(reports, names, sources)
    ]
    first = reports[0]
    return {
        "data": first.data,
        "split": first.split,
        "target": first.target,
        "attribute": first.attribute,
        "groups": group_order,
        "columns": {name: {"better": column.better, "unit": column.unit} for name, column in COLUMNS.items()},
        "group_columns": {
            name: {"better": column.better, "unit": column.unit} for name, column in GROUP_COLUMNS.items()
        },
        "entries": entries,
        "best": _best(entries, group_order),
    }


def _entry(report: Report, *, label: str, source: str, group_order: list[str]) -> dict:
    rows = {str(row.group): row for row in report.groups}
    entry = {"label": label, "source": source, "model": report.model}
    entry.update({name: _number(column.read(report)) for name, column in COLUMNS.items()})
    entry["intervals"] = {name: _pair(column.interval(report)) for name, column in COLUMNS.items()}
    entry["groups"] = [
        {"group": group, "n": rows[group].n}
        | {name: _number(column.read(rows[group])) for name, column in GROUP_COLUMNS.items()}
        | {"intervals": {name: _pair(column.interval(rows[group])) for name, column in GROUP_COLUMNS.items()}}
        for group in group_order
    ]
    entry["has_history"] = bool(report.history)
    # how its intervals were made: the note under the table names it (score, the default, or bootstrap)
    entry["interval_method"] = "bootstrap" if report.bootstrap is not None else "score" if report.intervals is not None else None
    return entry


def _pair(value: object) -> list[float] | None:
    """An interval as ``[low, high]``, or None when the report has none (or not two numbers)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = (_number(bound) for bound in value)
    return None if low is None or high is None else [low, high]


def _number(value: object) -> float | None:
    """A metric as a float, or None when it is missing or not a number (NaN: an empty group)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _best(entries: list[dict], group_order: list[str]) -> dict:
    """Per column, the labels of the best entries (all of them on a tie; never a null value)."""
    best: dict = {
        name: _best_labels([(e["label"], e[name]) for e in entries], column.better)
        for name, column in COLUMNS.items()
        if column.better is not None
    }
    best["groups"] = {
        group: {
            name: _best_labels([(e["label"], e["groups"][position][name]) for e in entries], column.better)
            for name, column in GROUP_COLUMNS.items()
        }
        for position, group in enumerate(group_order)
    }
    return best


def _best_labels(values: list[tuple[str, float | None]], better: str) -> list[str]:
    present = [(label, value) for label, value in values if value is not None]
    if not present:
        return []
    choose = max if better == "higher" else min
    target = choose(value for _, value in present)
    return [label for label, value in present if abs(value - target) <= _TIE_TOLERANCE]


def _check_comparable(reports: Sequence[Report], sources: Sequence[str]) -> None:
    first, first_source = reports[0], sources[0]
    expected_groups = {str(row.group): row.n for row in first.groups}
    for report, source in zip(reports[1:], sources[1:]):
        differs = f"{source} does not compare with {first_source}"
        if _dataset_name(report.data) != _dataset_name(first.data):
            raise InputError(f"{differs}: data {report.data} vs {first.data}")
        for key in _SAME_EVALUATION:
            if getattr(report, key) != getattr(first, key):
                raise InputError(f"{differs}: {key} {getattr(report, key)!r} vs {getattr(first, key)!r}")
        groups = {str(row.group): row.n for row in report.groups}
        if set(groups) != set(expected_groups):
            extra = sorted(set(groups) - set(expected_groups))
            absent = sorted(set(expected_groups) - set(groups))
            detail = "; ".join(
                part
                for part in (
                    f"extra group(s) {', '.join(extra)}" if extra else "",
                    f"missing group(s) {', '.join(absent)}" if absent else "",
                )
                if part
            )
            raise InputError(f"{differs}: different groups ({detail})")
        for group, n in groups.items():
            if n != expected_groups[group]:
                # same data and split but other rows (skipped images, another labels file)
                raise InputError(f"{differs}: group {group} has {n} images vs {expected_groups[group]}")


def _dataset_name(data: str) -> str:
    """The data folder's name: reports written from different working directories record the
    same folder as ``data``, ``./data/`` or an absolute path, which must still compare."""
    return Path(str(data).rstrip("/\\")).name


def _default_label(report: Report, source: str) -> str:
    """The pruning method and rate (else the file's stem), then the judged file's format when it
    is an exported one (``magnitude 0.9 onnx int8``)."""
    label = _pruning_label(report) or Path(source).stem
    if report.file is not None:
        label += f" {report.file.format}"
        if report.file.quantization is not None:
            label += f" {report.file.quantization.weights or 'int8'}"
    return label


def _pruning_label(report: Report) -> str | None:
    """The pruning method, rate, and scope or granularity when not the default ones."""
    for settings in (report.pruning, report.run):
        if settings is not None and settings.method:
            label = str(settings.method)
            if settings.rate is not None:
                label += f" {_short_number(settings.rate)}"
            if getattr(settings, "scope", None) not in (None, "layer"):  # layer is the default scope
                label += f" {settings.scope}"
            if getattr(settings, "granularity", None) == "channel":  # weight is the default granularity
                label += " channel"
            return label
    return None


def _short_number(value: object) -> str:
    """0.9 for 0.9 or "0.9" (masks metadata stores strings)."""
    try:
        return f"{float(value):g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


# what tells reports with the same default label apart, in order: the run config each came from
# (a recipe and its baseline: runs/*/report.json of erm.yaml and recommended.yaml), the folder the
# report is in, its file's name
_ORIGINS = (
    lambda report, source: Path(report.run.config).stem if report.run is not None and report.run.config else "",
    lambda report, source: Path(source).parent.name,
    lambda report, source: Path(source).stem,
)


def _told_apart(labels: Sequence[str], reports: Sequence[Report], sources: Sequence[str]) -> list[str]:
    """Default labels, each repeated one followed by the first origin (``_ORIGINS``) that differs
    between all the reports sharing it: ``magnitude 0.9 (erm)``, ``magnitude 0.9 (recommended)``.
    Labels no origin tells apart stay as they are (``_unique`` numbers them)."""
    result = list(labels)
    for label in set(labels):
        shared = [i for i, other in enumerate(labels) if other == label]
        if len(shared) < 2:
            continue
        for origin in _ORIGINS:
            tags = [origin(reports[i], sources[i]) for i in shared]
            if all(tags) and len(set(tags)) == len(tags):
                for i, tag in zip(shared, tags):
                    result[i] = f"{label} ({tag})"
                break
    return result


def _unique(labels: Sequence[str]) -> list[str]:
    """Make repeated labels unique: the first keeps its name, later ones get (2), (3), ..."""
    taken: set[str] = set()
    result = []
    for label in labels:
        candidate, copy = label, 1
        while candidate in taken:
            copy += 1
            candidate = f"{label} ({copy})"
        taken.add(candidate)
        result.append(candidate)
    return result



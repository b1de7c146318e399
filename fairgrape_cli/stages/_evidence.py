"""What the report adds beside accuracy: flips against the baseline, error types of a binary
target, the exemplar rows and the thumbnails of broken images (issue 26).

The method computes (``method.flips``, ``method.error_types``); here its results become the
report's records (``io.reports``) and the rows and pictures the files show.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..io.data import GroupedTable
from ..io.images import thumbnail_data_uri
from ..io.reports import ErrorRow, ErrorSection, Report
from ..method import error_types as errors
from ..method.flips import Flips, count_flips, exemplars
from ..method.predictions import Predictions

THUMBNAILS_PER_GROUP = 12  # the HTML page shows at most this many broken images of a group


def add_flips(report: Report, model: Predictions, baseline: Predictions, table: GroupedTable, *, confidence) -> Flips:
    """Count each group's flips into ``report`` (its rows and ``worst_group_flip_rate``)."""
    flips = count_flips(model, baseline, table.group_index, table.group_names, confidence=confidence)
    report.groups = [
        replace(
            row, flips_lost=found.lost, flips_gained=found.gained, flips_lost_rate=found.lost_rate,
            flips_gained_rate=found.gained_rate, flip_rate=found.flip_rate, flip_rate_ci=found.flip_rate_ci,
        )
        for row, found in zip(report.groups, flips.groups)
    ]  # fmt: skip
    report.disparity.values["worst_group_flip_rate"] = flips.worst_group_flip_rate
    if report.disparity.intervals is not None:
        report.disparity.intervals["worst_group_flip_rate"] = flips.worst_group_flip_rate_ci
    return flips


def error_section(found: errors.ErrorTypes, positive: str | None) -> ErrorSection:
    """The report's record of one binary target's error types."""
    rows = []
    for group in found.groups:
        cis = {f"{name}_ci": group.intervals.get(name) for name in errors.RATES}
        rows.append(ErrorRow(
            group.group, group.n, group.positives, group.true_positives, group.false_positives,
            *(getattr(group, name) for name in errors.RATES), **cis,
        ))  # fmt: skip
    return ErrorSection(
        positive, found.equalized_odds_difference, found.demographic_parity_difference,
        found.equalized_odds_difference_ci, found.demographic_parity_difference_ci, rows,
    )  # fmt: skip


def add_error_types(
    report: Report, model: Predictions, targets: np.ndarray, table: GroupedTable, classes: list[str], *, confidence
) -> None:
    """Error types of a binary target (two classes, the second positive) or of each attribute of
    a multi-attribute head (and the largest differences over them); nothing for other targets."""
    targets = np.asarray(targets)
    common = dict(scored=model.scored, confidence=confidence)
    if not table.multi_label:
        if len(classes) == 2:
            found = errors.error_types(model.predicted[:, 0] == 1, targets == 1, table.group_index, table.group_names, **common)
            report.error_types = error_section(found, classes[1])
        return
    sections = [
        errors.error_types(model.predicted[:, a], targets[:, a], table.group_index, table.group_names, **common)
        for a in range(len(classes))
    ]
    for section, found in zip(report.attributes or [], sections):
        section.error_types = error_section(found, "1")
    odds, parity, odds_ci, parity_ci = errors.worst_attribute(sections, confidence=confidence)
    report.error_types = ErrorSection(None, odds, parity, odds_ci, parity_ci, None)


def _name(value: int, table: GroupedTable, classes: list[str]) -> str:
    """A prediction or label as the files show it: the class name, or 0/1 for an attribute."""
    return str(value) if table.multi_label else classes[value]


def _path(table: GroupedTable, row: int) -> str:
    path = table.files[row]
    try:
        return path.relative_to(table.root).as_posix()
    except ValueError:
        return str(path)


def exemplar_rows(
    model: Predictions, baseline: Predictions, targets: np.ndarray, table: GroupedTable, classes: list[str]
) -> list[dict]:
    """One row per flip (``render.exemplars.COLUMNS``), the baseline's most confident first."""
    targets = np.asarray(targets).reshape(len(table), -1)
    rows = []
    for item in exemplars(model, baseline, baseline.confidence):
        r, a = item.row, item.attribute
        rows.append({
            "path": _path(table, r), "group": table.group_names[table.group_index[r]],
            "attribute": classes[a] if table.multi_label else None,
            "label": _name(int(targets[r, a]), table, classes), "flip": item.kind,
            "baseline_prediction": _name(int(baseline.predicted[r, a]), table, classes),
            "baseline_confidence": float(baseline.confidence[r, a]),
            "model_prediction": _name(int(model.predicted[r, a]), table, classes),
            "model_confidence": float(model.confidence[r, a]),
        })  # fmt: skip
    return rows


def broken_thumbnails(
    model: Predictions, baseline: Predictions, table: GroupedTable, *, cap: int = THUMBNAILS_PER_GROUP
) -> dict[str, list[tuple[str, str]]]:
    """Per group, up to ``cap`` images compression broke (lost), the baseline's most confident
    first, as ``(data URI, caption)``; an image that cannot be read is left out."""
    shown: dict[str, list[tuple[str, str]]] = {name: [] for name in table.group_names}
    seen: set[int] = set()
    for item in exemplars(model, baseline, baseline.confidence):
        group = table.group_names[table.group_index[item.row]]
        if item.kind != "lost" or item.row in seen or len(shown[group]) >= cap:
            continue
        seen.add(item.row)
        uri = thumbnail_data_uri(table.files[item.row])
        if uri is not None:
            caption = f"{_path(table, item.row)} (baseline {item.baseline_confidence:.2f})"
            shown[group].append((uri, caption))
    return {group: images for group, images in shown.items() if images}


"""The fairness section of a Hugging Face style model card (``report --model-card FILE.md``):
the card's YAML header (tags and a ``model-index`` with the headline metrics) and Markdown
sections: what was compressed and how, density and FLOPs, the per-group table with counts and
95% intervals, the flips, error types for a binary target, the settings and the provenance.

So the evidence travels with the model: paste it into the model's README.md on the Hub (or keep
it beside the checkpoint); every table is GitHub-flavoured Markdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..io.reports import DISPARITY_METRICS, FileFacts, Report
from ._formats import file_size, interval, percent, points, split_label
from .markdown import front_matter, table


def _version() -> str:
    """fairgrape's installed version (the card says which version measured)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fairgrape")
    except PackageNotFoundError:  # a source tree never installed
        return "(not installed)"


@dataclass(frozen=True)
class CardFile:
    """A file the card names: its role, its path relative to the card, its sha256."""

    role: str
    path: str
    sha256: str | None


def _value(value: float | None, unit: str) -> str:
    return percent(value) if unit == "accuracy" else points(value) if unit == "points" else _plain(value)


def _plain(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _with_interval(value: float | None, pair, unit: str) -> str:
    text = _value(value, unit)
    shown = interval(pair, unit)
    return f"{text} {shown}" if shown else text


def model_card(report: Report, *, files: Sequence[CardFile] = (), name: str | None = None) -> str:
    """The card's text: YAML header, then the fairness section (Markdown)."""
    name = name or str(report.model)
    return front_matter(_metadata(report, name)) + "\n" + _body(report, name, files)


def _metadata(report: Report, name: str) -> dict:
    metrics = [{"type": "accuracy", "name": "accuracy", "value": _round(report.overall.accuracy)}]
    for metric, spec in DISPARITY_METRICS.items():
        value = report.disparity.values.get(metric)
        if value is not None:
            metrics.append({"type": metric, "name": f"{metric.replace('_', ' ')} ({report.attribute})", "value": _round(value)})
    dataset = {"name": str(report.data), "type": "imagefolder"}
    if report.split:
        dataset["split"] = report.split
    return {
        "tags": ["fairgrape", "pruning", "fairness", "image-classification"] + _file_tags(report.file),
        "pipeline_tag": "image-classification",
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "image-classification", "name": "Image classification"},
                "dataset": dataset,
                "metrics": metrics,
            }],
        }],
    }  # fmt: skip


def _file_tags(facts: FileFacts | None) -> list[str]:
    if facts is None:
        return []
    return [facts.format] + (["quantization", "int8"] if facts.quantization is not None else [])


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _body(report: Report, name: str, files: Sequence[CardFile]) -> str:
    parts = [f"# Fairness of {name}\n"]
    parts.append(
        f"Evaluated by fairgrape {_version()} on {report.data} {split_label(report.split)}: target "
        f"`{report.target}`, groups by `{report.attribute}`"
        + (f", against the baseline `{report.baseline}`" if report.baseline else "") + ".\n"
    )
    parts += ["## Compression\n", _compression(report)]
    parts += [f"## Accuracy per {report.attribute}\n", _groups(report)]
    parts += ["## Disparity\n", _disparity(report)]
    if report.has_baseline and report.groups and report.groups[0].flips_lost is not None:
        parts += ["## Flips\n", _flips(report)]
    if report.error_types is not None:
        parts += ["## Error types\n", _error_types(report.error_types, report.attribute)]
    parts += ["## Settings and provenance\n", _provenance(report, files)]
    return "\n".join(parts)


def _compression(report: Report) -> str:
    rows = []
    pruning = report.pruning
    if pruning is not None:
        for key in ("method", "rate", "scope", "granularity"):
            value = getattr(pruning, key)
            if value is not None:
                rows.append([key, value])
    rows.append(["density (kept fraction of prunable weights)", f"{report.density:.4f}"])
    size = report.size
    if size.params is not None:
        text = f"{size.params:,}"
        if size.dense_params:
            text += f" of {size.dense_params:,} dense ({100 * size.params / size.dense_params:.1f}%)"
        if size.nonzero_params is not None and size.nonzero_params < size.params:
            text += f"; {size.nonzero_params:,} nonzero"
        rows.append(["parameters", text])
    if size.flops is not None:
        text = f"{size.flops:,}"
        if size.dense_flops:
            text += f" of {size.dense_flops:,} dense ({100 * size.flops / size.dense_flops:.1f}%)"
        if size.image_size:
            text += f" per {size.image_size} px image"
        rows.append(["FLOPs", text])
    if pruning is None:
        rows.append(["masks", "none recorded (a dense model, or its masks file is gone)"])
    rows += _file_rows(report.file)
    return table(["what", "value"], rows)


def _file_rows(facts: FileFacts | None) -> list[list[str]]:
    """The exported file judged (format, size) and, for a quantized one, how it was quantized."""
    if facts is None:
        return []
    rows = [["file format", facts.format], ["file size", file_size(facts.bytes)]]
    quantization = facts.quantization
    if quantization is None:
        return rows
    types = f"{quantization.weights or 'int8'} weights, {quantization.activations or 'int8'} activations"
    rows.append(["quantization", types])
    calibration = quantization.calibration or {}
    if calibration.get("method"):
        rows.append(["calibration", ", ".join(f"{key} {value}" for key, value in calibration.items())])
    if quantization.max_group_drop is not None:
        rows.append(["max group drop (bound)", points(quantization.max_group_drop).lstrip("+")])
    floats = quantization.float_layers or []
    rows.append(["layers left in float", ", ".join(floats) if floats else "none"])
    for group, drop in (quantization.group_drops or {}).items():
        rows.append([f"drop of {group} against the float model", points(drop)])
    return rows


def _groups(report: Report) -> str:
    headers = [report.attribute or "group", "n", "accuracy (95% CI)"]
    right = [False, True, True]
    flips = report.has_baseline and report.groups and report.groups[0].flips_lost is not None
    if report.has_baseline:
        headers += ["baseline", "drop (95% CI)"]
        right += [True, True]
    if flips:
        headers += ["lost", "gained", "flip rate (95% CI)"]
        right += [True, True, True]
    rows = []
    for row in report.groups:
        cells = [row.group, row.n, _with_interval(row.accuracy, row.accuracy_ci, "accuracy")]
        if report.has_baseline:
            cells += [percent(row.baseline_accuracy), _with_interval(row.drop, row.drop_ci, "points")]
        if flips:
            cells += [row.flips_lost, row.flips_gained, _with_interval(row.flip_rate, row.flip_rate_ci, "accuracy")]
        rows.append(cells)
    overall = report.overall
    cells = ["**overall**", overall.n, _with_interval(overall.accuracy, overall.accuracy_ci, "accuracy")]
    if report.has_baseline:
        cells += [percent(overall.baseline_accuracy), _with_interval(overall.drop, overall.accuracy_drop_ci, "points")]
    if flips:
        lost = sum(row.flips_lost or 0 for row in report.groups)
        gained = sum(row.flips_gained or 0 for row in report.groups)
        cells += [lost, gained, ""]
    rows.append(cells)
    return table(headers, rows, right=right)


def _disparity(report: Report) -> str:
    rows = []
    for metric, spec in DISPARITY_METRICS.items():
        value = report.disparity.values.get(metric)
        if value is None:
            continue
        pair = report.disparity.interval(metric)
        rows.append([f"`{metric}`", _value(value, spec.unit), interval(pair, spec.unit) or "-"])
    text = table(["metric", "value", "95% CI"], rows, right=[False, True, True])
    if report.intervals is not None:
        text += f"\nIntervals: {report.intervals.method}.\n"
    return text


def _flips(report: Report) -> str:
    lost = sum(row.flips_lost or 0 for row in report.groups)
    gained = sum(row.flips_gained or 0 for row in report.groups)
    worst = report.disparity.values.get("worst_group_flip_rate")
    return (
        f"Compression changed {lost + gained} predictions: {lost} the baseline got right are now wrong "
        f"(lost), {gained} the baseline got wrong are now right (gained); per {report.attribute} in the "
        f"table above. The largest share of a group's predictions that flipped: {percent(worst)}. A "
        "group's accuracy moves by gained minus lost, so it can hold while many of its predictions flip.\n"
    )


def _error_types(section, attribute: str) -> str:
    """Per group TPR, FPR, selection rate and balanced accuracy (a binary target), then the two
    differences (for a multi-attribute head: the largest over its attributes)."""
    text = ""
    if section.groups:
        headers = [attribute or "group", "n", "positives", "TPR (95% CI)", "FPR (95% CI)", "selection rate (95% CI)",
                   "balanced accuracy (95% CI)"]  # fmt: skip
        rows = [
            [row.group, row.n, row.positives] + [
                _with_interval(getattr(row, key), getattr(row, f"{key}_ci"), "accuracy")
                for key in ("true_positive_rate", "false_positive_rate", "selection_rate", "balanced_accuracy")
            ]
            for row in section.groups
        ]
        text = f"Positive class: `{section.positive}`.\n\n" + table(headers, rows, right=[False] + [True] * 6) + "\n"
    else:
        text = "The largest over the head's attributes (each attribute's in the JSON report).\n\n"
    odds = _with_interval(section.equalized_odds_difference, section.equalized_odds_difference_ci, "points")
    parity = _with_interval(section.demographic_parity_difference, section.demographic_parity_difference_ci, "points")
    return text + (
        f"equalized_odds_difference {odds}, demographic_parity_difference {parity} (fairlearn's definitions: "
        "the largest minus the smallest rate over the groups).\n"
    )


def _provenance(report: Report, files: Sequence[CardFile]) -> str:
    rows = [[item.role, f"`{item.path}`", f"`{item.sha256}`" if item.sha256 else "-"] for item in files]
    text = table(["file", "path (relative to this card)", "sha256"], rows) if rows else ""
    settings = [["fairgrape", _version()], ["split", report.split or "every image (no split column)"],
                ["target", report.target], ["groups", report.attribute]]  # fmt: skip
    if report.intervals is not None:
        settings.append(["intervals", f"{100 * report.intervals.confidence:g}%"])
    if report.run is not None:
        for key in ("method", "rate", "keep_per_iter", "iterations", "seed"):
            value = getattr(report.run, key)
            if value is not None:
                settings.append([f"run {key}", value])
    return text + "\n" + table(["setting", "value"], settings)

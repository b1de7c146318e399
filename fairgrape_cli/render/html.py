"""Self-contained HTML pages (no external references): a report or a comparison as a table, and
each run's history as an inline SVG chart of accuracy per group against density."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence

from ..io.reports import DISPARITY_METRICS, Report, as_report
from ._formats import (
    BEST_MARK,
    FORMATS,
    clean,
    density_label,
    file_description,
    fraction,
    history_series,
    interval,
    percent,
    points,
    split_label,
)
from .comparison import comparison_rows

_PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
_OVERALL_COLOUR = "#222222"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.section td { border-top: 2px solid #999; }
.best { color: #11772f; font-weight: bold; }
.note, .meta { color: #666; font-size: 0.9rem; }
svg text { font-family: inherit; font-size: 12px; fill: #333; }
"""


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def history_html(
    reports: Report | Mapping | Sequence[Report | Mapping],
    *,
    comparison: dict | None = None,
    thumbnails: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> str:
    """A self-contained HTML page: inline SVG charts of each run's history (per-group and overall
    accuracy vs density) and, for several reports, their ``comparison`` table
    (``method.comparison.compare_reports``); for one report its error types and, per group,
    ``thumbnails`` of the images compression broke (``(data URI, caption)``, embedded). No
    external references.
    """
    reports = [as_report(reports)] if isinstance(reports, (Report, Mapping)) else [as_report(r) for r in reports]
    if comparison is None and len(reports) > 1:
        raise ValueError("several reports are drawn with their comparison (compare_reports)")
    if comparison is not None:
        labels = [entry["label"] for entry in comparison["entries"]]
        title = f"fairgrape: {len(reports)} report(s) compared"
    else:
        labels = [str(report.model) for report in reports]
        title = f"fairgrape report: {reports[0].model}"
    first = reports[0]
    meta = f"images: {first.data} {split_label(first.split)}"
    meta += f"; target {first.target}, groups by {first.attribute}"
    if comparison is None and first.file is not None:  # the exported file judged, as it ships
        meta += f"; {file_description(first.file)}"

    parts = [f"<h1>{_escape(title)}</h1>", f'<p class="meta">{_escape(meta)}</p>']
    if comparison is not None:
        parts.append(_comparison_table_html(comparison))
    else:
        parts.append(_report_table_html(first))
        if first.error_types is not None and first.error_types.groups:
            parts.append(_error_types_html(first))
        if thumbnails:
            parts.append(_thumbnails_html(thumbnails))
    charted = [report for report in reports if report.history]
    accuracy_range = _accuracy_range_of(charted)  # one y range, so the charts compare at a glance
    for report, label in zip(reports, labels):
        if report.history:
            parts.append(f"<h2>{_escape(f'History of {label}')}</h2>")
            parts.append(history_svg(report, accuracy_range=accuracy_range))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _comparison_table_html(comparison: dict) -> str:
    header = "".join(f"<th>{_escape(entry['label'])}</th>" for entry in comparison["entries"])
    lines = [f"<table>\n<tr><th>metric</th><th>n</th>{header}</tr>"]
    for row in comparison_rows(comparison):
        formatted = FORMATS[row["unit"]]
        cells = "".join(
            f'<td class="best">{_escape(formatted(value))} {BEST_MARK}{_interval_html(pair, row["unit"])}</td>' if best
            else f"<td>{_escape(formatted(value))}{_interval_html(pair, row['unit'])}</td>"
            for value, best, pair in zip(row["values"], row["best"], row["intervals"])
        )  # fmt: skip
        n = "" if row["n"] is None else row["n"]
        css = ' class="section"' if row["section"] else ""
        lines.append(f"<tr{css}><td>{_escape(row['metric'])}</td><td>{_escape(n)}</td>{cells}</tr>")
    lines.append("</table>")
    lines.append(
        f'<p class="note">{BEST_MARK} best in its row: highest accuracy, lowest drop, gap and std '
        "(drop = baseline &minus; accuracy; density is not ranked).</p>"
    )
    return "\n".join(lines)


def _interval_html(pair, unit: str) -> str:
    return f'<br><span class="note">{_escape(interval(pair, unit))}</span>' if pair else ""


def _report_table_html(report: Report) -> str:
    """The groups and every image as a table, then density and each disparity metric."""
    flips = report.groups[0].flips_lost is not None
    head = ["group", "n", "accuracy"] + (["baseline", "drop"] if report.has_baseline else [])
    head += ["lost", "gained", "flip rate"] if flips else []
    lines = ["<table>", "<tr>" + "".join(f"<th>{_escape(name)}</th>" for name in head) + "</tr>"]
    overall = report.overall
    rows = [(row.group, row.n, row.accuracy, row.accuracy_ci, row.baseline_accuracy, row.drop, row.drop_ci, row)
            for row in report.groups]  # fmt: skip
    every = ("overall", overall.n, overall.accuracy, overall.accuracy_ci, overall.baseline_accuracy,
             overall.drop, overall.accuracy_drop_ci, None)  # fmt: skip
    for row in [*rows, every]:
        group, n, accuracy, accuracy_ci, baseline, drop, drop_ci, record = row
        cells = [_escape(group), _escape(n), _escape(percent(accuracy)) + _interval_html(accuracy_ci, "accuracy")]
        if report.has_baseline:
            cells += [_escape(percent(baseline)), _escape(points(drop)) + _interval_html(drop_ci, "points")]
        if flips:
            cells += _flip_cells(record, report)
        css = ' class="section"' if row is every else ""
        lines.append(f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    lines.append("</table>")
    formatted = {"accuracy": percent, "points": points}
    summary = [f"density {fraction(report.density)}"] + [
        f"{name} {formatted[spec.unit](value)} {interval(report.disparity.interval(name), spec.unit)}".rstrip()
        for name, spec in DISPARITY_METRICS.items()
        if (value := report.disparity.values.get(name)) is not None
    ]
    lines.append(f'<p class="meta">{_escape(" · ".join(summary))}</p>')
    return "\n".join(lines)


def _flip_cells(row, report: Report) -> list[str]:
    """Lost, gained and the flip rate of a group (its interval below); the totals for overall."""
    if row is None:
        return [_escape(sum(r.flips_lost or 0 for r in report.groups)),
                _escape(sum(r.flips_gained or 0 for r in report.groups)), ""]  # fmt: skip
    rate = _escape(percent(row.flip_rate)) + _interval_html(row.flip_rate_ci, "accuracy")
    return [_escape(row.flips_lost), _escape(row.flips_gained), rate]


_ERROR_COLUMNS = (("true_positive_rate", "TPR"), ("false_positive_rate", "FPR"),
                  ("selection_rate", "selection rate"), ("balanced_accuracy", "balanced accuracy"))  # fmt: skip


def _error_types_html(report: Report) -> str:
    """Error types per group of a binary target, and the two differences (fairlearn's)."""
    section = report.error_types
    head = ["group", "n", "positives"] + [label for _, label in _ERROR_COLUMNS]
    lines = [f"<h2>Error types (positive class: {_escape(section.positive)})</h2>", "<table>",
             "<tr>" + "".join(f"<th>{_escape(name)}</th>" for name in head) + "</tr>"]  # fmt: skip
    for row in section.groups:
        cells = [_escape(row.group), _escape(row.n), _escape(row.positives)] + [
            _escape(percent(getattr(row, key))) + _interval_html(getattr(row, f"{key}_ci"), "accuracy")
            for key, _ in _ERROR_COLUMNS
        ]
        lines.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    lines.append("</table>")
    summary = [
        f"{name} {points(getattr(section, name))} {interval(getattr(section, f'{name}_ci'), 'points')}".rstrip()
        for name in ("equalized_odds_difference", "demographic_parity_difference")
    ]
    lines.append(f'<p class="meta">{_escape(" · ".join(summary))}</p>')
    return "\n".join(lines)


def _thumbnails_html(thumbnails: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """Per group, the images the baseline got right and the model gets wrong, most confident first."""
    lines = ["<h2>Images compression broke</h2>",
             '<p class="note">Per group, images the baseline classified right and the compressed model '
             "gets wrong, the baseline's most confident first (a few per group; --exemplars lists all).</p>"]  # fmt: skip
    for group, images in thumbnails.items():
        lines.append(f"<h3>{_escape(group)} ({len(images)} shown)</h3>")
        lines.append("<div>" + "".join(
            f'<img src="{_escape(uri)}" alt="{_escape(caption)}" title="{_escape(caption)}" '
            'style="margin:2px;max-width:96px;max-height:96px">'
            for uri, caption in images
        ) + "</div>")  # fmt: skip
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- SVG chart

_WIDTH, _HEIGHT = 760, 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 170, 20, 56  # margins; the legend sits in the right one
_MIN_TICK_SPACING = 46  # pixels between density labels, so they never overlap
_SMALLEST_DENSITY = 1e-6  # a fully pruned model still gets a place on the log axis
_LEGEND_CHARS = 18  # longer group names are cut in the legend (the full name is its tooltip)


def history_svg(report: Report, *, accuracy_range: tuple[float, float, float] | None = None) -> str:
    """Line chart of accuracy (overall dashed, one line per group) against density.

    Density decreases left to right on a log scale: a geometric schedule (keep r per iteration)
    gives evenly spaced iterations, and 0.99 pruning is two decades, not a squeezed corner.
    ``accuracy_range`` (low, high, tick step) fixes the y axis, to draw several runs alike;
    by default it fits this run.
    """
    history = report.history or []
    densities = [max(clean(entry.density) or _SMALLEST_DENSITY, _SMALLEST_DENSITY) for entry in history]
    series = history_series(report)
    x_of = _density_axis(densities)
    low, high, step = accuracy_range or _accuracy_range_of([report])

    def y_of(value: float) -> float:
        return _TOP + (high - value) / (high - low) * (_HEIGHT - _TOP - _BOTTOM)

    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{_escape("accuracy per group against density")}">'
    ]
    parts += _accuracy_grid(low, high, step, y_of)
    parts += _density_ticks(densities, x_of)
    parts += _axes_titles()
    for index, (name, line) in enumerate(series):
        colour = _OVERALL_COLOUR if index == 0 else _PALETTE[(index - 1) % len(_PALETTE)]
        parts += _series_svg(name, line, history, densities, x_of, y_of, colour, dashed=index == 0)
        parts += _legend_item(name, index, colour, dashed=index == 0)
    parts.append("</svg>")
    return "\n".join(parts)


def _density_axis(densities: list[float]) -> Callable[[float], float]:
    plot_left, plot_right = _LEFT, _WIDTH - _RIGHT
    if not densities:
        return lambda density: plot_left
    top, bottom = math.log(max(densities)), math.log(min(densities))
    if top - bottom < 1e-12:  # a single density: put it in the middle
        return lambda density: (plot_left + plot_right) / 2
    return lambda density: plot_left + (top - math.log(density)) / (top - bottom) * (plot_right - plot_left)


def _accuracy_range_of(reports: Sequence[Report]) -> tuple[float, float, float]:
    """The y range that holds every accuracy of these reports' histories."""
    values = [
        value for report in reports for _, line in history_series(report) for value in line if value is not None
    ] or [0.0, 1.0]
    return _accuracy_range(min(values), max(values))


def _accuracy_range(lowest: float, highest: float) -> tuple[float, float, float]:
    """Y range rounded out to 5 points (within 0..100%), and a tick step that gives few lines."""
    low = max(0.0, math.floor((lowest - 0.01) * 20) / 20)
    high = min(1.0, math.ceil((highest + 0.01) * 20) / 20)
    if high - low < 0.05:
        low, high = max(0.0, high - 0.05), max(high, 0.05)
    span = high - low
    step = 0.05 if span <= 0.3 else 0.1 if span <= 0.6 else 0.2
    return low, high, step


def _accuracy_grid(low: float, high: float, step: float, y_of) -> list[str]:
    parts = []
    tick = math.ceil(low / step - 1e-9) * step
    while tick <= high + 1e-9:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{100 * tick:.0f}%</text>'
        )
        tick += step
    return parts


def _density_ticks(densities: list[float], x_of) -> list[str]:
    """A tick at each density the run visited (the schedule), labels thinned where they crowd."""
    parts = [
        f'<line x1="{_LEFT}" y1="{_HEIGHT - _BOTTOM}" x2="{_WIDTH - _RIGHT}" '
        f'y2="{_HEIGHT - _BOTTOM}" stroke="#888"/>'
    ]
    last_label_x = -math.inf
    for density in sorted(set(densities), reverse=True):
        x = x_of(density)
        parts.append(f'<line x1="{x:.1f}" y1="{_HEIGHT - _BOTTOM}" x2="{x:.1f}" y2="{_HEIGHT - _BOTTOM + 5}" stroke="#888"/>')
        if x - last_label_x >= _MIN_TICK_SPACING:
            parts.append(f'<text x="{x:.1f}" y="{_HEIGHT - _BOTTOM + 18}" text-anchor="middle">{density:.3g}</text>')
            last_label_x = x
    return parts


def _axes_titles() -> list[str]:
    middle_x = (_LEFT + _WIDTH - _RIGHT) / 2
    middle_y = (_TOP + _HEIGHT - _BOTTOM) / 2
    return [
        f'<text x="{middle_x:.1f}" y="{_HEIGHT - 12}" text-anchor="middle">'
        "density (kept fraction of prunable weights, log scale)</text>",
        f'<text x="16" y="{middle_y:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 16 {middle_y:.1f})">accuracy</text>',
    ]


def _series_svg(name, line, history, densities, x_of, y_of, colour, *, dashed: bool) -> list[str]:
    points = [
        (x_of(density), y_of(value), entry, value)
        for entry, density, value in zip(history, densities, line)
        if value is not None
    ]
    if not points:
        return []
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
    parts = [f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>']
    for x, y, entry, value in points:
        tip = (
            f"{name}: {percent(value)} at density {density_label(entry.density)} "
            f"(iteration {_or_unknown(entry.iteration)}, {_or_unknown(entry.stage)})"
        )
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"><title>{_escape(tip)}</title></circle>'
        )
    return parts


def _legend_item(name: str, index: int, colour: str, *, dashed: bool) -> list[str]:
    x, y = _WIDTH - _RIGHT + 16, _TOP + 10 + 20 * index
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    shown = name if len(name) <= _LEGEND_CHARS else name[: _LEGEND_CHARS - 1] + "…"
    return [
        f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{colour}" stroke-width="2"{dash}/>'
        f'<text x="{x + 28}" y="{y + 4}">{_escape(shown)}<title>{_escape(name)}</title></text>'
    ]


def _or_unknown(value: object) -> object:
    return "?" if value is None else value

"""Rendering reports: rich tables and charts for the terminal, self-contained HTML with inline SVG.

JSON is written by the report stage; the numbers compared side by side come from
``comparison.compare_reports``. Every string that came from a file (paths, group names, labels)
goes into rich as ``Text`` (never parsed as markup) and into HTML escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

BEST_MARK = "*"  # beside the best value of a row: survives terminals without colour
_BEST_STYLE = "bold green"
_SPARKS = "▁▂▃▄▅▆▇█"


def _percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def _points(value: float | None) -> str:
    """A difference of accuracies, in percentage points."""
    return "-" if value is None or math.isnan(value) else f"{100 * value:+.2f} pp"


def _fraction(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


# comparison column unit -> how a value of it is written
_FORMATS: dict[str, Callable[[float | None], str]] = {
    "fraction": _fraction,
    "accuracy": _percent,
    "points": _points,
}


# ------------------------------------------------------------------------------- one report


def render_report(report: dict) -> RenderableType:
    has_baseline = report["overall"]["baseline_accuracy"] is not None
    title = Text(f"{report['model']}  on {report['data']}")
    if report.get("split"):
        title.append(f" ({report['split']})")
    table = Table(title=title, title_justify="left", show_footer=False)
    table.add_column(Text(report["attribute"] or "group"))
    table.add_column("n", justify="right")
    table.add_column("accuracy", justify="right")
    if has_baseline:
        table.add_column("baseline", justify="right")
        table.add_column("drop", justify="right")
    worst = min(report["groups"], key=lambda row: row["accuracy"])["group"]
    largest_drop = (
        max(report["groups"], key=lambda row: row["drop"])["group"] if has_baseline else None
    )
    for row in report["groups"]:
        cells = [Text(str(row["group"])), str(row["n"]), _percent(row["accuracy"])]
        if has_baseline:
            cells += [_percent(row["baseline_accuracy"]), _points(row["drop"])]
        style = "bold red" if row["group"] in (worst, largest_drop) and len(report["groups"]) > 1 else None
        table.add_row(*cells, style=style)
    overall = report["overall"]
    cells = ["overall", str(overall["n"]), _percent(overall["accuracy"])]
    if has_baseline:
        cells += [
            _percent(overall["baseline_accuracy"]),
            _points(overall["baseline_accuracy"] - overall["accuracy"]),
        ]
    table.add_section()
    table.add_row(*cells, style="bold")

    disparity = report["disparity"]
    lines = Text()
    lines.append(f"density {report['density']:.4f}   ")
    lines.append(f"accuracy_gap {_points(disparity['accuracy_gap'])}   ")
    lines.append(f"worst_group_accuracy {_percent(disparity['worst_group_accuracy'])}")
    if has_baseline:
        lines.append(f"\ndrop_std {_points(disparity['drop_std'])}   ")
        lines.append(f"drop_gap {_points(disparity['drop_gap'])}")
    return Group(table, lines)


def render_conditions(failed: list[str], checked: list[str]) -> Text:
    text = Text()
    for condition in checked:
        if condition in failed:
            text.append(f"FAIL  {condition}\n", style="bold red")
        else:
            text.append(f"ok    {condition}\n", style="green")
    return text


# ------------------------------------------------------------------------------- comparison


def comparison_rows(comparison: dict) -> list[dict]:
    """The comparison as display rows: one per metric, its values per entry and which are best.

    Methods are the columns and metrics the rows, so many groups stay readable at 80 columns.
    Rows whose values are all null (drops without a baseline) are left out.
    """
    entries = comparison["entries"]
    rows = []

    def add(name: str, n: int | None, unit: str, values: list, best: list[str], section: bool) -> None:
        if all(value is None for value in values):
            return
        marked = [entry["label"] in best for entry in entries]
        rows.append({"metric": name, "n": n, "unit": unit, "values": values, "best": marked, "section": section})

    total = sum(group["n"] for group in entries[0]["groups"])
    overall_metrics = ("density", "accuracy", "accuracy_drop")
    for name in overall_metrics:
        column = comparison["columns"][name]
        n = total if name != "density" else None
        add(name, n, column["unit"], [e[name] for e in entries], comparison["best"].get(name, []), False)
    for position, group in enumerate(comparison["groups"]):
        for name, column in comparison["group_columns"].items():
            values = [entry["groups"][position][name] for entry in entries]
            best = comparison["best"]["groups"][group][name]
            first_of_group = name == next(iter(comparison["group_columns"]))
            add(f"{group} {name}", entries[0]["groups"][position]["n"], column["unit"], values, best,
                first_of_group and position == 0)  # fmt: skip
    for position, (name, column) in enumerate(
        (name, column) for name, column in comparison["columns"].items() if name not in overall_metrics
    ):
        add(name, None, column["unit"], [e[name] for e in entries], comparison["best"].get(name, []), position == 0)
    return rows


def render_comparison(comparison: dict) -> RenderableType:
    """Metrics as rows, reports as columns; the best value of each row bold green with ``*``."""
    title = Text(f"{len(comparison['entries'])} report(s) on {comparison['data']}")
    if comparison.get("split"):
        title.append(f" ({comparison['split']})")
    title.append(f", groups by {comparison['attribute']}")
    table = Table(title=title, title_justify="left")
    rows = comparison_rows(comparison)
    table.add_column("metric", min_width=12)
    table.add_column("n", justify="right")
    for position, entry in enumerate(comparison["entries"]):  # numbers keep their line; labels wrap
        widest = max(len(_FORMATS[row["unit"]](row["values"][position])) for row in rows)
        table.add_column(Text(entry["label"]), justify="right", min_width=widest + 1 + len(BEST_MARK))
    for row in rows:
        if row["section"]:
            table.add_section()
        formatted = _FORMATS[row["unit"]]
        cells = [
            Text(f"{formatted(value)} {BEST_MARK}", style=_BEST_STYLE) if best else Text(f"{formatted(value)}  ")
            for value, best in zip(row["values"], row["best"])
        ]
        table.add_row(Text(row["metric"]), "" if row["n"] is None else str(row["n"]), *cells)
    note = Text(
        f"{BEST_MARK} best in its row: highest accuracy, lowest drop, gap and std "
        "(drop = baseline - accuracy; density is not ranked)",
        style="dim",
    )
    return Group(table, note)


# ------------------------------------------------------------------------------ run history


def history_series(report: dict) -> list[tuple[str, list[float | None]]]:
    """Accuracy per history entry: ``overall`` first, then each group in the report's order."""
    history = report.get("history") or []
    groups = [str(row["group"]) for row in report["groups"]]
    for entry in history:  # groups only in the history (none expected) still get a line
        groups += [str(name) for name in entry.get("groups", {}) if str(name) not in groups]
    series = [("overall", [_clean(entry.get("accuracy")) for entry in history])]
    for group in groups:
        series.append((group, [_clean(entry.get("groups", {}).get(group)) for entry in history]))
    return series


def _clean(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _sparkline(values: Sequence[float | None], low: float, high: float) -> str:
    levels = len(_SPARKS) - 1
    chars = []
    for value in values:
        if value is None:
            chars.append(" ")
            continue
        fraction = 0.5 if high <= low else (value - low) / (high - low)
        chars.append(_SPARKS[round(fraction * levels)])
    return "".join(chars)


_STAGE_NAME = {"dense": "dense", "final": "final", "iteration": "last"}  # history column headers


def render_history(report: dict, *, label: str | None = None) -> RenderableType:
    """Per-group accuracy across a run's iterations as sparklines, one character per iteration.

    All lines share one scale (stated below the table), so heights compare across groups; the
    densities of the iterations are listed above, in the same order as the characters.
    """
    history = report.get("history") or []
    heading = Text(f"history of {label or report['model']}", style="bold")
    if not history:
        return Group(heading, Text("no history: only `fairgrape run` records one", style="dim"))
    series = history_series(report)
    values = [value for _, line in series for value in line if value is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    densities = Text("density  " + " > ".join(_density_label(entry.get("density")) for entry in history))
    counts = {str(row["group"]): row["n"] for row in report["groups"]}
    counts["overall"] = report["overall"]["n"]

    table = Table(box=None, pad_edge=False, padding=(0, 1))
    table.add_column(Text(report.get("attribute") or "group"))
    table.add_column("n", justify="right")
    table.add_column(f"accuracy, iteration 0..{history[-1].get('iteration', len(history) - 1)}")
    table.add_column(_STAGE_NAME.get(str(history[0].get("stage")), "first"), justify="right")
    table.add_column(_STAGE_NAME.get(str(history[-1].get("stage")), "last"), justify="right")
    table.add_column("drop", justify="right")
    for name, line in series:
        first, last = line[0], line[-1]
        drop = first - last if first is not None and last is not None else None
        table.add_row(
            Text(name, style="bold" if name == "overall" else None),
            str(counts.get(name, "")),
            Text(_sparkline(line, low, high), style="cyan"),
            _percent(first),
            _percent(last),
            _points(drop),
        )
    scale = Text(f"scale: {_SPARKS[0]} {_percent(low)} .. {_SPARKS[-1]} {_percent(high)}", style="dim")
    return Group(heading, densities, table, scale)



def _density_label(value: object) -> str:
    number = _clean(value)
    return "?" if number is None else f"{number:.3g}"


# ------------------------------------------------------------------------------------- HTML

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


def save_report(result: dict, *, json_output: Path | None = None, html_output: Path | None = None) -> None:
    """Write a report as JSON and/or as a self-contained HTML page (each atomically)."""
    from ._files import write_text_atomically

    if json_output is not None:
        write_text_atomically(json_output, json.dumps(result, indent=2) + "\n")
    if html_output is not None:
        write_text_atomically(html_output, history_html(result))


def history_html(reports: dict | Sequence[dict], *, comparison: dict | None = None) -> str:
    """A self-contained HTML page: inline SVG charts of each run's history (per-group and overall
    accuracy vs density) and, for several reports, the comparison table. No external references.
    """
    reports = [reports] if isinstance(reports, dict) else list(reports)
    if comparison is None and len(reports) > 1:
        from .comparison import compare_reports

        comparison = compare_reports(reports)
    if comparison is not None:
        labels = [entry["label"] for entry in comparison["entries"]]
        title = f"fairgrape: {len(reports)} report(s) compared"
    else:
        labels = [str(report["model"]) for report in reports]
        title = f"fairgrape report: {reports[0]['model']}"
    first = reports[0]
    meta = f"data {first['data']}"
    if first.get("split"):
        meta += f" ({first['split']})"
    meta += f", target {first['target']}, groups by {first['attribute']}"

    parts = [f"<h1>{_escape(title)}</h1>", f'<p class="meta">{_escape(meta)}</p>']
    if comparison is not None:
        parts.append(_comparison_table_html(comparison))
    else:
        parts.append(_report_table_html(first))
    for report, label in zip(reports, labels):
        if report.get("history"):
            parts.append(f"<h2>{_escape(f'History of {label}')}</h2>")
            parts.append(history_svg(report))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _comparison_table_html(comparison: dict) -> str:
    header = "".join(f"<th>{_escape(entry['label'])}</th>" for entry in comparison["entries"])
    lines = [f"<table>\n<tr><th>metric</th><th>n</th>{header}</tr>"]
    for row in comparison_rows(comparison):
        formatted = _FORMATS[row["unit"]]
        cells = "".join(
            f'<td class="best">{_escape(formatted(value))} {BEST_MARK}</td>' if best
            else f"<td>{_escape(formatted(value))}</td>"
            for value, best in zip(row["values"], row["best"])
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


def _report_table_html(report: dict) -> str:
    has_baseline = report["overall"].get("baseline_accuracy") is not None
    head = ["group", "n", "accuracy"] + (["baseline", "drop"] if has_baseline else [])
    lines = ["<table>", "<tr>" + "".join(f"<th>{_escape(name)}</th>" for name in head) + "</tr>"]
    overall = dict(report["overall"], group="overall")
    if has_baseline:
        overall["drop"] = overall["baseline_accuracy"] - overall["accuracy"]
    for row in [*report["groups"], overall]:
        cells = [row["group"], row["n"], _percent(row["accuracy"])]
        if has_baseline:
            cells += [_percent(row.get("baseline_accuracy")), _points(row.get("drop"))]
        css = ' class="section"' if row is overall else ""
        lines.append(f"<tr{css}>" + "".join(f"<td>{_escape(cell)}</td>" for cell in cells) + "</tr>")
    lines.append("</table>")
    disparity = report["disparity"]
    summary = [f"density {_fraction(report['density'])}"] + [
        f"{name} {formatted(disparity.get(name))}"
        for name, formatted in (
            ("accuracy_gap", _points), ("worst_group_accuracy", _percent),
            ("drop_std", _points), ("drop_gap", _points),
        )  # fmt: skip
        if disparity.get(name) is not None
    ]
    lines.append(f'<p class="meta">{_escape(" · ".join(summary))}</p>')
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- SVG chart

_WIDTH, _HEIGHT = 760, 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 170, 20, 56  # margins; the legend sits in the right one
_MIN_TICK_SPACING = 46  # pixels between density labels, so they never overlap
_SMALLEST_DENSITY = 1e-6  # a fully pruned model still gets a place on the log axis
_LEGEND_CHARS = 18  # longer group names are cut in the legend (the full name is its tooltip)


def history_svg(report: dict) -> str:
    """Line chart of accuracy (overall dashed, one line per group) against density.

    Density decreases left to right on a log scale: a geometric schedule (keep r per iteration)
    gives evenly spaced iterations, and 0.99 pruning is two decades, not a squeezed corner.
    """
    history = report.get("history") or []
    densities = [max(_clean(entry.get("density")) or _SMALLEST_DENSITY, _SMALLEST_DENSITY) for entry in history]
    series = history_series(report)
    values = [value for _, line in series for value in line if value is not None] or [0.0, 1.0]
    x_of = _density_axis(densities)
    low, high, step = _accuracy_range(min(values), max(values))

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
            f"{name}: {_percent(value)} at density {_density_label(entry.get('density'))} "
            f"(iteration {entry.get('iteration', '?')}, {entry.get('stage', '?')})"
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

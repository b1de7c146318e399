"""Terminal rendering of one report: the per-group table, the CI conditions, a run's history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..io.reports import DISPARITY_METRICS, ModelSize, Report, as_report
from ._formats import density_label, file_description, history_series, interval, percent, points, split_label

_SPARKS = "▁▂▃▄▅▆▇█"


ATTRIBUTES_SHOWN = 10  # of a multi-label report, the worst; the rest with --all
_FORMATTED = {"accuracy": percent, "points": points}  # a disparity metric's unit -> how it is written


def render_report(report: Report | Mapping, *, all_attributes: bool = False) -> RenderableType:
    """The per-group table (with 95% intervals when the report has them), the disparity lines,
    and for a multi-label model its attributes, worst first."""
    report = as_report(report)
    lines = _summary_lines(report)
    if not report.attributes:
        return Group(_groups_table(report), lines)
    lines.append(
        f"\naccuracy above: the mean over the {len(report.attributes)} attributes; disparity is computed on it",
        style="dim",
    )
    return Group(_groups_table(report), lines, Text(), _attributes_table(report, all_attributes))


def _groups_table(report: Report) -> Table:
    """One row per group and one for every image, each number with its interval below it."""
    title = Text(f"{report.model}  on {report.data} {split_label(report.split)}")
    table = Table(title=title, title_justify="left", show_footer=False)
    table.add_column(Text(report.attribute or "group"))
    table.add_column("n", justify="right")
    columns = [("accuracy", "accuracy")]
    if report.has_baseline:
        columns += [("baseline_accuracy", "accuracy"), ("drop", "points")]
    if report.groups[0].flip_rate is not None:
        columns += [("flip_rate", "accuracy")]
    for key, _ in columns:
        heading = {"baseline_accuracy": "baseline", "flip_rate": "flip rate"}.get(key, key)
        with_ci = report.has_intervals and key != "baseline_accuracy"
        table.add_column(f"{heading}\n95% CI" if with_ci else heading, justify="right")
    worst = min(report.groups, key=lambda row: row.accuracy).group
    largest_drop = max(report.groups, key=lambda row: row.drop).group if report.has_baseline else None
    overall = report.overall
    rows = [(row.group, row.n, {key: (getattr(row, key), getattr(row, f"{key}_ci")) for key, _ in columns})
            for row in report.groups]  # fmt: skip
    every = {"accuracy": (overall.accuracy, overall.accuracy_ci), "baseline_accuracy": (overall.baseline_accuracy, None),
             "drop": (overall.drop, overall.accuracy_drop_ci), "flip_rate": (None, None)}  # fmt: skip
    for name, n, values in [*rows, ("overall", overall.n, every)]:
        cells = [Text(str(name)), str(n)]
        for key, unit in columns:
            value, pair = values[key]
            cell = Text(percent(value) if unit == "accuracy" else points(value))
            if report.has_intervals and key != "baseline_accuracy" and pair:
                cell.append(f"\n{interval(pair, unit)}", style="dim")  # under its value
            cells.append(cell)
        if values is every:
            table.add_section()
            table.add_row(*cells, style="bold")
        else:
            marked = name in (worst, largest_drop) and len(report.groups) > 1
            table.add_row(*cells, style="bold red" if marked else None)
    return table


def _summary_lines(report: Report) -> Text:
    """Density, each disparity metric (with its interval), what the intervals are, the size."""
    lines = Text()
    lines.append(f"density {report.density:.4f}")
    shown = [spec for spec in DISPARITY_METRICS.values()
             if (report.has_baseline or not spec.needs_baseline) and spec.name in report.disparity.values]  # fmt: skip
    for position, spec in enumerate(shown):
        lines.append("\n" if position == 2 else "   ")
        lines.append(f"{spec.name} {_FORMATTED[spec.unit](report.disparity.values.get(spec.name))}")
        ci = interval(report.disparity.interval(spec.name), spec.unit)
        if ci:
            lines.append(f" {ci}", style="dim")
    if report.groups[0].flips_lost is not None:
        lost, gained = (sum(getattr(row, key) or 0 for row in report.groups) for key in ("flips_lost", "flips_gained"))
        lines.append(f"\nflips: {lost} right before and wrong now (lost), {gained} the reverse (gained)")
    if report.error_types is not None:
        lines.append("\n" + error_types_line(report.error_types))
    if report.has_intervals:
        method = report.intervals.method if report.intervals else "seeded bootstrap over each group's images"
        lines.append(f"\n95% CI: {method}; where two groups' intervals overlap, their difference may be noise", style="dim")
    if report.size.params is not None:
        lines.append("\n" + size_line(report.size))
    if report.file is not None:
        lines.append("\n" + file_description(report.file))
    return lines


def error_types_line(section) -> str:
    """The equalized odds and demographic parity differences, with their intervals."""
    parts = []
    for name in ("equalized_odds_difference", "demographic_parity_difference"):
        shown = interval(getattr(section, f"{name}_ci"), "points")
        parts.append(f"{name} {points(getattr(section, name))}" + (f" {shown}" if shown else ""))
    which = f" (positive: {section.positive})" if section.positive else " (the worst attribute)"
    return "   ".join(parts) + which


def _attributes_table(report: Report, show_all: bool) -> RenderableType:
    """Each attribute's accuracy per group; worst first (largest drop_gap with a baseline, else
    lowest worst-group accuracy), the first ``ATTRIBUTES_SHOWN`` unless ``show_all``."""
    has_baseline = report.has_baseline
    if has_baseline:
        ordered = sorted(report.attributes, key=lambda section: -section.disparity.drop_gap)
    else:
        ordered = sorted(report.attributes, key=lambda section: section.disparity.worst_group_accuracy)
    shown = ordered if show_all else ordered[:ATTRIBUTES_SHOWN]
    table = Table(title=Text("attributes, worst first"), title_justify="left")
    table.add_column("attribute")
    table.add_column("accuracy", justify="right")
    for row in report.groups:
        table.add_column(Text(f"{row.group} {'drop' if has_baseline else 'accuracy'}"), justify="right")
    table.add_column("drop_gap" if has_baseline else "accuracy_gap", justify="right")
    for section in shown:
        cells = [Text(section.attribute), percent(section.overall.accuracy)]
        cells += [points(row.drop) if has_baseline else percent(row.accuracy) for row in section.groups]
        cells.append(points(section.disparity.drop_gap if has_baseline else section.disparity.accuracy_gap))
        table.add_row(*cells)
    if len(shown) < len(ordered):
        return Group(table, Text(f"{len(ordered) - len(shown)} more attribute(s): --all shows them", style="dim"))
    return table


def size_line(size: ModelSize) -> str:
    """``params 2.79 M of 11.2 M dense (25.0%)   FLOPs ...``: the model against its dense build;
    with exact zeros (weight pruning keeps the dense shapes), how many parameters are not zero."""
    parts = []
    for key, label in (("params", "params"), ("flops", "FLOPs")):
        value, dense = getattr(size, key), getattr(size, f"dense_{key}")
        if value is None:
            continue
        text = f"{label} {_count(value)}"
        if dense:
            text += f" of {_count(dense)} dense ({100 * value / dense:.1f}%)"
        if key == "flops" and size.image_size:
            text += f" per {size.image_size} px image"
        nonzero = size.nonzero_params if key == "params" else None
        if nonzero is not None and nonzero < value:
            text += f", {_count(nonzero)} nonzero ({100 * nonzero / (dense or value):.1f}%)"
        parts.append(text)
    return "   ".join(parts)


def _count(value: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.3g} {suffix}"
    return str(int(value))


def render_conditions(checks: Sequence) -> Text:
    """``FAIL  drop_gap>0.05: 0.276 [0.210, 0.340]`` or ``ok    ...`` for each ``--fail-if``
    condition checked (``method.metrics.ConditionCheck``): the metric's value, as a fraction
    like the threshold, and its 95% interval."""
    text = Text()
    for check in checks:
        measured = f"{check.value:.3f}" if check.value is not None else "-"
        if check.interval:
            measured += f" [{check.interval[0]:.3f}, {check.interval[1]:.3f}]"
        if check.held:
            text.append(f"FAIL  {check.text}: {measured}\n", style="bold red")
        else:
            text.append(f"ok    {check.text}: {measured}\n", style="green")
    return text


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


def render_history(report: Report | Mapping, *, label: str | None = None) -> RenderableType:
    """Per-group accuracy across a run's iterations as sparklines, one character per iteration.

    All lines share one scale (stated below the table), so heights compare across groups; the
    densities of the iterations are listed above, in the same order as the characters.
    """
    report = as_report(report)
    history = report.history or []
    heading = Text(f"history of {label or report.model}", style="bold")
    if not history:
        return Group(heading, Text("no history: only `fairgrape run` records one", style="dim"))
    series = history_series(report)
    values = [value for _, line in series for value in line if value is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    densities = Text("density  " + " > ".join(density_label(entry.density) for entry in history))
    counts = {str(row.group): row.n for row in report.groups}
    counts["overall"] = report.overall.n

    table = Table(box=None, pad_edge=False, padding=(0, 1))
    table.add_column(Text(report.attribute or "group"))
    table.add_column("n", justify="right")
    last_iteration = history[-1].iteration if history[-1].iteration is not None else len(history) - 1
    table.add_column(f"accuracy, iteration 0..{last_iteration}")
    table.add_column(_STAGE_NAME.get(str(history[0].stage), "first"), justify="right")
    table.add_column(_STAGE_NAME.get(str(history[-1].stage), "last"), justify="right")
    table.add_column("drop", justify="right")
    for name, line in series:
        first, last = line[0], line[-1]
        drop = first - last if first is not None and last is not None else None
        table.add_row(
            Text(name, style="bold" if name == "overall" else None),
            str(counts.get(name, "")),
            Text(_sparkline(line, low, high), style="cyan"),
            percent(first),
            percent(last),
            points(drop),
        )
    scale = Text(f"scale: {_SPARKS[0]} {percent(low)} .. {_SPARKS[-1]} {percent(high)}", style="dim")
    return Group(heading, densities, table, scale)

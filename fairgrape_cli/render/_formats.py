"""How numbers are written in every rendering (terminal and HTML), and the series a run's history
charts draw. Strings from files go into rich as ``Text`` and into HTML escaped, never as markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..io.reports import FileFacts, Report

BEST_MARK = "*"  # beside the best value of a row: survives terminals without colour


def percent(value: float | None) -> str:
    """A fraction as percent, ``85.00%`` (``-`` for none)."""
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def points(value: float | None) -> str:
    """A difference of accuracies, in percentage points."""
    return "-" if value is None or math.isnan(value) else f"{100 * value:+.2f} pp"


def fraction(value: float | None) -> str:
    """A fraction with four decimals (``-`` for none)."""
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def interval(pair: Sequence[float] | None, unit: str) -> str:
    """A 95% interval, ``[80.1, 89.2]`` (percent) or ``[+1.2, +5.0]`` (points); empty without one."""
    if not pair or any(value is None or math.isnan(value) for value in pair):
        return ""
    if unit == "points":
        return f"[{100 * pair[0]:+.1f}, {100 * pair[1]:+.1f}]"
    if unit == "accuracy":
        return f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}]"
    return f"[{pair[0]:.4f}, {pair[1]:.4f}]"


def file_size(value: float | None) -> str:
    """A byte count as people read it (``44.8 MB``)."""
    if value is None or math.isnan(value):
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def file_description(facts: FileFacts) -> str:
    """``file: onnx, int8 weights, 2 layer(s) left in float (conv1, fc), 11.3 MB`` for an
    exported file."""
    text = f"file: {facts.format}"
    quantization = facts.quantization
    if quantization is not None:
        text += f", {quantization.weights or 'int8'} weights"
        floats = quantization.float_layers or []
        if floats:
            shown = ", ".join(floats[:3]) + (" ..." if len(floats) > 3 else "")
            text += f", {len(floats)} layer(s) left in float ({shown})"
    if isinstance(facts.bytes, int):
        text += f", {file_size(facts.bytes)}"
    return text


# comparison column unit -> how a value of it is written
FORMATS: dict[str, Callable[[float | None], str]] = {
    "fraction": fraction,
    "accuracy": percent,
    "points": points,
}


def history_series(report: Report) -> list[tuple[str, list[float | None]]]:
    """Accuracy per history entry: ``overall`` first, then each group in the report's order."""
    history = report.history or []
    groups = [str(row.group) for row in report.groups]
    for entry in history:  # groups only in the history (none expected) still get a line
        groups += [str(name) for name in (entry.groups or {}) if str(name) not in groups]
    series = [("overall", [clean(entry.accuracy) for entry in history])]
    for group in groups:
        series.append((group, [clean((entry.groups or {}).get(group)) for entry in history]))
    return series


def clean(value: object) -> float | None:
    """A finite number as float, else None (a bool, a string, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def density_label(value: object) -> str:
    """A density with three significant digits (``?`` for none)."""
    number = clean(value)
    return "?" if number is None else f"{number:.3g}"


def split_label(split: str | None) -> str:
    """Which images a report judged: ``(test)``, or every image when there is no split column."""
    return f"({split})" if split else "(every image: no split column)"

"""Terminal rendering of a quantization: each group's accuracy in float and in int8, the layers
left in float and why."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._formats import percent, points


def render_quantization(summary: Any) -> RenderableType:
    """``summary``: the quantize stage's summary (groups, float_accuracy, accuracy, drops,
    float_layers, layers, max_group_drop, control_split, evaluations, harm)."""
    split = f" ({summary.control_split})" if summary.control_split else ""
    table = Table(title=Text(f"per-group accuracy, float vs int8{split}"), title_justify="left")
    for heading in ("group", "float", "int8", "drop"):
        table.add_column(heading, justify="left" if heading == "group" else "right")
    bound = summary.max_group_drop
    for group, before, after, drop in zip(summary.groups, summary.float_accuracy, summary.accuracy, summary.drops):
        over = bound is not None and drop > bound + 1e-9
        table.add_row(Text(str(group)), percent(before), percent(after), points(drop), style="bold red" if over else None)
    lines = Text()
    lines.append(f"{len(summary.layers) - len(summary.float_layers)} of {len(summary.layers)} weight layers in int8")
    if summary.float_layers:
        lines.append(f"; left in float: {', '.join(summary.float_layers)}")
    if bound is not None:
        lines.append(f"\nbound: every group within {100 * bound:.2f} points of the float model")
        lines.append(f" ({summary.evaluations} quantized model(s) measured)", style="dim")
    if summary.harm:
        worst = sorted(summary.harm.items(), key=lambda item: -item[1])[:3]
        shown = ", ".join(f"{name} {points(value)}" for name, value in worst)
        lines.append(f"\nmost harmful in int8 (worst-group drop removed by returning it alone): {shown}", style="dim")
    return Group(table, lines)

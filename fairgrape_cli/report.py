"""Rendering reports: rich tables for the terminal (JSON is written by the report stage)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _points(value: float | None) -> str:
    """A difference of accuracies, in percentage points."""
    return "-" if value is None else f"{100 * value:+.2f} pp"


def render_report(report: dict) -> RenderableType:
    has_baseline = report["overall"]["baseline_accuracy"] is not None
    title = f"{report['model']}  on {report['data']}"
    if report.get("split"):
        title += f" ({report['split']})"
    table = Table(title=title, title_justify="left", show_footer=False)
    table.add_column(report["attribute"] or "group")
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
        cells = [row["group"], str(row["n"]), _percent(row["accuracy"])]
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

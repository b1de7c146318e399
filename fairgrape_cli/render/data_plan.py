"""Terminal rendering of a data-pruning plan: per class (or group, or cell) N_k, r_k, d_k, kept."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._formats import percent

_UNIT_HEADING = {"target": "class", "group": "group", "both": "class × group"}


def render_data_plan(plan: dict) -> RenderableType:
    """The plan's table (one row per unit, a total row) and what the quotas mean."""
    title = Text(f"{plan['quota']} quotas, keep {plan['keep']:g} of {plan['split'] or 'all'} rows")
    if plan.get("val_split"):
        title.append(f" (recall on {plan['val_split']})")
    table = Table(title=title, title_justify="left")
    table.add_column(Text(_UNIT_HEADING.get(plan["by"], "unit")))
    table.add_column("N_k", justify="right")
    table.add_column("val n", justify="right")
    table.add_column("recall r_k", justify="right")
    table.add_column("quota d_k", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("capped", justify="center")
    for unit in plan["units"]:
        table.add_row(
            Text(unit["name"]),
            str(unit["rows"]),
            str(unit["val_rows"]),
            percent(unit["recall"]),
            f"{unit['quota']:.4f}",
            str(unit["kept"]),
            "yes" if unit["capped"] else "",
            style="bold" if unit["capped"] else None,
        )
    table.add_section()
    table.add_row("total", str(plan["rows"]), "", "", f"{plan['keep']:.4f}", str(plan["kept"]), "", style="bold")
    lines = Text(f"within each unit: {plan['within']}; {plan['quota_form']}", style="dim")
    for note in plan.get("notes") or []:
        lines.append(f"\nnote: {note}", style="yellow")
    return Group(table, lines)

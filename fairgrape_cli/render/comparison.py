"""Terminal rendering of a comparison: metrics as rows, reports as columns, the best marked."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._formats import BEST_MARK, FORMATS, interval

_BEST_STYLE = "bold green"


def comparison_rows(comparison: dict) -> list[dict]:
    """The comparison as display rows: one per metric, its values per entry and which are best.

    Methods are the columns and metrics the rows, so many groups stay readable at 80 columns.
    Rows whose values are all null (drops without a baseline) are left out.
    """
    entries = comparison["entries"]
    rows = []

    def add(name: str, n: int | None, unit: str, sources: list[dict], key: str, best: list[str], section: bool) -> None:
        values = [source[key] for source in sources]
        if all(value is None for value in values):
            return
        marked = [entry["label"] in best for entry in entries]
        intervals = [source.get("intervals", {}).get(key) for source in sources]
        rows.append({
            "metric": name, "n": n, "unit": unit, "values": values, "intervals": intervals, "best": marked,
            "section": section,
        })  # fmt: skip

    total = sum(group["n"] for group in entries[0]["groups"])
    overall_metrics = ("density", "accuracy", "accuracy_drop")
    for name in overall_metrics:
        column = comparison["columns"][name]
        n = total if name != "density" else None
        add(name, n, column["unit"], entries, name, comparison["best"].get(name, []), False)
    for position, group in enumerate(comparison["groups"]):
        for name, column in comparison["group_columns"].items():
            sources = [entry["groups"][position] for entry in entries]
            best = comparison["best"]["groups"][group][name]
            first_of_group = name == next(iter(comparison["group_columns"]))
            add(f"{group} {name}", sources[0]["n"], column["unit"], sources, name, best, first_of_group and position == 0)
    for position, (name, column) in enumerate(
        (name, column) for name, column in comparison["columns"].items() if name not in overall_metrics
    ):
        add(name, None, column["unit"], entries, name, comparison["best"].get(name, []), position == 0)
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
        widest = max(len(FORMATS[row["unit"]](row["values"][position])) for row in rows)
        table.add_column(Text(entry["label"]), justify="right", min_width=widest + 1 + len(BEST_MARK))
    for row in rows:
        if row["section"]:
            table.add_section()
        formatted = FORMATS[row["unit"]]
        cells = []
        for value, best, pair in zip(row["values"], row["best"], row["intervals"]):
            cell = Text(f"{formatted(value)} {BEST_MARK}", style=_BEST_STYLE) if best else Text(f"{formatted(value)}  ")
            if pair:  # the interval on a line of its own, so the numbers stay aligned
                cell.append(f"\n{interval(pair, row['unit'])}  ", style="dim")
            cells.append(cell)
        table.add_row(Text(row["metric"]), "" if row["n"] is None else str(row["n"]), *cells)
    note = Text(
        f"{BEST_MARK} best in its row: highest accuracy, lowest drop, gap and std "
        "(drop = baseline - accuracy; density is not ranked)",
        style="dim",
    )
    if any(pair for row in rows for pair in row["intervals"]):
        methods = sorted({entry["interval_method"] for entry in comparison["entries"] if entry.get("interval_method")})
        named = f"{' or '.join(methods)} " if methods else ""
        note.append(f"; [low, high]: 95% {named}interval, a difference within them may be noise")
    return Group(table, note)

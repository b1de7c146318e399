"""fairgrape compare: report files side by side, the best value of each metric marked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt


def compare_command(
    reports: Annotated[
        list[Path], typer.Argument(help="Report files written by `fairgrape report --json` or `fairgrape run`.")
    ],
    label: Annotated[
        Optional[list[str]],
        typer.Option("--label", "-l", help="Name of each report's column, in order (repeat once per report)."),
    ] = None,
    json_output: Annotated[Optional[Path], typer.Option("--json", help="Also write the comparison as JSON.")] = None,
    html_output: Annotated[
        Optional[Path],
        typer.Option("--html", help="Also write a self-contained HTML page: the table and each run's history chart."),
    ] = None,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Put the reports of several pruning methods side by side.

    Per-group accuracy and drop, overall accuracy, density, drop_std, drop_gap and worst-group
    accuracy of each REPORT, the best value of each row marked with *. Reports must be on the
    same data, split, target and groups. Runs' histories (accuracy per group as density falls)
    are drawn below the table.

    Columns are named by --label, else by the pruning method and rate, else by the file name;
    runs sharing a method and rate get their config's name (magnitude 0.9 (erm)), else their
    folder's.

    Example:

        fairgrape compare fairgrape.json taylor.json magnitude.json --html comparison.html
    """
    from ..render.comparison import render_comparison
    from ..render.report import render_history
    from ..stages import compare_files
    from ._console import info, stdout

    result = compare_files(reports, labels=label, json_output=json_output, html_output=html_output)
    stdout.print(render_comparison(result.comparison))
    for report, entry in zip(result.reports, result.comparison["entries"]):
        if report.history:
            stdout.print()
            stdout.print(render_history(report, label=entry["label"]))
    for written in (json_output, html_output):
        if written is not None:
            info(f"wrote {written}", quiet)

"""The compare stage: report files in, a comparison out (and as JSON / HTML files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io.files import refuse_overwriting_inputs, write_text_atomically
from ..io.reports import Report, load_report
from ..method.comparison import compare_reports
from ..render.html import history_html


@dataclass
class ComparisonResult:
    """The comparison and the reports it compared."""

    comparison: dict
    reports: list[Report]  # as read, in the order given (the history charts need them whole)


def compare_files(
    paths: Sequence[Path],
    *,
    labels: Sequence[str] | None = None,
    json_output: Path | None = None,
    html_output: Path | None = None,
) -> ComparisonResult:
    """Read report files, compare them, and write the comparison as JSON and/or HTML."""
    refuse_overwriting_inputs([json_output, html_output], paths)
    reports = [load_report(path) for path in paths]
    comparison = compare_reports(reports, labels=labels, sources=[str(path) for path in paths])
    if json_output is not None:
        write_text_atomically(json_output, json.dumps(comparison, indent=2) + "\n")
    if html_output is not None:
        write_text_atomically(html_output, history_html(reports, comparison=comparison))
    return ComparisonResult(comparison, reports)

"""The exemplar file (``report --exemplars FILE.csv``): one row per prediction compression
flipped, the baseline's most confident first, as CSV a spreadsheet or pandas reads."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

# a single label has no attribute column; a multi-attribute head names the attribute of each flip
COLUMNS = (
    "path", "group", "attribute", "label", "flip",
    "baseline_prediction", "baseline_confidence", "model_prediction", "model_confidence",
)  # fmt: skip


def exemplars_csv(rows: Sequence[Mapping[str, object]], *, attributes: bool) -> str:
    """CSV text of ``rows`` (dicts keyed by ``COLUMNS``); confidences with six decimals."""
    columns = [column for column in COLUMNS if attributes or column != "attribute"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    return "" if value is None else str(value)

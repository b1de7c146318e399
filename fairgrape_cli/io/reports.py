"""Report files as ``fairgrape report --json`` and ``fairgrape run`` write them: read and check."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .files import require_file

_REQUIRED = {
    "": ("data", "target", "attribute", "density", "overall", "groups", "disparity"),
    "overall": ("n", "accuracy"),
    "disparity": ("accuracy_gap", "worst_group_accuracy"),
}
_REQUIRED_GROUP_KEYS = ("group", "n", "accuracy")

def load_report(path: str | Path) -> dict:
    """Read and check one report file; every problem is an InputError naming the file."""
    file = require_file(path, "report")
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{file} is not a fairgrape report: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"{file} is not a fairgrape report: invalid JSON (line {error.lineno}: {error.msg})"
        ) from None
    check_report(report, source=str(file))
    return report


def check_report(report: object, *, source: str) -> None:
    """Refuse anything that is not shaped like a fairgrape report (see DESIGN.md, Report)."""
    if not isinstance(report, dict):
        raise InputError(f"{source} is not a fairgrape report: expected a JSON object")
    for section, keys in _REQUIRED.items():
        holder = report if not section else report.get(section)
        if not isinstance(holder, dict):
            raise InputError(f"{source} is not a fairgrape report: no '{section}' object")
        missing = [key for key in keys if key not in holder]
        if missing:
            where = f"'{section}' lacks" if section else "lacks"
            raise InputError(f"{source} is not a fairgrape report: {where} {', '.join(missing)}")
    groups = report["groups"]
    if not isinstance(groups, list) or not groups:
        raise InputError(f"{source} is not a fairgrape report: 'groups' is not a non-empty list")
    for row in groups:
        if not isinstance(row, dict) or any(key not in row for key in _REQUIRED_GROUP_KEYS):
            raise InputError(
                f"{source} is not a fairgrape report: each group needs {', '.join(_REQUIRED_GROUP_KEYS)}"
            )
    names = [str(row["group"]) for row in groups]
    if len(set(names)) != len(names):
        raise InputError(f"{source} is not a fairgrape report: a group is listed twice")

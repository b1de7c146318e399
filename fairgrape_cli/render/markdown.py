"""Markdown pieces for the model card: the YAML header and tables, escaped so a group name or a
path cannot break them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml


def front_matter(metadata: Mapping[str, Any]) -> str:
    """A Hugging Face model card's YAML header: ``---``, the metadata, ``---``."""
    text = yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{text}---\n"


def cell(value: object) -> str:
    """Text for one table cell: pipes escaped, line breaks as spaces."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``right``: which columns align right (numbers)."""
    right = list(right) if right is not None else [False] * len(headers)
    lines = ["| " + " | ".join(cell(header) for header in headers) + " |",
             "|" + "|".join("---:" if flag else "---" for flag in right) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

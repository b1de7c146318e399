"""The files a report writes: JSON, the HTML page, the flips as CSV, a model card's fairness
section; all atomically, all or none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io.files import all_or_none, record_path, sha256_file, write_text_atomically
from ..io.reports import Report
from ..render.exemplars import exemplars_csv
from ..render.html import history_html
from ..render.model_card import CardFile, model_card


@dataclass(frozen=True)
class ReportFiles:
    """Where the report is written (None: not written)."""

    json: Path | None = None
    html: Path | None = None
    exemplars: Path | None = None
    model_card: Path | None = None

    def outputs(self) -> list[Path | None]:
        """Every path asked for."""
        return [self.json, self.html, self.exemplars, self.model_card]


def card_files(card: Path, inputs: Sequence[tuple[str, Path | None]]) -> list[CardFile]:
    """The card's provenance: each input file by role, relative to the card, with its sha256."""
    return [
        CardFile(role, record_path(path, card), sha256_file(path))
        for role, path in inputs
        if path is not None and Path(path).is_file()
    ]


def save_report(
    result: Report,
    *,
    json_output: Path | None = None,
    html_output: Path | None = None,
    exemplars_output: Path | None = None,
    model_card_output: Path | None = None,
    exemplar_rows: Sequence[Mapping[str, object]] | None = None,
    thumbnails: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    inputs: Sequence[tuple[str, Path | None]] = (),
) -> None:
    """Write a report as JSON and/or a self-contained HTML page (with ``thumbnails`` of broken
    images), its flips as CSV (``exemplar_rows``) and a model card naming ``inputs`` (role,
    path), atomically, all or none."""
    with all_or_none():
        if json_output is not None:
            write_text_atomically(json_output, result.to_json())
        if html_output is not None:
            write_text_atomically(html_output, history_html(result, thumbnails=thumbnails))
        if exemplars_output is not None:
            write_text_atomically(exemplars_output, exemplars_csv(exemplar_rows or [], attributes=bool(result.attributes)))
        if model_card_output is not None:
            files = card_files(model_card_output, inputs)
            write_text_atomically(model_card_output, model_card(result, files=files))

"""The rows of a dataset layout before a split, target and groups are chosen (:class:`RawTable`),
and the readers every layout shares: UTF-8 CSV and text files with errors naming file and line.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SPLIT_COLUMN = "split"
PATH_COLUMNS = ("path", "file")


@dataclass
class RawTable:
    """Every row a layout describes, before a split, target and groups are chosen."""

    layout: str
    root: Path  # image paths are relative to this folder
    paths: list[str]
    columns: dict[str, list[str]]  # attribute name -> one string value per row
    sources: list[Path]  # files the rows come from, for messages
    row_source: list[int]  # index into ``sources`` per row
    row_number: list[int]  # line number in that source (header = line 1), 0 if none
    splits: list[str] | None = None
    value_names: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> readable
    default_target: str | None = None
    notes: list[str] = field(default_factory=list)  # things worth telling the user
    warnings: list[str] = field(default_factory=list)  # rows or images left out, and why

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, row: int) -> str:
        """Where row ``row`` comes from, for messages (``labels.csv row 7``)."""
        source = self.sources[self.row_source[row]]
        number = self.row_number[row]
        if number:
            return f"{source.name} row {number}"
        return self.paths[row]  # the file name itself carries the attributes (UTKFace)


LayoutReader = Callable[[Path, "Path | None"], "RawTable | None"]


def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` rows of a UTF-8 CSV, with clear errors."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise InputError(
            f"{path} is not UTF-8 (byte 0x{raw[error.start]:02x} on line {line}); "
            "re-save it as UTF-8"
        ) from error
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        lines = [(reader.line_num, fields) for fields in reader]
    except csv.Error as error:
        raise InputError(f"{path}: malformed CSV ({error})") from error
    lines = [(number, fields) for number, fields in lines if any(f.strip() for f in fields)]
    if not lines:
        raise InputError(f"{path} is empty: expected a header row and one row per image")
    header_line, header = lines[0]
    header = [name.strip() for name in header]
    if any(not name for name in header):
        raise InputError(f"{path} line {header_line}: the header has an empty column name")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise InputError(f"{path}: column {duplicates[0]!r} appears twice in the header")
    rows = []
    for number, fields in lines[1:]:
        if len(fields) != len(header):
            raise InputError(
                f"{path} row {number}: {len(fields)} fields, but the header has {len(header)}"
            )
        rows.append((number, [value.strip() for value in fields]))
    if not rows:
        raise InputError(f"{path} has a header but no rows")
    return header, rows


def _path_column(header: list[str], source: Path) -> str:
    for name in PATH_COLUMNS:
        if name in header:
            return name
    raise InputError(
        f"{source} has no 'path' column (alias 'file') naming each image; columns: "
        f"{', '.join(header)}"
    )


def table_from_csv(
    layout: str, root: Path, source: Path, *, extra_columns: dict[str, list[str]] | None = None
) -> RawTable:
    """A layout's rows from a CSV with a header; unknown columns kept as attributes."""
    header, rows = read_csv_rows(source)
    path_column = _path_column(header, source)
    index = header.index(path_column)
    attributes = [name for name in header if name not in (path_column, SPLIT_COLUMN)]
    columns = {name: [fields[header.index(name)] for _, fields in rows] for name in attributes}
    splits = None
    if SPLIT_COLUMN in header:
        split_index = header.index(SPLIT_COLUMN)
        splits = [fields[split_index] for _, fields in rows]
    paths = [fields[index] for _, fields in rows]
    for position, (number, _) in enumerate(rows):
        if not paths[position]:
            raise InputError(f"{source.name} row {number}: empty {path_column!r}")
    if extra_columns:
        columns.update(extra_columns)
    return RawTable(
        layout=layout,
        root=root,
        paths=paths,
        columns=columns,
        sources=[source],
        row_source=[0] * len(rows),
        row_number=[number for number, _ in rows],
        splits=splits,
    )


def concatenate(parts: list[RawTable]) -> RawTable:
    """Rows of several sources with the same columns, as one table."""
    first = parts[0]
    for part in parts[1:]:
        if set(part.columns) != set(first.columns):
            raise InputError(
                f"{part.sources[0]} has columns {', '.join(sorted(part.columns))}, but "
                f"{first.sources[0].name} has {', '.join(sorted(first.columns))}"
            )
    table = RawTable(
        layout=first.layout, root=first.root, paths=[], sources=[], row_source=[], row_number=[],
        columns={name: [] for name in first.columns}, splits=[],
    )  # fmt: skip
    for part in parts:
        offset = len(table.sources)
        table.sources.extend(part.sources)
        table.paths.extend(part.paths)
        table.row_source.extend(offset + source for source in part.row_source)
        table.row_number.extend(part.row_number)
        table.splits.extend(part.splits or [])
        for name, values in part.columns.items():
            table.columns[name].extend(values)
    return table


def image_root(root: Path, first_path: str) -> Path:
    """The folder the listed paths are relative to: DATA itself, or the one subfolder the images
    were unpacked into (``fairface-img-margin025-trainval/train/1.jpg``)."""
    for candidate in self_and_subfolders(root):
        if (candidate / first_path).is_file():
            return candidate
    return root  # missing images are reported per row by the data stage


def self_and_subfolders(root: Path) -> list[Path]:
    """``root`` and its subfolders, sorted."""
    return [root, *sorted(entry for entry in root.iterdir() if entry.is_dir())]


def first_file(root: Path, stem: str) -> Path | None:
    """``root/stem.txt`` or ``root/stem.csv``, whichever exists first."""
    for suffix in (".txt", ".csv"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    return None


def text_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines of a UTF-8 text file."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 text") from error
    numbered = enumerate(text.splitlines(), start=1)
    return [(number, line) for number, line in numbered if line.strip()]


@contextlib.contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """Python's garbage collector off inside the block (reading large tables)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def is_image_name(name: str) -> bool:
    """Whether a file name has an image suffix (hidden files are not images)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith(".")

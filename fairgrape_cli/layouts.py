"""Readers for the on-disk dataset layouts; each turns a folder into a :class:`RawTable`.

Layouts are tried in the order of ``LAYOUTS``; a reader returns ``None`` when the folder is not
its layout and raises :class:`InputError` when it is but something in it is wrong.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SPLIT_COLUMN = "split"
PATH_COLUMNS = ("path", "file")
IMAGEFOLDER_TARGET = "label"


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

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, row: int) -> str:
        source = self.sources[self.row_source[row]]
        number = self.row_number[row]
        return f"{source.name} row {number}" if number else str(source)


LayoutReader = Callable[[Path, "Path | None"], "RawTable | None"]


def read_layout(root: Path, labels: Path | None = None) -> RawTable:
    """Detect the layout of ``root`` (or read ``labels``) and return its rows."""
    if not root.exists():
        raise InputError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"data {root} is not a folder")
    if labels is not None:
        return read_manifest(root, labels)
    for reader in LAYOUTS:
        table = reader(root, None)
        if table is not None:
            return table
    raise InputError(
        f"{root} is not a recognised dataset: expected labels.csv (manifest), class folders with "
        "groups.csv (ImageFolder), or FairFace, UTKFace or CelebA as downloaded"
    )


# ------------------------------------------------------------------------------------- CSV input


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


def _table_from_csv(
    layout: str, root: Path, source: Path, *, extra_columns: dict[str, list[str]] | None = None
) -> RawTable:
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


# ---------------------------------------------------------------------------------------- layouts


def read_manifest(root: Path, labels: Path | None = None) -> RawTable | None:
    """``DATA/labels.csv`` (or ``--labels FILE``): a path column and attribute columns."""
    source = labels if labels is not None else root / "labels.csv"
    if labels is None and not source.is_file():
        return None
    if not source.is_file():
        raise InputError(f"labels file {source} does not exist")
    return _table_from_csv("manifest", root, source)


def read_imagefolder(root: Path, _labels: Path | None = None) -> RawTable | None:
    """``DATA/<class>/<image>`` with ``DATA/groups.csv`` giving attributes per image path."""
    groups_csv = root / "groups.csv"
    if not groups_csv.is_file():
        return None
    class_dirs = sorted(child for child in root.iterdir() if child.is_dir())
    if not class_dirs:
        raise InputError(f"{root} has groups.csv but no class folders (DATA/<class>/<image>)")
    class_of_file: dict[str, str] = {}
    for class_dir in class_dirs:
        for image in sorted(class_dir.rglob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                class_of_file[image.relative_to(root).as_posix()] = class_dir.name
    table = _table_from_csv("imagefolder", root, groups_csv)
    if IMAGEFOLDER_TARGET in table.columns:
        raise InputError(
            f"{groups_csv} has a {IMAGEFOLDER_TARGET!r} column, but in the ImageFolder layout the "
            "class is the folder name; rename the column"
        )
    labels = []
    for position, relative in enumerate(table.paths):
        normalised = Path(relative).as_posix()
        if normalised not in class_of_file:
            raise InputError(
                f"{table.where(position)}: {relative} is not an image inside a class folder of "
                f"{root}"
            )
        labels.append(class_of_file[normalised])
    listed = {Path(path).as_posix() for path in table.paths}
    unlisted = sorted(set(class_of_file) - listed)
    if unlisted:
        table.notes.append(
            f"{len(unlisted)} image(s) in class folders are not in groups.csv and are left out "
            f"(first: {unlisted[0]})"
        )
    table.columns[IMAGEFOLDER_TARGET] = labels
    table.default_target = IMAGEFOLDER_TARGET
    return table


# Detection order follows DESIGN.md: manifest, ImageFolder, then the public datasets as downloaded.
LAYOUTS: list[LayoutReader] = [read_manifest, read_imagefolder]

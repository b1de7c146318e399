"""Readers for the on-disk dataset layouts; each turns a folder into a :class:`RawTable`.

Layouts are tried in the order of ``LAYOUTS``; a reader returns ``None`` when the folder is not
its layout and raises :class:`InputError` when it is but something in it is wrong.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import os
import re
from collections.abc import Callable, Iterator
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
        if number:
            return f"{source.name} row {number}"
        return self.paths[row]  # the file name itself carries the attributes (UTKFace)


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


# ------------------------------------------------------------------ public datasets as downloaded

FAIRFACE_LABEL_FILES = (("train", "fairface_label_train.csv"), ("val", "fairface_label_val.csv"))
FAIRFACE_ATTRIBUTES = ("age", "gender", "race")  # service_test, when present, is kept too


def read_fairface(root: Path, _labels: Path | None = None) -> RawTable | None:
    """FairFace: ``fairface_label_{train,val}.csv`` (``file,age,gender,race,service_test``, file
    like ``train/1.jpg``) beside the ``train/`` and ``val/`` folders; the split is the file's."""
    present = [(split, root / name) for split, name in FAIRFACE_LABEL_FILES]
    present = [(split, source) for split, source in present if source.is_file()]
    if not present:
        return None
    parts = []
    for split, source in present:
        part = _table_from_csv("fairface", root, source)  # refuses a file without a path column
        missing = [name for name in FAIRFACE_ATTRIBUTES if name not in part.columns]
        if missing:
            raise InputError(
                f"{source} is not a FairFace label file: it has no column(s) {', '.join(missing)} "
                "(expected file,age,gender,race,service_test)"
            )
        part.splits = [split] * len(part)
        parts.append(part)
    table = _concatenate(parts)
    table.root = _image_root(root, table.paths[0])
    table.default_target = "gender"
    return table


UTKFACE_NAME = re.compile(r"(?P<age>\d+)_(?P<gender>\d+)_(?P<race>\d+)_\d+[^_]*")  # then .jpg...
UTKFACE_VALUES = {
    "gender": {"0": "Male", "1": "Female"},
    "race": {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"},
}
_DETECTION_SAMPLE = 32  # image names looked at per folder to recognise UTKFace


def read_utkface(root: Path, _labels: Path | None = None) -> RawTable | None:
    """UTKFace: ``{age}_{gender}_{race}_{date&time}.jpg.chip.jpg`` in DATA or its subfolders
    (``UTKFace/``, ``crop_part1/``, ``part1/`` ...); names lacking a field are skipped, counted."""
    folders = [folder for folder in _self_and_subfolders(root) if _looks_like_utkface(folder)]
    if not folders:
        return None
    paths: list[str] = []
    columns: dict[str, list[str]] = {"age": [], "gender": [], "race": []}
    malformed: list[str] = []
    for folder in folders:
        names = sorted(entry.name for entry in os.scandir(folder) if _is_image_name(entry.name))
        for name in names:
            relative = (folder / name).relative_to(root).as_posix()
            fields = _utkface_fields(name)
            if fields is None:
                malformed.append(relative)
                continue
            paths.append(relative)
            for column, value in fields.items():
                columns[column].append(value)
    if not paths:
        raise InputError(f"{root}: no UTKFace image name has the form age_gender_race_date.jpg")
    table = RawTable(
        layout="utkface", root=root, paths=paths, columns=columns,
        sources=[folders[0]], row_source=[0] * len(paths), row_number=[0] * len(paths),
        value_names={column: dict(names) for column, names in UTKFACE_VALUES.items()},
        default_target="gender",
    )  # fmt: skip
    if len(folders) > 1:
        table.notes.append(f"UTKFace images read from {', '.join(f.name for f in folders)}")
    if malformed:
        table.notes.append(
            f"skipped {len(malformed)} UTKFace image(s) whose names lack a field or have an "
            f"unknown code (age_gender_race_date expected): {', '.join(malformed[:3])}"
            + (" ..." if len(malformed) > 3 else "")
        )
    return table


def _utkface_fields(name: str) -> dict[str, str] | None:
    match = UTKFACE_NAME.fullmatch(name)
    if match is None:
        return None
    fields = {column: str(int(match[column])) for column in ("age", "gender", "race")}
    if any(fields[column] not in codes for column, codes in UTKFACE_VALUES.items()):
        return None
    return fields


def _looks_like_utkface(folder: Path) -> bool:
    """Most of the first image names in ``folder`` follow the UTKFace pattern."""
    names = []
    for entry in os.scandir(folder):
        if _is_image_name(entry.name):
            names.append(entry.name)
            if len(names) == _DETECTION_SAMPLE:
                break
    matching = sum(_utkface_fields(name) is not None for name in names)
    return matching > 0 and matching * 2 > len(names)


CELEBA_ATTRIBUTES = "list_attr_celeba"
CELEBA_PARTITION = "list_eval_partition"
CELEBA_SPLITS = {"0": "train", "1": "val", "2": "test"}
CELEBA_IMAGES = "img_align_celeba"
CELEBA_FLAGS = {"-1": "0", "1": "1", "0": "0"}  # -1/1 as 0/1 (some copies already use 0/1)


def read_celeba(root: Path, _labels: Path | None = None) -> RawTable | None:
    """CelebA: ``list_attr_celeba.txt`` (count line, 40 attribute names, ``name v1..v40`` of -1/1),
    ``list_eval_partition.txt`` (``name 0|1|2`` = train/val/test), images in ``img_align_celeba/``.
    The Kaggle copy (``.csv`` files, ``img_align_celeba/img_align_celeba/``) is read too."""
    attributes = _first_file(root, CELEBA_ATTRIBUTES)
    if attributes is None:
        return None
    with _garbage_collection_paused():  # millions of small strings: the collector would rescan them
        return _celeba_table(root, attributes)


def _celeba_table(root: Path, attributes: Path) -> RawTable:
    names, columns, line_numbers, notes = _celeba_attributes(attributes)
    position: dict[str, int] = {}
    for row, name in enumerate(names):
        if name in position:
            raise InputError(
                f"{attributes} line {line_numbers[row]}: image {name} is listed twice (also line "
                f"{line_numbers[position[name]]})"
            )
        position[name] = row
    table = RawTable(
        layout="celeba", root=_celeba_image_root(root, names[0]), paths=names, columns=columns,
        sources=[attributes], row_source=[0] * len(names), row_number=line_numbers, notes=notes,
    )  # fmt: skip
    partition = _first_file(root, CELEBA_PARTITION)
    if partition is not None:
        table.splits = _celeba_splits(partition, position)
    return table


def _celeba_attributes(path: Path) -> tuple[list[str], dict[str, list[str]], list[int], list[str]]:
    """Image names, 0/1 attribute columns, line numbers and notes of the attribute file."""
    notes = []
    if path.suffix == ".csv":
        header, rows = read_csv_rows(path)
        attribute_names = header[1:]
    else:
        lines = _text_lines(path)
        if len(lines) < 2:
            raise InputError(f"{path}: expected a count line and a line of attribute names")
        (count_line, count), (_, header_text) = lines[0], lines[1]
        if not count.strip().isdigit():
            raise InputError(
                f"{path} line {count_line}: expected the image count, found {count[:40]!r}"
            )
        attribute_names = header_text.split()
        rows = [(number, text.split()) for number, text in lines[2:]]
        if int(count) != len(rows):  # a trimmed copy is fine: use the rows it lists
            notes.append(f"{path.name} says {count.strip()} images on line 1 but lists {len(rows)}")
    duplicates = sorted({name for name in attribute_names if attribute_names.count(name) > 1})
    if duplicates:
        raise InputError(f"{path}: attribute {duplicates[0]!r} appears twice")
    if not rows:
        raise InputError(f"{path} lists no images")
    for number, fields in rows:
        if len(fields) != len(attribute_names) + 1:
            raise InputError(
                f"{path} line {number}: {len(fields)} fields, expected the image name and "
                f"{len(attribute_names)} attribute values"
            )
    numbers = [number for number, _ in rows]
    image_names, *attribute_values = zip(*(fields for _, fields in rows))  # column-wise is fast
    columns = {}
    for name, values in zip(attribute_names, attribute_values):
        if not CELEBA_FLAGS.keys() >= set(values):
            row = next(i for i, value in enumerate(values) if value not in CELEBA_FLAGS)
            raise InputError(
                f"{path} line {numbers[row]}: {name} is {values[row]!r}, expected -1 or 1"
            )
        columns[name] = list(map(CELEBA_FLAGS.__getitem__, values))
    return list(image_names), columns, numbers, notes


def _celeba_splits(path: Path, position: dict[str, int]) -> list[str]:
    if path.suffix == ".csv":
        _, rows = read_csv_rows(path)
    else:
        rows = [(number, text.split()) for number, text in _text_lines(path)]
    splits: list[str | None] = [None] * len(position)
    for number, fields in rows:
        if len(fields) != 2 or fields[1] not in CELEBA_SPLITS:
            raise InputError(f"{path} line {number}: expected 'image 0|1|2' (train/val/test)")
        row = position.get(fields[0])
        if row is not None:  # a partition of the full set also serves a subset of the attributes
            splits[row] = CELEBA_SPLITS[fields[1]]
    missing = [name for name, row in position.items() if splits[row] is None]
    if missing:
        raise InputError(
            f"{path} has no split for {missing[0]} ({len(missing)} image(s) of the attribute file "
            "missing)"
        )
    return splits  # type: ignore[return-value]


def _celeba_image_root(root: Path, first_image: str) -> Path:
    """``img_align_celeba/``, or the Kaggle copy's ``img_align_celeba/img_align_celeba/``."""
    images = root / CELEBA_IMAGES
    for candidate in (images, images / CELEBA_IMAGES):
        if (candidate / first_image).is_file():
            return candidate
    return images  # missing images are reported per row by the data stage


# --------------------------------------------------------------------------------------- helpers


def _concatenate(parts: list[RawTable]) -> RawTable:
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


def _image_root(root: Path, first_path: str) -> Path:
    """The folder the listed paths are relative to: DATA itself, or the one subfolder the images
    were unpacked into (``fairface-img-margin025-trainval/train/1.jpg``)."""
    for candidate in _self_and_subfolders(root):
        if (candidate / first_path).is_file():
            return candidate
    return root  # missing images are reported per row by the data stage


def _self_and_subfolders(root: Path) -> list[Path]:
    return [root, *sorted(entry for entry in root.iterdir() if entry.is_dir())]


def _first_file(root: Path, stem: str) -> Path | None:
    for suffix in (".txt", ".csv"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    return None


def _text_lines(path: Path) -> list[tuple[int, str]]:
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
def _garbage_collection_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith(".")


# Detection order follows DESIGN.md: manifest, ImageFolder, then the public datasets as downloaded
# (each recognised by its own label files or file names, so their order among themselves is free).
LAYOUTS: list[LayoutReader] = [
    read_manifest, read_imagefolder, read_fairface, read_utkface, read_celeba,
]  # fmt: skip

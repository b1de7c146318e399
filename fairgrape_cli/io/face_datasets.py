"""Public face datasets as downloaded: FairFace, UTKFace and CelebA, each recognised by its own
label files or file names and read into a :class:`RawTable`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError
from .tables import (
    RawTable,
    concatenate,
    first_file,
    garbage_collection_paused,
    image_root,
    is_image_name,
    read_csv_rows,
    self_and_subfolders,
    table_from_csv,
    text_lines,
)

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
        part = table_from_csv("fairface", root, source)  # refuses a file without a path column
        missing = [name for name in FAIRFACE_ATTRIBUTES if name not in part.columns]
        if missing:
            raise InputError(
                f"{source} is not a FairFace label file: it has no column(s) {', '.join(missing)} "
                "(expected file,age,gender,race,service_test)"
            )
        part.splits = [split] * len(part)
        parts.append(part)
    table = concatenate(parts)
    table.root = image_root(root, table.paths[0])
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
    folders = [folder for folder in self_and_subfolders(root) if _looks_like_utkface(folder)]
    if not folders:
        return None
    paths: list[str] = []
    columns: dict[str, list[str]] = {"age": [], "gender": [], "race": []}
    malformed: list[str] = []
    for folder in folders:
        names = sorted(entry.name for entry in os.scandir(folder) if is_image_name(entry.name))
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
        table.warnings.append(
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
        if is_image_name(entry.name):
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
    attributes = first_file(root, CELEBA_ATTRIBUTES)
    if attributes is None:
        return None
    with garbage_collection_paused():  # millions of small strings: the collector would rescan them
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
    partition = first_file(root, CELEBA_PARTITION)
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
        lines = text_lines(path)
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
        rows = [(number, text.split()) for number, text in text_lines(path)]
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

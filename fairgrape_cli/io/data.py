"""Group-labelled image datasets: choose the split, target and groups of a layout's rows; map
classes to indices. Images are read by ``images``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .layouts import read_layout
from .tables import RawTable

DEFAULT_TARGET = "label"
DEFAULT_IMAGE_SIZE = 224
GROUP_SEPARATOR = "/"
ALL_TARGETS = "all"  # --target all: every attribute column but the group columns
BINARY_VALUES = {"0": 0.0, "1": 1.0, "-1": 0.0}  # CelebA writes absent as -1
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class DataSpec:
    """Where the data is and which columns and split to use (the shared data flags).

    ``root`` is ``None`` only while a stage still has to take it from an artifact's record.
    """

    root: Path | None
    target: str | None = None  # a class column; "A,B,C" or "all" for several binary attributes
    groups: str | None = None  # "race" or "race,gender" for intersectional groups
    split: str | None = None
    labels: Path | None = None
    skip_bad_images: bool = False
    min_group_size: int = 1

    @property
    def group_columns(self) -> list[str]:
        """The group columns ``groups`` names."""
        if not self.groups:
            return []
        return [name.strip() for name in self.groups.split(",") if name.strip()]


@dataclass
class GroupedTable:
    """The rows of one split, each with a target value (or several binary attributes) and a group."""

    layout: str
    root: Path
    target: str  # the target column, or the attribute columns joined by commas
    attribute: str
    split: str | None
    files: list[Path]
    locations: list[str]  # "labels.csv row 7", for messages
    target_values: list[str]  # each row's class value (a single target only)
    group_index: np.ndarray  # int64 per row, index into group_names
    group_names: list[str]
    dataset_target_values: list[str]  # distinct target values over all splits, sorted
    target_names: dict[str, str] = field(default_factory=dict)  # code -> readable (UTKFace gender)
    attributes: list[str] | None = None  # several binary attributes: their columns, in order
    attribute_values: np.ndarray | None = None  # float32 [rows, attributes] of 0/1
    dropped_groups: dict[str, int] = field(default_factory=dict)  # too small to use
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows left out
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # rows or images left out, and why

    def __len__(self) -> int:
        return len(self.files)

    @property
    def multi_label(self) -> bool:
        """Whether the targets are several binary attributes."""
        return self.attributes is not None

    def group_counts(self) -> list[int]:
        """Rows per group."""
        return np.bincount(self.group_index, minlength=len(self.group_names)).tolist()


def load_table(
    spec: DataSpec, *, default_split: Sequence[str] = (), multi_label: bool | None = None
) -> GroupedTable:
    """Read ``spec.root`` and select the split, target and groups it asks for.

    ``default_split`` lists the splits to try, in order, when ``spec.split`` is not given and the
    data has a split column (``("train",)`` for scoring, ``("test", "val")`` for the report); with
    none of them present every row is used. Several target columns (``A,B,C``, or ``all``: every
    column but the groups) are binary attributes of one multi-label head; ``multi_label=True``
    reads even one column so (a model that records its attributes).
    """
    if spec.root is None:
        raise InputError("pass DATA: the image folder")
    raw = read_layout(spec.root, spec.labels)
    group_columns = spec.group_columns
    targets = _target_columns(raw, spec.target, group_columns)
    _require_columns(raw, targets, "--target", target_flag=True)
    _require_columns(raw, group_columns, "--groups")
    # target and group may be the same column: per-class fairness (the paper's FairFace race setting)
    multi_label = len(targets) > 1 if multi_label is None else multi_label
    target = targets[0]

    rows, split = _select_split(raw, spec.split, default_split)
    if multi_label:
        dataset_targets, target_values = [], []
        attribute_values = _binary_values(raw, targets, rows)
    else:
        dataset_targets = _sorted_distinct(v for v in raw.columns[target] if v)
        target_values = _values(raw, target, rows, readable=False)  # codes: what models were trained on
        attribute_values = None
    per_column = [_values(raw, column, rows) for column in group_columns]
    files = [raw.root / raw.paths[row] for row in rows]
    locations = [raw.where(row) for row in rows]
    _refuse_duplicates(raw, rows)

    skipped: dict[str, int] = {}
    keep = _existing_files(files, locations, spec.skip_bad_images, skipped)
    if keep is not None:
        rows = [rows[i] for i in keep]
        files, locations = ([seq[i] for i in keep] for seq in (files, locations))
        target_values = [target_values[i] for i in keep] if target_values else []
        attribute_values = attribute_values[keep] if attribute_values is not None else None
        per_column = [[values[i] for i in keep] for values in per_column]

    if group_columns:
        group_names, group_index = _group_codes(raw, group_columns, per_column)
    else:
        group_names, group_index = ["all"], np.zeros(len(rows), dtype=np.int64)
    table = GroupedTable(
        layout=raw.layout,
        root=raw.root,
        target=",".join(targets),
        attribute=",".join(group_columns),
        split=split,
        files=files,
        locations=locations,
        target_values=target_values,
        group_index=group_index,
        group_names=group_names,
        dataset_target_values=dataset_targets,
        target_names={} if multi_label else dict(raw.value_names.get(target, {})),
        attributes=targets if multi_label else None,
        attribute_values=attribute_values,
        skipped=skipped,
        notes=list(raw.notes),
        warnings=list(raw.warnings),
    )
    if spec.min_group_size > 1:
        table = _drop_small_groups(table, spec.min_group_size)
    if len(table) == 0:
        raise InputError(f"{spec.root}: no images left to use in split {split or 'all'}")
    return table


def _target_columns(raw: RawTable, target: str | None, group_columns: list[str]) -> list[str]:
    """The target column(s) ``--target`` names: one, ``A,B,C``, or ``all`` (every column but the
    groups, unless the data has a column called ``all``)."""
    if not target:
        return [raw.default_target or DEFAULT_TARGET]
    if target == ALL_TARGETS and ALL_TARGETS not in raw.columns:
        columns = [name for name in raw.columns if name not in group_columns]
        if not columns:
            raise InputError(f"--target {ALL_TARGETS}: {raw.sources[0].name} has no column besides the groups")
        return columns
    columns = [name.strip() for name in target.split(",") if name.strip()]
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if not columns or repeated:
        raise InputError(f"--target {target}: name each column once, e.g. label or Smiling,Young")
    return columns


def _binary_values(raw: RawTable, columns: list[str], rows: list[int]) -> np.ndarray:
    """``[rows, columns]`` float32 0/1 of binary attribute columns (0/1, or -1/1 as CelebA)."""
    values = np.empty((len(rows), len(columns)), dtype=np.float32)
    for position, column in enumerate(columns):
        cells = raw.columns[column]
        try:
            values[:, position] = [BINARY_VALUES[cells[row]] for row in rows]
        except KeyError:
            row = next(row for row in rows if cells[row] not in BINARY_VALUES)
            raise InputError(
                f"{raw.where(row)}: {column} is {cells[row]!r}, but several targets must be binary "
                "attributes (0/1 or -1/1); name a class column alone for a single-label model"
            ) from None
    return values


def require_groups(spec: DataSpec, purpose: str) -> None:
    """Refuse a missing ``--groups``, naming the columns it can be (read from the data, if it can be)."""
    if spec.group_columns:
        return
    columns = ""
    if spec.root is not None:
        try:
            raw = read_layout(spec.root, spec.labels)
        except InputError:  # the data's own problem is reported once groups are given
            raw = None
        if raw is not None and raw.columns:
            targets = set((spec.target or raw.default_target or DEFAULT_TARGET).split(","))
            candidates = [name for name in sorted(raw.columns) if name not in targets] or sorted(raw.columns)
            columns = (
                f"; {raw.sources[0].name} has columns {', '.join(sorted(raw.columns))} "
                f"(e.g. --groups {candidates[0]})"
            )
    raise InputError(f"--groups is required: {purpose}{columns}")


def _require_columns(raw: RawTable, names: list[str], flag: str, target_flag: bool = False) -> None:
    available = sorted(raw.columns)
    for name in names:
        if name not in raw.columns:
            hint = " (the class label column)" if target_flag else ""
            raise InputError(
                f"{flag} {name}: {raw.sources[0].name} has no column {name!r}{hint}; "
                f"columns: {', '.join(available)}"
            )


def _select_split(
    raw: RawTable, split: str | None, defaults: Sequence[str]
) -> tuple[list[int], str | None]:
    everything = list(range(len(raw)))
    if raw.splits is None:
        if split is not None:
            raise InputError(
                f"--split {split}: {raw.sources[0].name} has no 'split' column, so there is only "
                "one set of rows; leave --split out"
            )
        return everything, None
    present = sorted(set(raw.splits))
    if split is None:
        split = next((name for name in defaults if name in present), None)
        if split is None:
            return everything, None
    rows = [row for row, name in enumerate(raw.splits) if name == split]
    if not rows:
        raise InputError(
            f"--split {split}: no rows in that split; the data has {', '.join(present)}"
        )
    return rows, split


def _values(raw: RawTable, column: str, rows: list[int], *, readable: bool = True) -> list[str]:
    values = raw.columns[column]
    names = raw.value_names.get(column, {}) if readable else {}
    selected = []
    for row in rows:
        value = values[row]
        if value == "":
            raise InputError(f"{raw.where(row)}: empty value in column {column!r}")
        selected.append(names.get(value, value))
    return selected


def _refuse_duplicates(raw: RawTable, rows: list[int]) -> None:
    first_seen: dict[str, int] = {}
    for row in rows:
        key = os.path.normpath(raw.paths[row])
        if key in first_seen:
            raise InputError(
                f"{raw.where(row)}: {raw.paths[row]} is listed twice (also "
                f"{raw.where(first_seen[key])}); each image must appear once"
            )
        first_seen[key] = row


def _existing_files(
    files: list[Path], locations: list[str], skip_bad: bool, skipped: dict[str, int]
) -> list[int] | None:
    """Indices of rows whose image exists; ``None`` when all do."""
    missing = [i for i, path in enumerate(files) if not path.is_file()]
    if not missing:
        return None
    if not skip_bad:
        first = missing[0]
        more = f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise InputError(
            f"{locations[first]}: image {files[first]} does not exist{more}; "
            "pass --skip-bad-images to leave such rows out"
        )
    skipped["missing image"] = len(missing)
    missing_set = set(missing)
    return [i for i in range(len(files)) if i not in missing_set]


def sort_key(values: Sequence[str]):
    """Numbers sort as numbers (``2`` before ``10``), everything else as text."""
    if values and all(_INTEGER.fullmatch(value) for value in values):
        return int
    return str


def _sorted_distinct(values) -> list[str]:
    distinct = list(dict.fromkeys(values))
    return sorted(distinct, key=sort_key(distinct))


def _group_codes(
    raw: RawTable, columns: list[str], per_column: list[list[str]]
) -> tuple[list[str], np.ndarray]:
    combos = list(zip(*per_column))
    distinct = list(dict.fromkeys(combos))
    keys = []
    for position, column in enumerate(columns):
        column_values = [combo[position] for combo in distinct]
        keys.append(_column_order(raw, column, column_values))
    distinct.sort(key=lambda combo: tuple(key(value) for key, value in zip(keys, combo)))
    code = {combo: index for index, combo in enumerate(distinct)}
    names = [GROUP_SEPARATOR.join(combo) for combo in distinct]
    return names, np.fromiter((code[c] for c in combos), dtype=np.int64, count=len(combos))


def _column_order(raw: RawTable, column: str, values: list[str]):
    """Readable names of coded values keep the dataset's code order (UTKFace race 0..4)."""
    names = raw.value_names.get(column)
    if names:
        position = {name: index for index, name in enumerate(names.values())}
        fallback = sort_key(values)
        return lambda value: (position.get(value, len(position)), fallback(value))
    return sort_key(values)


def _drop_small_groups(table: GroupedTable, min_size: int) -> GroupedTable:
    counts = table.group_counts()
    small = {i for i, count in enumerate(counts) if count < min_size}
    if not small:
        return table
    keep_rows = np.flatnonzero(~np.isin(table.group_index, list(small)))
    kept_groups = [i for i in range(len(counts)) if i not in small]
    renumber = np.full(len(counts), -1, dtype=np.int64)
    renumber[kept_groups] = np.arange(len(kept_groups))
    table.dropped_groups = {table.group_names[i]: counts[i] for i in sorted(small)}
    table.files = [table.files[i] for i in keep_rows]
    table.locations = [table.locations[i] for i in keep_rows]
    table.target_values = [table.target_values[i] for i in keep_rows] if table.target_values else []
    if table.attribute_values is not None:
        table.attribute_values = table.attribute_values[keep_rows]
    table.group_index = renumber[table.group_index[keep_rows]]
    table.group_names = [table.group_names[i] for i in kept_groups]
    if not table.group_names:
        raise InputError(
            f"--min-group-size {min_size}: every group is smaller than that "
            f"({', '.join(f'{g}: {n}' for g, n in table.dropped_groups.items())})"
        )
    return table


# ---------------------------------------------------------------------------------------- classes


def resolve_classes(
    table: GroupedTable, *, num_classes: int, checkpoint_classes: list[str] | None, model_name: str
) -> tuple[list[str], torch.Tensor]:
    """Class names for the model and each row's class index; refuse data that cannot fit.

    With ``classes`` in the checkpoint they decide the order. Otherwise the classes are the sorted
    distinct target values of the whole dataset (numbers in numeric order); integer labels that
    all lie in ``[0, num_classes)`` are taken as the class indices they already are. For several
    binary attributes the names are the attributes (a model's own order, given as
    ``checkpoint_classes``, wins) and the targets ``[rows, attributes]`` of 0/1.
    """
    if table.multi_label:
        return _resolve_attributes(table, num_outputs=num_classes, model_attributes=checkpoint_classes,
                                   model_name=model_name)  # fmt: skip
    values = table.dataset_target_values
    if checkpoint_classes is not None:
        index = {name: i for i, name in enumerate(checkpoint_classes)}
        for code, name in table.target_names.items():  # classes named readably, data in codes
            if code not in index and name in index:
                index[code] = index[name]
        unknown = [value for value in values if value not in index]
        if unknown:
            raise InputError(
                f"{model_name} knows the classes {', '.join(checkpoint_classes[:8])}, but column "
                f"{table.target!r} also has {', '.join(unknown[:5])}"
            )
        classes = list(checkpoint_classes)
    elif values and all(_INTEGER.fullmatch(v) and 0 <= int(v) < num_classes for v in values):
        classes = [table.target_names.get(str(i), str(i)) for i in range(num_classes)]
        index = {value: int(value) for value in values}  # "01" means class 1 too
    else:
        if len(values) != num_classes:
            shown = ", ".join(values[:8]) + (" ..." if len(values) > 8 else "")
            raise InputError(
                f"{model_name} predicts {num_classes} classes, but column {table.target!r} has "
                f"{len(values)} ({shown})"
            )
        classes = list(values)
        index = {name: i for i, name in enumerate(classes)}
    targets = torch.tensor([index[value] for value in table.target_values], dtype=torch.long)
    return classes, targets


def _resolve_attributes(
    table: GroupedTable, *, num_outputs: int, model_attributes: list[str] | None, model_name: str
) -> tuple[list[str], torch.Tensor]:
    attributes = list(table.attributes)
    values = torch.from_numpy(table.attribute_values)
    if model_attributes is not None:
        if set(model_attributes) != set(attributes):
            missing = [name for name in model_attributes if name not in attributes][:4]
            extra = [name for name in attributes if name not in model_attributes][:4]
            raise InputError(
                f"{model_name} predicts the attributes {', '.join(model_attributes[:6])}"
                f"{' ...' if len(model_attributes) > 6 else ''}; --target "
                + (f"lacks {', '.join(missing)}" if missing else f"also names {', '.join(extra)}")
            )
        values = values[:, [attributes.index(name) for name in model_attributes]]  # the model's order
        attributes = list(model_attributes)
    if len(attributes) != num_outputs:
        raise InputError(
            f"{model_name} has {num_outputs} outputs, but --target names {len(attributes)} attributes "
            f"({', '.join(attributes[:6])}{' ...' if len(attributes) > 6 else ''}); one head output per attribute"
        )
    return attributes, values

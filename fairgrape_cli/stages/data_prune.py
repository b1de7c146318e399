"""The data-prune stage: fair per-class quotas (DRoP) -> a smaller training manifest and its plan.

Reads the query model and the data, measures the model's recall per class (or group, or
class x group cell) on the validation split, turns the recalls into keep quotas
(``method.data_pruning``), picks the rows, and writes a manifest in the manifest layout (the kept
training rows and every row of the other splits, same columns, image paths relative to DATA, so
it works as ``--labels`` for every command) plus a sidecar JSON with the plan and its provenance.
A comment line in the CSV would break the readers of other tools, hence the sidecar.

resolve (:func:`resolve_data_prune`) -> load (the model, the pool's units) -> compute (recalls,
scores, ``method.data_pruning``'s plan) -> write (manifest and plan, both or neither).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import NoProgress, ProgressSink
from ..devices import resolve_device
from ..errors import InputError
from ..io.data import DataSpec
from ..io.files import all_or_none, record_path, refuse_overwriting_inputs, sha256_file, write_text_atomically
from ..io.images import Normalizer
from ..io.layouts import read_layout
from ..io.tables import RawTable, read_csv_rows
from ..method.batches import sequential_batches
from ._inputs import Loading, ModelSource, PreparedData, image_loader, prepare_data

PLAN_FORMAT = "fairgrape.data_plan.v1"
PRUNED_SUFFIX = "-pruned"
BY = ("target", "group", "both")  # the units that get quotas: classes, groups, class x group cells
_UNIT_WORD = {"target": "class", "group": "group", "both": "cell"}


@dataclass
class DataPruneSummary:
    """What :func:`data_prune` wrote: the manifest, its plan file and the plan."""

    output: Path  # the pruned manifest
    plan_file: Path  # its sidecar: the plan and where it came from
    plan: dict
    skipped_images: int = 0
    seconds: float = 0.0


def default_output(data: DataSpec) -> Path:
    """DATA's manifest name with ``-pruned`` before the suffix (``data/labels-pruned.csv``)."""
    manifest = data.labels if data.labels is not None else Path(data.root) / "labels.csv"
    return manifest.with_name(f"{manifest.stem}{PRUNED_SUFFIX}{manifest.suffix or '.csv'}")


def plan_path(output: Path) -> Path:
    """The sidecar of a pruned manifest: ``labels-pruned.csv`` -> ``labels-pruned.plan.json``."""
    return output.with_name(f"{output.stem}.plan.json")


@dataclass(frozen=True)
class DataPruneInputs:
    """Everything data-prune works on, checked: the rules chosen, the layout's rows read, the
    split pruned and the one recall is measured on (None: not measured); no model loaded."""

    model: ModelSource
    data: DataSpec
    keep: float
    by: str
    quota: Any  # method.data_pruning.QuotaRule
    within: Any  # method.data_pruning.WithinRule
    min_quota: float
    raw: RawTable
    pool_split: str | None
    val_split: str | None
    output: Path
    plan_file: Path
    json_output: Path | None
    loading: Loading
    seed: int


def resolve_data_prune(
    *,
    model: ModelSource,
    data: DataSpec,
    keep: float,
    by: str = "target",
    quota: str = "drop",
    within: str = "random",
    min_quota: float = 0.0,
    val_split: str | None = None,
    output: Path | None = None,
    json_output: Path | None = None,
    loading: Loading = Loading(),
    seed: int = 0,
) -> DataPruneInputs:
    """Check data-prune's flags, read the layout and choose the splits; the manifest defaults to
    :func:`default_output` (beside DATA's), its plan to :func:`plan_path`."""
    from ..method.data_pruning import QUOTAS, WITHIN, check_density

    check_density(keep, min_quota)
    if by not in BY:
        raise InputError(f"--by {by}: choose {', '.join(BY)}")
    rule, chooser = QUOTAS.choose(quota), WITHIN.choose(within)
    if by != "target" and not data.group_columns:
        raise InputError(f"--by {by}: pass --groups COL, the column(s) whose groups get quotas")
    if data.root is None:
        raise InputError("pass DATA: the image folder")
    raw = read_layout(data.root, data.labels)
    pool_split, val_name = _splits(raw, data.split, val_split, needs_recall=rule.needs_recall)
    output = Path(output) if output is not None else default_output(data)
    plan_file = plan_path(output)
    refuse_overwriting_inputs([output, plan_file, json_output], [model.path, *raw.sources])
    return DataPruneInputs(
        model, data, keep, by, rule, chooser, min_quota, raw, pool_split, val_name, output, plan_file,
        Path(json_output) if json_output is not None else None, loading, seed,
    )  # fmt: skip


@dataclass
class _Units:
    pool: PreparedData  # the rows of the split that is pruned
    keys: list  # the units, in order (classes, groups or class x group cells)
    of_row: np.ndarray  # each pool row's unit


def data_prune(
    *,
    model: ModelSource,
    data: DataSpec,
    keep: float,
    by: str = "target",
    quota: str = "drop",
    within: str = "random",
    min_quota: float = 0.0,
    val_split: str | None = None,
    output: Path | None = None,
    json_output: Path | None = None,
    loading: Loading = Loading(),
    seed: int = 0,
    progress: ProgressSink | None = None,
) -> DataPruneSummary:
    """Keep ``keep`` of the training rows with per-unit quotas from ``model``'s validation recall.

    ``by``: ``target`` (classes, DRoP's setting), ``group`` (``data.groups``) or ``both`` (class x
    group cells). ``quota`` and ``within`` name rules of ``method.data_pruning``; ``min_quota``
    is the share of every unit kept before the rule distributes the rest. Writes the
    manifest (``output``, default :func:`default_output`), its plan sidecar and ``json_output``.
    """
    from ..method.data_pruning import plan_data_pruning

    started = time.perf_counter()
    inputs = resolve_data_prune(
        model=model, data=data, keep=keep, by=by, quota=quota, within=within, min_quota=min_quota,
        val_split=val_split, output=output, json_output=json_output, loading=loading, seed=seed,
    )  # fmt: skip
    checkpoint = inputs.model.load()
    units = _units(inputs, checkpoint)
    recalls, val_rows, scores, skipped = _measure(inputs, checkpoint, units, progress or NoProgress())
    plan = plan_data_pruning(
        unit_of_row=units.of_row,
        unit_names=[_unit_name(units.pool, by, key) for key in units.keys],
        recalls=recalls,
        val_rows=val_rows,
        density=keep,
        quota=quota,
        within=within,
        min_quota=min_quota,
        scores=scores,
        seed=seed,
    )
    plan_record = _write(inputs, checkpoint, units, plan)
    return DataPruneSummary(inputs.output, inputs.plan_file, plan_record, skipped, time.perf_counter() - started)


def _units(inputs: DataPruneInputs, checkpoint) -> _Units:
    """The pool's rows and the unit (class, group or cell) of each; refuses a pool that cannot
    be pruned (several targets, nothing kept)."""
    from ..method.data_pruning import kept_total

    data = inputs.data
    pool = prepare_data(
        replace(data, split=inputs.pool_split), checkpoint, image_size=inputs.loading.image_size, default_split=(),
        image_size_from=inputs.loading.image_size_from,
    )
    if pool.targets.ndim != 1:
        raise InputError(f"--target {data.target}: data-prune needs one class column, not several")
    if kept_total(len(pool.table), inputs.keep) == 0:
        raise InputError(f"--keep {inputs.keep}: keeps no row of the {len(pool.table)} training rows; keep more")
    keys = _unit_keys(pool, inputs.by)
    units = sorted(set(keys), key=_unit_order(pool, inputs.by))
    position = {key: k for k, key in enumerate(units)}
    return _Units(pool, units, np.array([position[key] for key in keys], dtype=np.int64))


def _measure(inputs: DataPruneInputs, checkpoint, units: _Units, progress: ProgressSink):
    """Each unit's recall on the validation split (and its validation rows), the rows' EL2N
    scores when the within rule needs them, and the images skipped."""
    from ..method.data_pruning import el2n_scores

    device = resolve_device(inputs.loading.device)
    checkpoint.model.to(device)
    prepare = Normalizer(*checkpoint.normalization, device)
    pool, loading = units.pool, inputs.loading
    skipped = sum(pool.table.skipped.values())
    recalls: list[float | None] = [None] * len(units.keys)
    val_rows = [0] * len(units.keys)
    if inputs.val_split is not None:
        recalls, val_rows, bad = _recalls(inputs, checkpoint, units, prepare, device, progress)
        skipped += bad
    if inputs.quota.needs_recall:
        for k, key in enumerate(units.keys):
            if val_rows[k] == 0:
                raise InputError(
                    f"{_UNIT_WORD[inputs.by]} {_unit_name(pool, inputs.by, key)!r} has "
                    f"{int((units.of_row == k).sum())} training rows but no rows in --val-split "
                    f"{inputs.val_split}: its recall cannot be measured"
                )
    scores = None
    if inputs.within.needs_scores:
        loader = image_loader(pool, sequential_batches(len(pool.table), loading.batch_size), loading, inputs.data, device)
        task = progress.add_task(f"{inputs.within.name} scores", total=len(pool.table), unit="images")
        scores = el2n_scores(
            checkpoint.model, loader, prepare, pool.targets, len(pool.table),
            on_batch=lambda n: progress.advance(task, n),
        )  # fmt: skip
        skipped += loader.bad_images
    checkpoint.model.to("cpu")
    return recalls, val_rows, scores, skipped


def _recalls(inputs: DataPruneInputs, checkpoint, units: _Units, prepare, device, progress):
    """Each unit's recall and validation rows on the validation split, and its skipped images."""
    from ..method.data_pruning import unit_recalls
    from ..method.metrics import predict

    data, loading, name = inputs.data, inputs.loading, inputs.val_split
    val = prepare_data(
        replace(data, split=name, min_group_size=1), checkpoint,
        image_size=units.pool.image_size, default_split=(), classes=units.pool.classes, announce=False,
    )  # fmt: skip
    loader = image_loader(val, sequential_batches(len(val.table), loading.batch_size), loading, data, device)
    task = progress.add_task(f"recall on {name}", total=len(val.table), unit="images")
    outcomes = predict(
        [checkpoint.model], loader, [prepare], val.targets, on_batch=lambda n: progress.advance(task, n)
    )[0]
    position = {key: k for k, key in enumerate(units.keys)}
    val_units = np.array([position.get(key, -1) for key in _unit_keys(val, inputs.by)], dtype=np.int64)
    recalls, val_rows = unit_recalls(outcomes.right[:, 0], outcomes.scored, val_units, len(units.keys))
    return recalls, val_rows, sum(val.table.skipped.values()) + loader.bad_images


def _write(inputs: DataPruneInputs, checkpoint, units: _Units, plan) -> dict:
    """The manifest and its plan (and ``--json``), all or none; returns the plan as recorded."""
    raw, pool_split = inputs.raw, inputs.pool_split
    kept_raw = _raw_rows(raw, units.pool, pool_split)[plan.kept_rows]
    keep_raw = np.ones(len(raw), dtype=bool) if raw.splits is not None else np.zeros(len(raw), dtype=bool)
    if raw.splits is not None:
        keep_raw &= np.array([split != pool_split for split in raw.splits])
    keep_raw[kept_raw] = True
    text = _manifest_text(raw, keep_raw, inputs.data.root)
    hashes = {source: sha256_file(source) for source in raw.sources}
    plan_record = _plan_record(inputs, checkpoint, units, plan, text, hashes, inputs.plan_file)
    with all_or_none():  # the manifest and the plan that describes it, or neither (a full disk)
        write_text_atomically(inputs.output, text)
        write_text_atomically(inputs.plan_file, json.dumps(plan_record, indent=1) + "\n")
        if inputs.json_output is not None:
            again = _plan_record(inputs, checkpoint, units, plan, text, hashes, inputs.json_output)
            write_text_atomically(inputs.json_output, json.dumps(again, indent=1) + "\n")
    return plan_record


def _plan_record(inputs: DataPruneInputs, checkpoint, units: _Units, plan, text: str, hashes: dict, where: Path) -> dict:
    """The plan and where it came from, paths recorded relative to ``where``."""
    from ..method.data_pruning import QUOTA_FORM

    raw, data, pool, by = inputs.raw, inputs.data, units.pool, inputs.by
    other = {}
    for split in raw.splits or ():
        if split != inputs.pool_split:
            other[split] = other.get(split, 0) + 1
    return {
        "format": PLAN_FORMAT,
        "manifest": record_path(inputs.output, where),
        "manifest_sha256": _sha256_text(text),
        "model": record_path(checkpoint.path, where),
        "model_sha256": checkpoint.sha256,
        "arch": checkpoint.arch,
        "arch_args": checkpoint.arch_args or None,
        "data": record_path(data.root, where),
        "labels": record_path(data.labels, where) if data.labels else None,
        "sources": [{"path": record_path(s, where), "sha256": hashes[s]} for s in raw.sources],
        "target": pool.table.target,
        "groups": pool.table.attribute or None,
        "classes": pool.classes,
        "split": inputs.pool_split,
        "val_split": inputs.val_split,
        "keep": inputs.keep,
        "by": by,
        "quota": inputs.quota.name,
        "quota_form": QUOTA_FORM if inputs.quota.name == "drop" else inputs.quota.summary,
        "within": inputs.within.name,
        "min_quota": inputs.min_quota,
        "seed": inputs.seed,
        "image_size": pool.image_size,
        "rows": plan.rows,
        "kept": plan.kept,
        "density": plan.kept / plan.rows,
        "other_rows": other,
        "notes": plan.notes,
        "units": [
            {"name": unit.name, **_unit_fields(pool, by, key), **asdict(unit)} for key, unit in zip(units.keys, plan.units)
        ],
    }


def _splits(
    raw: RawTable, split: str | None, val_split: str | None, *, needs_recall: bool
) -> tuple[str | None, str | None]:
    """The split that is pruned and the one recall is measured on (None: not measured)."""
    val = val_split or "val"
    if raw.splits is None:
        if needs_recall or val_split is not None:
            raise InputError(
                f"--val-split {val}: {raw.sources[0].name} has no 'split' column, so there are no "
                "validation rows to measure recall on; add a split column (train/val/test)"
            )
        return split, None
    pool = split or "train"
    present = sorted(set(raw.splits))
    if val == pool:
        raise InputError(f"--val-split {val}: that is the split being pruned; measure recall on other rows")
    if val not in present:
        if needs_recall or val_split is not None:
            raise InputError(
                f"--val-split {val}: no rows in that split (the data has {', '.join(present)}); "
                "name the split to measure recall on"
            )
        return pool, None
    return pool, val


def _unit_keys(prepared: PreparedData, by: str) -> list:
    classes = prepared.targets.tolist()
    table = prepared.table
    groups = [table.group_names[g] for g in table.group_index.tolist()]
    if by == "target":
        return classes
    if by == "group":
        return groups
    return list(zip(classes, groups))


def _unit_order(pool: PreparedData, by: str):
    """Classes in class order, groups in the data's group order, cells by class then group."""
    group_position = {name: i for i, name in enumerate(pool.table.group_names)}
    if by == "target":
        return lambda key: key
    if by == "group":
        return lambda key: group_position[key]
    return lambda key: (key[0], group_position[key[1]])


def _unit_name(pool: PreparedData, by: str, key) -> str:
    if by == "target":
        return str(pool.classes[key])
    if by == "group":
        return str(key)
    return f"{pool.classes[key[0]]} × {key[1]}"


def _unit_fields(pool: PreparedData, by: str, key) -> dict:
    if by == "target":
        return {"class": str(pool.classes[key]), "group": None}
    if by == "group":
        return {"class": None, "group": str(key)}
    return {"class": str(pool.classes[key[0]]), "group": str(key[1])}


def _raw_rows(raw: RawTable, pool: PreparedData, pool_split: str | None) -> np.ndarray:
    """The layout row of every pool row (pool rows are the split's rows with their image files)."""
    row_of_file = {
        raw.root / raw.paths[row]: row
        for row in range(len(raw))
        if raw.splits is None or raw.splits[row] == pool_split
    }
    return np.array([row_of_file[path] for path in pool.table.files], dtype=np.int64)


def _manifest_text(raw: RawTable, keep: np.ndarray, root: Path) -> str:
    """The kept rows in the manifest layout: a manifest's own header and fields, unchanged; any
    other layout as ``path`` (relative to DATA), its attribute columns and ``split``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if raw.layout == "manifest":
        header, rows = read_csv_rows(raw.sources[0])
        writer.writerow(header)
        writer.writerows(fields for (_, fields), kept in zip(rows, keep) if kept)
        return buffer.getvalue()
    columns = [name for name in raw.columns if name not in ("path", "split")]
    writer.writerow(["path", *columns, *(["split"] if raw.splits is not None else [])])
    for row in np.flatnonzero(keep):
        path = Path(os.path.relpath(raw.root / raw.paths[row], root)).as_posix()
        split = [raw.splits[row]] if raw.splits is not None else []
        writer.writerow([path, *(raw.columns[name][row] for name in columns), *split])
    return buffer.getvalue()


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()

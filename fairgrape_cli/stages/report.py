"""The report stage: per-group accuracy, drops from a baseline, disparity, CI conditions."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from .._progress import NoProgress, ProgressSink
from ..devices import autocast_for, check_precision, resolve_device, uses_channels_last
from ..errors import InputError
from ..io import checkpoints as ckpt
from ..io.artifacts import read_masks
from ..io.data import DataSpec, require_groups, resolve_classes
from ..io.files import all_or_none, refuse_overwriting_inputs, resolve_recorded, write_text_atomically
from ..io.images import Normalizer
from ..method.batches import sequential_batches, share_of
from ..method.metrics import (
    Bootstrap,
    Outcomes,
    attribute_sections,
    bootstrap_intervals,
    build_report,
    group_accuracies,
    paired_outcomes,
    parse_condition,
    predict,
)
from ..render.html import history_html
from ._inputs import Loading, ModelSource, image_loader, prepare_data
from ._size import density_against_dense, model_size

log = logging.getLogger("fairgrape")


@dataclass
class ReportResult:
    report: dict
    failed: list[str]  # the --fail-if conditions that hold
    skipped_images: int = 0


def report(
    *,
    model: ModelSource,
    data: DataSpec,
    baseline: ModelSource | None = None,
    loading: Loading = Loading(),
    fail_if: Sequence[str] = (),
    bootstrap: Bootstrap = Bootstrap(),
    json_output: Path | None = None,
    html_output: Path | None = None,
    precision: str = "fp32",
    progress: ProgressSink | None = None,
) -> ReportResult:
    """Per-group accuracy of ``model`` (and drop from ``baseline``), disparity, CI conditions;
    ``bootstrap`` intervals beside them (``Bootstrap(resamples=0)``: none). ``precision="bf16"``
    evaluates under bf16 autocast with channels_last (CUDA only)."""
    progress = progress or NoProgress()
    device = resolve_device(loading.device)
    runtime = distributed.start(device)
    with runtime.together():  # every rank checks the inputs before any collective
        check_precision(precision, device)
        conditions = [parse_condition(text, has_baseline=baseline is not None) for text in fail_if]
        require_groups(data, "the column(s) to compare accuracy across")
        refuse_overwriting_inputs([json_output, html_output], [model.path, baseline.path if baseline else None])

        checkpoint = model.load()
        prepared = prepare_data(
            data, checkpoint, image_size=loading.image_size, default_split=("test", "val")
        )
        warn_if_trained_on(checkpoint, data, prepared.table.split)
        models = [checkpoint]
        if baseline is not None:
            reference = baseline.load()
            known = reference.attributes if prepared.table.multi_label else reference.classes
            _, _ = resolve_classes(
                prepared.table, num_classes=reference.num_classes,
                checkpoint_classes=known, model_name=str(reference.path),
            )  # fmt: skip
            if known is not None and known != prepared.classes:
                what = "attributes" if prepared.table.multi_label else "classes"
                raise InputError(f"{reference.path} orders its {what} differently from {checkpoint.path}")
            models.append(reference)
        size = model_size(checkpoint, prepared.image_size)  # on the CPU, before moving to the device

    table = prepared.table
    # under torchrun each rank predicts batch i with i % world == rank; the predictions are
    # gathered, so every number below (and every bootstrap resample) is one process's
    batches = share_of(
        sequential_batches(len(table), loading.batch_size), rank=runtime.rank, world_size=runtime.world_size
    )
    loader = image_loader(prepared, batches, loading, data, device)
    task = progress.add_task("evaluating", total=sum(len(rows) for rows in batches))
    channels_last = uses_channels_last(precision, device)
    prepares = []
    for loaded in models:
        loaded.model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        prepares.append(Normalizer(*loaded.normalization, device, channels_last=channels_last))
    with autocast_for(precision, device)():
        outcomes = predict(
            [loaded.model for loaded in models],
            runtime.agreed(loader),
            prepares,
            prepared.targets,
            on_batch=lambda n: progress.advance(task, n),
        )
    outcomes = [_gathered(runtime, rows) for rows in outcomes]
    bad_images = int(runtime.sum_(torch.tensor([loader.bad_images]))[0])
    groups = group_accuracies(outcomes[0], table.group_index, table.group_names)
    baseline_groups = None
    if baseline is not None:
        baseline_groups = group_accuracies(outcomes[1], table.group_index, table.group_names)
    pairs = paired_outcomes(
        outcomes[0], outcomes[1] if baseline is not None else None, table.group_index, len(table.group_names)
    )
    result = build_report(
        model=str(model.path),
        data=str(data.root),
        split=table.split,
        target=table.target,
        attribute=table.attribute,
        density=density_against_dense(checkpoint),
        groups=groups,
        baseline_groups=baseline_groups,
        intervals=bootstrap_intervals(pairs, has_baseline=baseline is not None, settings=bootstrap),
    )
    if prepared.table.multi_label:  # the mean over attributes above; each attribute here
        result["attributes"] = attribute_sections(
            outcomes[0], outcomes[1] if baseline is not None else None, table.group_index, table.group_names,
            prepared.classes,
        )  # fmt: skip
    if bootstrap.resamples:
        result["bootstrap"] = {
            "resamples": bootstrap.resamples, "confidence": bootstrap.confidence, "seed": bootstrap.seed,
            "method": "percentile; images resampled within each group, paired with the baseline",
        }  # fmt: skip
    result["baseline"] = str(baseline.path) if baseline else None
    result["pruning"] = _pruning_settings(checkpoint)
    result.update(size)
    with runtime.together():  # rank 0 writes; the others wait until the files are there
        if runtime.is_main:
            save_report(result, json_output=json_output, html_output=html_output)
    failed = [condition.text for condition in conditions if condition.holds(result)]
    return ReportResult(result, failed, sum(table.skipped.values()) + bad_images)


def _gathered(runtime: distributed.Runtime, outcomes: Outcomes) -> Outcomes:
    """Every rank's outcomes in one: each row was evaluated by one rank (False on the others)."""
    if not runtime.distributed:
        return outcomes
    right = runtime.sum_(torch.from_numpy(outcomes.right.astype(np.int32))) > 0
    scored = runtime.sum_(torch.from_numpy(outcomes.scored.astype(np.int32))) > 0
    return Outcomes(right.numpy(), scored.numpy())


def warn_if_trained_on(checkpoint: ckpt.Checkpoint, data: DataSpec, split: str | None) -> None:
    """Warn when the images judged are the ones ``checkpoint`` was fine-tuned on (as its
    provenance records them): accuracy on training images says little about new ones."""
    recorded = checkpoint.provenance.get("data")
    if checkpoint.provenance.get("stage") != "finetune" or not recorded or data.root is None:
        return
    trained_split = checkpoint.provenance.get("train_split")
    same_folder = _same_path(resolve_recorded(recorded, checkpoint.path), data.root)
    labels = checkpoint.provenance.get("labels")
    same_labels = (resolve_recorded(labels, checkpoint.path) if labels else None, data.labels)
    if not same_folder or not (same_labels[0] == same_labels[1] or _same_path(*same_labels)):
        return
    if trained_split is None or trained_split == split:
        which = f"split {split}" if split else "every image (the data has no split column)"
        log.warning(
            "the report judges %s on %s, the images it was fine-tuned on: accuracy on training images "
            "overstates accuracy on new ones; add a split column (train/val/test) and report on test",
            checkpoint.path.name, which,
        )  # fmt: skip


def _same_path(first: Path | None, second: Path | None) -> bool:
    if first is None or second is None:
        return False
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False


def _pruning_settings(checkpoint: ckpt.Checkpoint) -> dict | None:
    """Method, rate and scope of the masks a checkpoint names, when they can still be read."""
    recorded = checkpoint.provenance.get("masks")
    if not recorded:
        return None
    path = resolve_recorded(recorded, checkpoint.path)
    try:
        metadata = read_masks(path).metadata
    except InputError:
        return None
    settings = {key: metadata.get(key) for key in ("method", "rate", "scope", "density", "granularity")}
    for key in ("rate", "density"):  # safetensors metadata holds strings; a report holds numbers
        settings[key] = _number(settings[key])
    return settings


def _number(value: object) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def save_report(result: dict, *, json_output: Path | None = None, html_output: Path | None = None) -> None:
    """Write a report as JSON and/or as a self-contained HTML page (atomically, both or neither)."""
    with all_or_none():
        if json_output is not None:
            write_text_atomically(json_output, json.dumps(result, indent=2) + "\n")
        if html_output is not None:
            write_text_atomically(html_output, history_html(result))

"""The report stage: per-group accuracy, drops from a baseline, disparity, CI conditions.

resolve (:func:`resolve_report`: the conditions parsed, the flags checked; no model loaded) ->
load (the model, its baseline, the rows they are judged on) -> compute (``method.metrics``:
predictions, per-group accuracy, intervals, the ``io.reports.Report``) -> write (JSON, HTML).
"""

from __future__ import annotations

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
from ..io.reports import BootstrapInfo, ModelSize, PruningSettings, Report
from ..method.batches import sequential_batches, share_of
from ..method.metrics import (
    Bootstrap,
    Condition,
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
from ._inputs import Loading, ModelSource, PreparedData, image_loader, prepare_data
from ._size import density_against_dense, model_size

log = logging.getLogger("fairgrape")


@dataclass
class ReportResult:
    """The report, the ``--fail-if`` conditions that hold, and the images left out."""

    report: Report
    failed: list[str]  # the --fail-if conditions that hold
    skipped_images: int = 0


@dataclass(frozen=True)
class ReportInputs:
    """Everything report works on, checked (no model loaded)."""

    model: ModelSource
    data: DataSpec
    baseline: ModelSource | None
    loading: Loading
    conditions: tuple[Condition, ...]
    bootstrap: Bootstrap
    json_output: Path | None
    html_output: Path | None
    precision: str


def resolve_report(
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
) -> ReportInputs:
    """Parse the ``--fail-if`` conditions and check the flags (groups named, no input overwritten)."""
    conditions = tuple(parse_condition(text, has_baseline=baseline is not None) for text in fail_if)
    require_groups(data, "the column(s) to compare accuracy across")
    refuse_overwriting_inputs([json_output, html_output], [model.path, baseline.path if baseline else None])
    return ReportInputs(model, data, baseline, loading, conditions, bootstrap, json_output, html_output, precision)


@dataclass
class _Loaded:
    models: list[ckpt.Checkpoint]  # the model, then its baseline if any
    prepared: PreparedData
    size: ModelSize


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
    evaluates under bf16 autocast with channels_last (CUDA only). Under torchrun each rank
    predicts a share of the rows; the report is one process's, written by rank 0."""
    device = resolve_device(loading.device)
    runtime = distributed.start(device)
    with runtime.together():  # every rank checks the inputs before any collective
        check_precision(precision, device)
        inputs = resolve_report(
            model=model, data=data, baseline=baseline, loading=loading, fail_if=fail_if, bootstrap=bootstrap,
            json_output=json_output, html_output=html_output, precision=precision,
        )  # fmt: skip
        loaded = _load(inputs)
    outcomes, bad_images = _predict(inputs, loaded, device, runtime, progress or NoProgress())
    result = _build(inputs, loaded, outcomes)
    with runtime.together():  # rank 0 writes; the others wait until the files are there
        if runtime.is_main:
            save_report(result, json_output=json_output, html_output=html_output)
    failed = [condition.text for condition in inputs.conditions if condition.holds(result)]
    return ReportResult(result, failed, sum(loaded.prepared.table.skipped.values()) + bad_images)


def _load(inputs: ReportInputs) -> _Loaded:
    """The model and its baseline (refused if it predicts other classes), the rows judged, and
    the model's size (counted on the CPU, before it moves to the device)."""
    checkpoint = inputs.model.load()
    prepared = prepare_data(
        inputs.data, checkpoint, image_size=inputs.loading.image_size, default_split=("test", "val")
    )
    warn_if_trained_on(checkpoint, inputs.data, prepared.table.split)
    models = [checkpoint]
    if inputs.baseline is not None:
        reference = inputs.baseline.load()
        known = reference.attributes if prepared.table.multi_label else reference.classes
        _, _ = resolve_classes(
            prepared.table, num_classes=reference.num_classes,
            checkpoint_classes=known, model_name=str(reference.path),
        )  # fmt: skip
        if known is not None and known != prepared.classes:
            what = "attributes" if prepared.table.multi_label else "classes"
            raise InputError(f"{reference.path} orders its {what} differently from {checkpoint.path}")
        models.append(reference)
    return _Loaded(models, prepared, model_size(checkpoint, prepared.image_size))


def _predict(inputs: ReportInputs, loaded: _Loaded, device, runtime: distributed.Runtime, progress):
    """What each model got right on every row (gathered over the ranks), and the bad images."""
    table = loaded.prepared.table
    # under torchrun each rank predicts batch i with i % world == rank; the predictions are
    # gathered, so every number below (and every bootstrap resample) is one process's
    batches = share_of(
        sequential_batches(len(table), inputs.loading.batch_size), rank=runtime.rank, world_size=runtime.world_size
    )
    loader = image_loader(loaded.prepared, batches, inputs.loading, inputs.data, device)
    task = progress.add_task("evaluating", total=sum(len(rows) for rows in batches))
    channels_last = uses_channels_last(inputs.precision, device)
    prepares = []
    for checkpoint in loaded.models:
        checkpoint.model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        prepares.append(Normalizer(*checkpoint.normalization, device, channels_last=channels_last))
    with autocast_for(inputs.precision, device)():
        outcomes = predict(
            [checkpoint.model for checkpoint in loaded.models],
            runtime.agreed(loader),
            prepares,
            loaded.prepared.targets,
            on_batch=lambda n: progress.advance(task, n),
        )
    outcomes = [_gathered(runtime, rows) for rows in outcomes]
    return outcomes, int(runtime.sum_(torch.tensor([loader.bad_images]))[0])


def _build(inputs: ReportInputs, loaded: _Loaded, outcomes: list[Outcomes]) -> Report:
    """The report of the model's (and the baseline's) outcomes, with its context."""
    table, checkpoint = loaded.prepared.table, loaded.models[0]
    theirs = outcomes[1] if inputs.baseline is not None else None
    pairs = paired_outcomes(outcomes[0], theirs, table.group_index, len(table.group_names))
    result = build_report(
        model=str(inputs.model.path),
        data=str(inputs.data.root),
        split=table.split,
        target=table.target,
        attribute=table.attribute,
        density=density_against_dense(checkpoint),
        groups=group_accuracies(outcomes[0], table.group_index, table.group_names),
        baseline_groups=group_accuracies(theirs, table.group_index, table.group_names) if theirs is not None else None,
        intervals=bootstrap_intervals(pairs, has_baseline=theirs is not None, settings=inputs.bootstrap),
    )
    if table.multi_label:  # the mean over attributes above; each attribute here
        result.attributes = attribute_sections(
            outcomes[0], theirs, table.group_index, table.group_names, loaded.prepared.classes
        )
    bootstrap = inputs.bootstrap
    if bootstrap.resamples:
        result.bootstrap = BootstrapInfo(
            bootstrap.resamples, bootstrap.confidence, bootstrap.seed,
            "percentile; images resampled within each group, paired with the baseline",
        )  # fmt: skip
    result.baseline = str(inputs.baseline.path) if inputs.baseline else None
    result.pruning = _pruning_settings(checkpoint)
    result.size = loaded.size
    return result


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


def _pruning_settings(checkpoint: ckpt.Checkpoint) -> PruningSettings | None:
    """Method, rate and scope of the masks a checkpoint names, when they can still be read."""
    path = ckpt.named_masks(checkpoint)
    if path is None:
        return None
    try:
        metadata = read_masks(path).metadata
    except InputError:
        return None
    return PruningSettings(
        method=metadata.get("method"),
        rate=_number(metadata.get("rate")),  # safetensors metadata holds strings; a report holds numbers
        scope=metadata.get("scope"),
        density=_number(metadata.get("density")),
        granularity=metadata.get("granularity"),
    )


def _number(value: object) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def save_report(result: Report, *, json_output: Path | None = None, html_output: Path | None = None) -> None:
    """Write a report as JSON and/or as a self-contained HTML page (atomically, both or neither)."""
    with all_or_none():
        if json_output is not None:
            write_text_atomically(json_output, result.to_json())
        if html_output is not None:
            write_text_atomically(html_output, history_html(result))

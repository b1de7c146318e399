"""The report stage: per-group accuracy, drops from a baseline, flips, error types,
disparity, CI conditions.

resolve (:func:`resolve_report`: the conditions parsed, the flags checked; no model loaded) ->
load (the model, its baseline, the rows they are judged on) -> compute (``method.metrics``:
predictions, per-group accuracy, intervals, the ``io.reports.Report``; ``_evidence``: flips and
error types) -> write (JSON, HTML, the exemplar CSV, the model card).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from ..io.files import refuse_overwriting_inputs, resolve_recorded
from ..io.images import Normalizer
from ..io.reports import (
    BootstrapInfo,
    FileFacts,
    IntervalInfo,
    ModelSize,
    PruningSettings,
    QuantizationFacts,
    Report,
)
from ..method.batches import sequential_batches, share_of
from ..method.metrics import (
    Bootstrap,
    Condition,
    ConditionCheck,
    attribute_sections,
    build_report,
    check_conditions,
    group_accuracies,
    no_better_than_guessing,
    parse_condition,
    report_intervals,
)
from ..method.predictions import Predictions, predict_all
from ._evidence import add_error_types, add_flips, broken_thumbnails, exemplar_rows
from ._inputs import Loading, ModelSource, PreparedData, image_loader, prepare_data
from ._report_files import ReportFiles, save_report
from ._size import density_against_dense, model_size

log = logging.getLogger("fairgrape")


@dataclass
class ReportResult:
    """The report, the ``--fail-if`` conditions that hold (and each checked, with the value and
    interval it measured), and the images left out."""

    report: Report
    failed: list[str]  # the --fail-if conditions that hold
    skipped_images: int = 0
    checks: list[ConditionCheck] = field(default_factory=list)
    guessing: str | None = None  # a sentence, when the model is no better than answering one class


@dataclass(frozen=True)
class ReportInputs:
    """Everything report works on, checked (no model loaded)."""

    model: ModelSource
    data: DataSpec
    baseline: ModelSource | None
    loading: Loading
    conditions: tuple[Condition, ...]
    bootstrap: Bootstrap
    files: ReportFiles
    precision: str


def resolve_report(
    *,
    model: ModelSource,
    data: DataSpec,
    baseline: ModelSource | None = None,
    loading: Loading = Loading(),
    fail_if: Sequence[str] = (),
    bootstrap: Bootstrap = Bootstrap(),
    files: ReportFiles = ReportFiles(),
    precision: str = "fp32",
) -> ReportInputs:
    """Parse the ``--fail-if`` conditions and check the flags (groups named, no input
    overwritten, an exemplar file only with a baseline)."""
    has_baseline = baseline is not None
    conditions = tuple(
        parse_condition(text, has_baseline=has_baseline, has_intervals=bootstrap.wanted) for text in fail_if
    )
    require_groups(data, "the column(s) to compare accuracy across")
    if files.exemplars is not None and not has_baseline:
        raise InputError(f"--exemplars {files.exemplars}: flips need --baseline DENSE_MODEL")
    refuse_overwriting_inputs(files.outputs(), [model.path, baseline.path if baseline else None])
    return ReportInputs(model, data, baseline, loading, conditions, bootstrap, files, precision)


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
    exemplars_output: Path | None = None,
    model_card_output: Path | None = None,
    precision: str = "fp32",
    progress: ProgressSink | None = None,
) -> ReportResult:
    """Per-group accuracy of ``model`` (and drop and flips from ``baseline``), error types of a
    binary target, disparity, CI conditions; 95% intervals beside them (``bootstrap``: how;
    ``Bootstrap(resamples=0)``: none). Writes the JSON, HTML, the flips as CSV
    (``exemplars_output``) and a model card's fairness section (``model_card_output``) as asked.
    ``precision="bf16"`` evaluates under bf16 autocast with channels_last (CUDA only). Under
    torchrun each rank predicts a share of the rows; the report is one process's, written by
    rank 0."""
    files = ReportFiles(json_output, html_output, exemplars_output, model_card_output)
    device = resolve_device(loading.device)
    runtime = distributed.start(device)
    with runtime.together():  # every rank checks the inputs before any collective
        check_precision(precision, device)
        inputs = resolve_report(
            model=model, data=data, baseline=baseline, loading=loading, fail_if=fail_if, bootstrap=bootstrap,
            files=files, precision=precision,
        )  # fmt: skip
        loaded = _load(inputs)
    outcomes, bad_images = _predict(inputs, loaded, device, runtime, progress or NoProgress())
    result = _build(inputs, loaded, outcomes)
    checks = check_conditions(inputs.conditions, result)
    with runtime.together():  # rank 0 writes; the others wait until the files are there
        if runtime.is_main:
            _write(inputs, loaded, outcomes, result)
    failed = [check.text for check in checks if check.held]
    skipped = sum(loaded.prepared.table.skipped.values()) + bad_images
    return ReportResult(result, failed, skipped, checks, _no_better_than_guessing(result, loaded.prepared))


def _no_better_than_guessing(result: Report, prepared: PreparedData) -> str | None:
    """What to say when a single-label model is no better than always answering the most common
    class (within a point): a small drop_gap then means it lost what it knew, not that it is fair."""
    if prepared.table.multi_label:
        return None
    guessing = no_better_than_guessing(result.overall.accuracy, prepared.targets.numpy())
    if guessing is None:
        return None
    common, share = guessing
    return (
        f"{result.model}: accuracy {100 * result.overall.accuracy:.1f}% is no better than always answering "
        f"{prepared.classes[common]} ({100 * share:.1f}% of the rows judged): its per-group numbers say nothing "
        "about fairness"
    )


def _load(inputs: ReportInputs) -> _Loaded:
    """The model and its baseline (refused if it predicts other classes), the rows judged, and
    the model's size (counted on the CPU, before it moves to the device)."""
    checkpoint = inputs.model.load()
    prepared = prepare_data(
        inputs.data, checkpoint, image_size=inputs.loading.image_size, default_split=("test", "val"),
        image_size_from=inputs.loading.image_size_from,
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
        outcomes = predict_all(
            [checkpoint.model for checkpoint in loaded.models],
            runtime.agreed(loader),
            prepares,
            loaded.prepared.targets,
            on_batch=lambda n: progress.advance(task, n),
        )
    outcomes = [_gathered(runtime, rows) for rows in outcomes]
    return outcomes, int(runtime.sum_(torch.tensor([loader.bad_images]))[0])


def _build(inputs: ReportInputs, loaded: _Loaded, outcomes: list[Predictions]) -> Report:
    """The report of the model's (and the baseline's) predictions, with its context."""
    table, checkpoint, settings = loaded.prepared.table, loaded.models[0], inputs.bootstrap
    theirs = outcomes[1] if inputs.baseline is not None else None
    result = build_report(
        model=str(inputs.model.path),
        data=str(inputs.data.root),
        split=table.split,
        target=table.target,
        attribute=table.attribute,
        density=density_against_dense(checkpoint),
        groups=group_accuracies(outcomes[0], table.group_index, table.group_names),
        baseline_groups=group_accuracies(theirs, table.group_index, table.group_names) if theirs is not None else None,
        intervals=report_intervals(outcomes[0], theirs, table.group_index, len(table.group_names), settings=settings),
    )
    if table.multi_label:  # the mean over attributes above; each attribute here
        result.attributes = attribute_sections(
            outcomes[0], theirs, table.group_index, table.group_names, loaded.prepared.classes
        )
    confidence = settings.confidence if result.has_intervals else None
    if theirs is not None:
        add_flips(result, outcomes[0], theirs, table, confidence=confidence)
    targets = loaded.prepared.targets.numpy()
    add_error_types(result, outcomes[0], targets, table, loaded.prepared.classes, confidence=confidence)
    if result.has_intervals:
        result.intervals = IntervalInfo(settings.description(), settings.confidence)
        if settings.method == "bootstrap":
            result.bootstrap = BootstrapInfo(
                settings.resamples, settings.confidence, settings.seed,
                "percentile; images resampled within each group, paired with the baseline",
            )  # fmt: skip
    result.baseline = str(inputs.baseline.path) if inputs.baseline else None
    result.pruning = _pruning_settings(checkpoint)
    result.size = loaded.size
    result.file = file_facts(checkpoint)
    return result


def _gathered(runtime: distributed.Runtime, outcomes: Predictions) -> Predictions:
    """Every rank's predictions in one: each row was evaluated by one rank (0 on the others)."""
    if not runtime.distributed:
        return outcomes
    right = runtime.sum_(torch.from_numpy(outcomes.right.astype(np.int32))) > 0
    scored = runtime.sum_(torch.from_numpy(outcomes.scored.astype(np.int32))) > 0
    predicted = runtime.sum_(torch.from_numpy(outcomes.predicted.astype(np.int64)))
    confidence = runtime.sum_(torch.from_numpy(outcomes.confidence.astype(np.float64)))
    return Predictions(right.numpy(), scored.numpy(), predicted.numpy(), confidence.numpy())


def _write(inputs: ReportInputs, loaded: _Loaded, outcomes: list[Predictions], result: Report) -> None:
    """The files asked for: the flips as CSV and the broken images on the HTML page need the
    predictions, so they are gathered here rather than kept in the report."""
    table, classes, files = loaded.prepared.table, loaded.prepared.classes, inputs.files
    rows, thumbnails = None, None
    if len(outcomes) > 1 and files.exemplars is not None:
        rows = exemplar_rows(outcomes[0], outcomes[1], loaded.prepared.targets.numpy(), table, classes)
    if len(outcomes) > 1 and files.html is not None:
        thumbnails = broken_thumbnails(outcomes[0], outcomes[1], table)
    inputs_used = [("model", inputs.model.path), ("baseline", inputs.baseline.path if inputs.baseline else None),
                   ("labels", inputs.data.labels)]  # fmt: skip
    save_report(
        result, json_output=files.json, html_output=files.html, exemplars_output=files.exemplars,
        model_card_output=files.model_card, exemplar_rows=rows, thumbnails=thumbnails, inputs=inputs_used,
    )  # fmt: skip


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


EXPORTED_KINDS = ("onnx", "torchscript", "sparse")  # what ships; a report on one says so


def file_facts(checkpoint: ckpt.Checkpoint) -> FileFacts | None:
    """What exported file was judged: its format, its size, and for a quantized file what stayed
    in float and the drops it was built to (None for a checkpoint: the report keeps its shape)."""
    if checkpoint.kind not in EXPORTED_KINDS:
        return None
    recorded = checkpoint.provenance.get("quantization")
    quantization = None
    if isinstance(recorded, dict):
        quantization = QuantizationFacts(
            **{name: recorded.get(name) for name in (
                "weights", "activations", "calibration", "max_group_drop", "float_layers", "group_drops")}
        )  # fmt: skip
    return FileFacts(format=checkpoint.kind, bytes=checkpoint.path.stat().st_size, quantization=quantization)


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

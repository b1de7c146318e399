"""The finetune stage: train a pruned model with its masks held -> finetuned.pt.

resolve (:func:`resolve_finetune`: the masks and what they record, the model and data they
name, the objective and its teacher; no model loaded) -> load (the checkpoint under its masks,
the training and validation rows, the teacher) -> compute (``method.training``) -> write (the
checkpoint and its provenance).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed
from .._progress import NoProgress, ProgressSink
from ..devices import autocast_for, check_precision, resolve_device, seed_everything, uses_channels_last
from ..errors import InputError
from ..io import checkpoints as ckpt
from ..io.artifacts import Artifact, read_masks
from ..io.data import DataSpec, require_groups
from ..io.files import record_path, refuse_overwriting_inputs
from ..io.images import Normalizer
from ..method.batches import equal_share_of, sequential_batches, share_of
from ..method.distillation import Distillation, check_teacher_fits
from ..method.kept_epoch import KeptEpoch
from ..method.objectives import OBJECTIVES, Objective, ObjectiveOptions, TrainingRows
from ._inputs import (
    Loading,
    ModelSource,
    PreparedData,
    covered_layers,
    data_spec_from,
    image_loader,
    int_or_none,
    prepare_data,
    recorded_value,
    warn_if_other_model,
)
from ._size import density_against_dense

log = logging.getLogger("fairgrape")

# the checkpoint's name when the command is given no --output (a Hugging Face model: a folder)
DEFAULT_FINETUNED = Path("finetuned.pt")


@dataclass
class FinetuneSummary:
    """What :func:`finetune` trained and wrote."""

    output: Path
    masks: Path | None
    history: list[Any]
    best_epoch: int | None
    density: float
    train_split: str | None
    val_split: str | None
    objective: str = "erm"
    groups: list[str] = field(default_factory=list)  # the groups the objective weighed
    seconds: float = 0.0
    teacher: Path | None = None  # the dense model distilled from or compared with
    kept_epoch: str = "accuracy"  # the rule that picked best_epoch
    rows_per_epoch: int = 0  # training rows seen per epoch (upsampling repeats the small groups)


@dataclass(frozen=True)
class FinetuneInputs:
    """Everything finetune works on, every default resolved from the masks (no model loaded)."""

    model: ModelSource
    data: DataSpec
    masks: Artifact | None  # None: dense training
    output: Path | None  # None: finetuned.pt (a Hugging Face model: the folder finetuned), once loaded
    loading: Loading
    epochs: int
    lr: float
    lr_milestones: tuple[int, ...]
    lr_gamma: float
    val_split: str | None
    augment: bool
    objective: Objective
    objective_options: ObjectiveOptions
    teacher: ModelSource | None
    distillation: Distillation
    kept_epoch: KeptEpoch
    seed: int
    precision: str


def resolve_finetune(
    *,
    output: Path | None,
    model: ModelSource | None = None,
    data: DataSpec | None = None,
    masks: Path | None = None,
    fallback_masks: Path | None = None,
    loading: Loading = Loading(),
    epochs: int = 3,
    lr: float = 1e-4,
    lr_milestones: Sequence[int] = (),
    lr_gamma: float = 0.1,
    val_split: str | None = None,
    augment: bool = True,
    objective: str = "erm",
    objective_options: ObjectiveOptions = ObjectiveOptions(),
    dense: bool = False,
    teacher: ModelSource | None = None,
    distillation: Distillation = Distillation(),
    kept_epoch: KeptEpoch = KeptEpoch(),
    seed: int = 0,
    precision: str = "fp32",
) -> FinetuneInputs:
    """Check finetune's flags and take what they leave out from the masks: the masks
    (``masks``, else those the model names, else ``fallback_masks``), the model and data they
    record, the groups they were scored for, the teacher they were pruned from."""
    _check_schedule(epochs, lr, lr_milestones)
    chosen = OBJECTIVES.choose(objective)
    if dense and (model is None or masks is not None):
        raise InputError("dense training needs MODEL and no --masks")
    masks_artifact = None if dense else _masks(masks, model, fallback_masks)
    model = _model_source(model, masks_artifact)
    spec = _data_spec(data, masks_artifact)
    if chosen.needs_groups:  # the error lists the data's columns
        require_groups(spec, f"--objective {objective} weighs groups (the masks do not record any)")
    teacher = _teacher_source(teacher, chosen, distillation, masks_artifact)
    inputs = FinetuneInputs(
        model, spec, masks_artifact, Path(output) if output is not None else None, loading, epochs, lr, tuple(lr_milestones), lr_gamma, val_split,
        augment, chosen, objective_options, teacher, distillation, kept_epoch, seed, precision,
    )  # fmt: skip
    if output is not None:
        _refuse_overwriting(inputs)
    return inputs


def _refuse_overwriting(inputs: FinetuneInputs) -> None:
    masks, teacher = inputs.masks, inputs.teacher
    refuse_overwriting_inputs(
        [inputs.output], [inputs.model.path, masks.path if masks else None, teacher and teacher.path]
    )


def _masks(masks: Path | None, model: ModelSource | None, fallback: Path | None) -> Artifact | None:
    """``masks``, else the masks the model names, else ``fallback``; none: dense, with a warning."""
    path = masks
    if path is None and model is not None:
        path = ckpt.masks_named_in(model.path)
    path = path if path is not None else fallback
    if path is not None:
        return read_masks(path)
    if model is None:
        raise InputError("no masks and no model: pass the masks (--masks) or the model to fine-tune")
    log.warning("no masks: fine-tuning %s densely (every weight may change)", model.path)
    return None


def _model_source(model: ModelSource | None, masks: Artifact | None) -> ModelSource:
    """The model given, else the one the masks were made for."""
    if model is not None:
        return model.recorded_by(masks)
    # channel masks are in the slim model's shapes: they fit the checkpoint prune wrote, not
    # the model it started from
    slim = masks.metadata.get("granularity") == "channel"
    recorded = masks.recorded_path("checkpoint" if slim else "model")
    if recorded is None:
        raise InputError(f"{masks.path} does not record its model; pass MODEL")
    return ModelSource(recorded).recorded_by(masks)


def _data_spec(data: DataSpec | None, masks: Artifact | None) -> DataSpec:
    """The data given, its gaps filled from what the masks record (folder, target, groups)."""
    if masks is not None:
        spec = data_spec_from(masks, data)
        return replace(spec, groups=spec.groups or recorded_value(masks, "attribute") or None)
    if data is None or data.root is None:
        raise InputError("pass DATA: there is no masks file to record it")
    return data


@dataclass
class _Loaded:
    checkpoint: ckpt.Checkpoint
    weights: dict[str, torch.Tensor]  # every prunable weight, masked
    train: PreparedData
    val: PreparedData | None
    teacher: ckpt.Checkpoint | None


def finetune(
    *,
    output: Path | None,
    model: ModelSource | None = None,
    data: DataSpec | None = None,
    masks: Path | None = None,
    fallback_masks: Path | None = None,
    loading: Loading = Loading(),
    epochs: int = 3,
    lr: float = 1e-4,
    lr_milestones: Sequence[int] = (),
    lr_gamma: float = 0.1,
    val_split: str | None = None,
    augment: bool = True,
    objective: str = "erm",
    objective_options: ObjectiveOptions = ObjectiveOptions(),
    dense: bool = False,
    teacher: ModelSource | None = None,
    distillation: Distillation = Distillation(),
    kept_epoch: KeptEpoch = KeptEpoch(),
    seed: int = 0,
    precision: str = "fp32",
    progress: ProgressSink | None = None,
) -> FinetuneSummary:
    """Train the pruned model on its target labels with the masks enforced -> ``output``.

    Model and data default to what the masks file records, and so do the groups (``data.groups``)
    that an ``objective`` other than ``erm`` weighs; the masks default to those the model names,
    else ``fallback_masks``. The validation split (``val`` when present, or ``val_split``;
    ``"none"`` turns it off) picks the kept epoch (``kept_epoch``; ``auto``: by accuracy for
    ``erm``, by worst-group accuracy otherwise). ``dense`` trains ``model`` without any masks (the
    starting model of an experiment, or a model retrained on a pruned manifest).
    ``precision="bf16"`` trains under bf16 autocast with channels_last (CUDA only; the weights
    stay float32).

    ``distillation`` (weight > 0) and the ``constrained`` objective learn from, or compare with,
    a ``teacher``: by default the model the masks were pruned from, as the masks record it; a
    teacher predicting other classes is refused before any training.

    Under torchrun: DistributedDataParallel; every rank draws the same epoch and trains on its
    share of its batches (``--batch-size`` is per process), rank 0 writes.
    """
    started = time.perf_counter()
    device = resolve_device(loading.device)
    runtime = distributed.start(device)
    with runtime.together():  # every rank checks the inputs before any collective
        check_precision(precision, device)
        inputs = resolve_finetune(
            output=output, model=model, data=data, masks=masks, fallback_masks=fallback_masks, loading=loading,
            epochs=epochs, lr=lr, lr_milestones=lr_milestones, lr_gamma=lr_gamma, val_split=val_split,
            augment=augment, objective=objective, objective_options=objective_options, dense=dense, teacher=teacher,
            distillation=distillation, kept_epoch=kept_epoch, seed=seed, precision=precision,
        )  # fmt: skip
        seed_everything(seed)
        loaded = _load(inputs)
        if inputs.output is None:  # finetuned.pt; a Hugging Face model: the folder finetuned/
            inputs = replace(inputs, output=ckpt.default_model_output(DEFAULT_FINETUNED, loaded.checkpoint))
            _refuse_overwriting(inputs)
    result, rows_per_epoch = _train(inputs, loaded, device, runtime, progress or NoProgress())
    history = [record.__dict__ for record in result.history]
    with runtime.together():  # rank 0 writes; the others wait until the file is there
        if runtime.is_main:
            _write(inputs, loaded, result, history)
    weighs_groups = inputs.objective.needs_groups
    return FinetuneSummary(
        output=inputs.output,
        masks=inputs.masks.path if inputs.masks else None,
        history=history,
        best_epoch=result.best_epoch,
        density=density_against_dense(loaded.checkpoint),
        train_split=loaded.train.table.split,
        val_split=loaded.val.table.split if loaded.val else None,
        objective=inputs.objective.name,
        groups=loaded.train.table.group_names if inputs.data.group_columns else [],
        seconds=time.perf_counter() - started,
        teacher=loaded.teacher.path if loaded.teacher is not None else None,
        kept_epoch=inputs.kept_epoch.resolved(weighs_groups=weighs_groups),
        rows_per_epoch=rows_per_epoch,
    )


def _load(inputs: FinetuneInputs) -> _Loaded:
    """The checkpoint with its masks applied, the training and validation rows, the teacher."""
    from ..method.masks import apply_masks

    masks = inputs.masks
    checkpoint = inputs.model.load(weights_for="finetune")
    weights = ckpt.prunable_parameters(checkpoint.model)
    if masks is not None:
        covered_layers(masks, checkpoint, "masks", remedy="Prune the model again to make its masks.")
        warn_if_other_model(masks, checkpoint, "masks")
        apply_masks(weights, masks.tensors)
    train = prepare_data(
        inputs.data, checkpoint, image_size=inputs.loading.image_size, default_split=("train",),
        image_size_from=inputs.loading.image_size_from,
        classes=checkpoint.classes or recorded_value(masks, "classes"),
        attributes=checkpoint.attributes or recorded_value(masks, "attributes"),
        recorded_image_size=int_or_none(recorded_value(masks, "image_size")),
    )  # fmt: skip
    val = _validation_data(inputs.data, checkpoint, train, inputs.val_split)
    teacher = _load_teacher(inputs.teacher, train) if inputs.teacher is not None else None
    return _Loaded(checkpoint, weights, train, val, teacher)


def _train(inputs: FinetuneInputs, loaded: _Loaded, device: torch.device, runtime: distributed.Runtime, progress):
    """Train in place on the device (the CPU afterwards); the result and the rows per epoch."""
    from ..method.training import train_masked

    channels_last = uses_channels_last(inputs.precision, device)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    loaded.checkpoint.model.to(device, memory_format=memory_format)
    if runtime.distributed:
        torch.manual_seed(inputs.seed + runtime.rank)  # dropout masks differ between ranks
    prepare = Normalizer(*loaded.checkpoint.normalization, device, channels_last=channels_last)
    teacher = _teacher_on(loaded.teacher, device, memory_format, channels_last)
    rows = _training_rows(loaded.train)
    chosen, options = inputs.objective, inputs.objective_options
    rows_per_epoch = len(chosen.epoch_rows(rows, options, torch.Generator().manual_seed(inputs.seed)))
    share = -(-rows_per_epoch // runtime.world_size)  # images per epoch for this rank, about
    task = progress.add_task("fine-tuning", total=inputs.epochs * share)
    result = train_masked(
        model=loaded.checkpoint.model,
        weights=loaded.weights,
        masks=inputs.masks.tensors if inputs.masks is not None else {},
        train_batches=_epoch_batches(inputs, loaded, rows, device, runtime, progress, task),
        validation=_validation(inputs, loaded, device, runtime),
        prepare=prepare,
        targets=loaded.train.targets,
        loss_rule=chosen.loss_rule(rows, options, device, runtime),
        epochs=inputs.epochs,
        lr=inputs.lr,
        lr_milestones=inputs.lr_milestones,
        lr_gamma=inputs.lr_gamma,
        seed=inputs.seed,
        augment=inputs.augment,
        runtime=runtime,
        autocast=autocast_for(inputs.precision, device),
        teacher=teacher,
        distillation=inputs.distillation,
        kept_epoch=inputs.kept_epoch,
        on_batch=lambda n: progress.advance(task, n),
    )
    loaded.checkpoint.model.to("cpu", memory_format=torch.contiguous_format)
    return result, rows_per_epoch


def _teacher_on(teacher: ckpt.Checkpoint | None, device, memory_format, channels_last: bool):
    from ..method.training import Teacher

    if teacher is None:
        return None
    teacher.model.to(device, memory_format=memory_format)
    return Teacher(teacher.model, Normalizer(*teacher.normalization, device, channels_last=channels_last))


def _training_rows(train: PreparedData) -> TrainingRows:
    """Each training row's group and class (several attributes have no class: a class x group
    cell is then the group)."""
    classes = train.targets.numpy() if train.attributes is None else np.zeros(len(train.targets), int)
    return TrainingRows(groups=train.table.group_index, num_groups=len(train.table.group_names), classes=classes)


def _epoch_batches(inputs: FinetuneInputs, loaded: _Loaded, rows: TrainingRows, device, runtime, progress, task):
    """``batches(epoch)``: the objective's rows for the epoch, in batches, this rank's share."""
    generator = torch.Generator().manual_seed(inputs.seed)  # the same epochs on every rank
    batch_size = inputs.loading.batch_size

    def batches(epoch: int):
        order = inputs.objective.epoch_rows(rows, inputs.objective_options, generator).tolist()
        chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks.pop()  # BatchNorm cannot train on a batch of one
        # under torchrun: batch i to rank i % world, every rank the same number of steps
        chunks = equal_share_of(chunks, rank=runtime.rank, world_size=runtime.world_size)
        progress.update(task, description=f"fine-tuning epoch {epoch}/{inputs.epochs}")
        return runtime.lockstep(image_loader(loaded.train, chunks, inputs.loading, inputs.data, device))

    return batches


def _validation(inputs: FinetuneInputs, loaded: _Loaded, device, runtime):
    """The validation rows in this rank's batches, and whether they judge the worst group."""
    from ..method.training import Validation

    val = loaded.val
    if val is None:
        return None
    batches = share_of(
        sequential_batches(len(val.table), inputs.loading.batch_size), rank=runtime.rank, world_size=runtime.world_size
    )
    return Validation(
        batches=lambda: runtime.agreed(image_loader(val, batches, inputs.loading, inputs.data, device)),
        targets=val.targets,
        groups=torch.as_tensor(val.table.group_index),
        num_groups=len(val.table.group_names),
        by_worst_group=inputs.objective.needs_groups,
    )


def _write(inputs: FinetuneInputs, loaded: _Loaded, result, history: list[dict]) -> None:
    """The trained checkpoint, with how it was trained and on what (its provenance)."""
    checkpoint, train = loaded.checkpoint, loaded.train
    ckpt.save_checkpoint(
        inputs.output,
        checkpoint.model,
        like=replace(checkpoint, image_size=train.image_size, attributes=train.attributes),
        classes=train.classes,
        provenance=_provenance(inputs, loaded, result, history),
    )


def _provenance(inputs: FinetuneInputs, loaded: _Loaded, result, history: list[dict]) -> dict[str, Any]:
    output, spec, checkpoint, train = inputs.output, inputs.data, loaded.checkpoint, loaded.train
    provenance = {
        "stage": "finetune",
        "source": record_path(checkpoint.path, output),
        "source_sha256": checkpoint.sha256,
        "epochs": inputs.epochs,
        "lr": inputs.lr,
        "lr_milestones": list(inputs.lr_milestones),
        "lr_gamma": inputs.lr_gamma,
        "objective": inputs.objective.name,
        "objective_options": inputs.objective.settings(inputs.objective_options),
        "groups": train.table.attribute or None,
        # the images it was trained on, so a report on the same ones can say so
        "data": record_path(spec.root, output),
        "labels": record_path(spec.labels, output) if spec.labels else None,
        "train_split": train.table.split,
        "best_epoch": result.best_epoch,
        "history": history,
    }
    if inputs.masks is not None:
        provenance["masks"] = record_path(inputs.masks.path, output)
        provenance["masks_sha256"] = inputs.masks.sha256
    if loaded.teacher is not None:
        provenance["teacher"] = record_path(loaded.teacher.path, output)
        provenance["teacher_sha256"] = loaded.teacher.sha256
    if inputs.distillation.active:
        provenance["distillation"] = inputs.distillation.settings()
    if loaded.val is not None:
        provenance["kept_epoch"] = inputs.kept_epoch.settings(weighs_groups=inputs.objective.needs_groups)
    if inputs.precision != "fp32":
        provenance["precision"] = inputs.precision
    return provenance


def _check_schedule(epochs: int, lr: float, lr_milestones: Sequence[int]) -> None:
    if epochs < 1:
        raise InputError(f"--epochs {epochs}: must be at least 1")
    if not lr > 0:
        raise InputError(f"--lr {lr}: must be positive")
    milestones = list(lr_milestones)
    in_range = all(isinstance(m, int) and 0 < m < epochs for m in milestones)
    if not in_range or milestones != sorted(set(milestones)):
        allowed = f"increasing epochs between 1 and {epochs - 1}" if epochs > 1 else "none with --epochs 1"
        raise InputError(f"--lr-milestones {','.join(map(str, lr_milestones))}: {allowed}")


def _teacher_source(
    given: ModelSource | None, objective: Objective, distillation: Distillation, masks: Artifact | None
) -> ModelSource | None:
    """The teacher to load, when distillation or the objective needs one: the one given, else
    the model the masks were pruned from (as they record it). Refuses a teacher nothing uses and
    a needed one that is nowhere to be found, before any work."""
    needed_by = [
        *(["--distill-weight"] if distillation.active else []),
        *([f"--objective {objective.name}"] if objective.needs_teacher else []),
    ]
    if not needed_by:
        if given is not None:
            raise InputError(
                f"--teacher {given.path}: nothing uses it; add --distill-weight W (distillation) "
                "or --objective constrained"
            )
        return None
    if given is not None:
        return given
    recorded = masks.recorded_path("model") if masks is not None else None
    if recorded is None:
        raise InputError(
            f"{' and '.join(needed_by)} need(s) a teacher (the dense model): pass --teacher DENSE_MODEL "
            "(no masks file records the model it was pruned from)"
        )
    if not recorded.exists():  # a checkpoint file, or a Hugging Face model folder
        raise InputError(
            f"{' and '.join(needed_by)} need(s) a teacher: the masks {masks.path} were pruned from "
            f"{recorded}, which does not exist; pass --teacher DENSE_MODEL"
        )
    return ModelSource(recorded).recorded_by(masks)


def refuse_unfit_teacher(*, model: ModelSource, teacher: ModelSource, what: str) -> None:
    """Refuse ``teacher`` when it does not predict the classes (or attributes) ``model`` does, in
    their order: a run checks a teacher its config gives before any stage (``what`` names it)."""
    student, dense = model.load(), teacher.load()
    multi_label = student.attributes is not None
    names = student.attributes if multi_label else student.classes
    check_teacher_fits(
        teacher_names=(dense.attributes if multi_label else dense.classes) if names is not None else None,
        teacher_outputs=dense.num_classes,
        names=list(names) if names is not None else [""] * student.num_classes,  # only the count is known
        what=what,
    )


def _load_teacher(source: ModelSource, train_data: PreparedData) -> ckpt.Checkpoint:
    """The teacher checkpoint, refused when it does not predict the same classes or attributes."""
    teacher = source.load()
    names = teacher.attributes if train_data.attributes is not None else teacher.classes
    check_teacher_fits(
        teacher_names=names, teacher_outputs=teacher.num_classes, names=train_data.classes,
        what=f"teacher {source.path}",
    )  # fmt: skip
    return teacher


def _validation_data(
    spec: DataSpec, checkpoint: ckpt.Checkpoint, train_data: PreparedData, val_split: str | None
) -> PreparedData | None:
    if val_split == "none" or train_data.table.split is None:
        return None
    try:
        val_data = prepare_data(
            replace(spec, split=val_split or "val", min_group_size=1),
            checkpoint,
            image_size=train_data.image_size,
            default_split=(),
            announce=False,
            classes=train_data.classes,
            attributes=train_data.attributes,
        )
    except InputError:
        if val_split is not None:
            raise
        return None  # no "val" split: keep the last epoch
    return val_data

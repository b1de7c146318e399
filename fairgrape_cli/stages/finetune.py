"""The finetune stage: train a pruned model with its masks held -> finetuned.pt."""

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
from ..io.files import record_path, refuse_overwriting_inputs, resolve_recorded
from ..io.images import Normalizer
from ..method.batches import equal_share_of, sequential_batches, share_of
from ..method.distillation import Distillation, check_teacher_fits
from ..method.kept_epoch import KeptEpoch
from ..method.objectives import Objective, ObjectiveOptions, TrainingRows, get_objective
from ._inputs import (
    DEFAULT_FINETUNED,
    DEFAULT_MASKS,
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


@dataclass
class FinetuneSummary:
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


def finetune(
    *,
    model: ModelSource | None = None,
    data: DataSpec | None = None,
    masks: Path | None = None,
    output: Path | None = None,
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
    that an ``objective`` other than ``erm`` weighs. The validation split (``val`` when present,
    or ``val_split``; ``"none"`` turns it off) picks the kept epoch: by accuracy for ``erm``, by
    worst-group accuracy otherwise. ``dense`` trains ``model`` without any masks (the starting
    model of an experiment, or a model retrained on a pruned manifest). ``precision="bf16"``
    trains under bf16 autocast with channels_last (CUDA only; the weights stay float32).

    ``distillation`` (weight > 0) and the ``constrained`` objective learn from, or compare with,
    a ``teacher``: by default the model the masks were pruned from, as the masks record it; a
    teacher predicting other classes is refused before any training. ``kept_epoch`` picks the
    epoch kept on validation (``auto``: accuracy for erm, worst-group accuracy otherwise).

    Under torchrun: DistributedDataParallel; every rank draws the same epoch and trains on its
    share of its batches (``--batch-size`` is per process), rank 0 writes.
    """
    from ..method.masks import apply_masks
    from ..method.training import Teacher, Validation
    from ..method.training import finetune as train

    started = time.perf_counter()
    progress = progress or NoProgress()
    device = resolve_device(loading.device)
    runtime = distributed.start(device)
    with runtime.together():  # every rank checks the inputs before any collective
        check_precision(precision, device)
        _check_schedule(epochs, lr, lr_milestones)
        chosen = get_objective(objective)
        if dense and (model is None or masks is not None):
            raise InputError("dense training needs MODEL and no --masks")
        masks_artifact = None if dense else _finetune_masks(masks, model)
        if model is None:
            # channel masks are in the slim model's shapes: they fit the checkpoint prune wrote, not
            # the model it started from
            slim = masks_artifact.metadata.get("granularity") == "channel"
            recorded = masks_artifact.recorded_path("checkpoint" if slim else "model")
            if recorded is None:
                raise InputError(f"{masks_artifact.path} does not record its model; pass MODEL")
            model = ModelSource(recorded).recorded_by(masks_artifact)
        else:
            model = model.recorded_by(masks_artifact)
        if masks_artifact is not None:
            spec = data_spec_from(masks_artifact, data)
            spec = replace(spec, groups=spec.groups or recorded_value(masks_artifact, "attribute") or None)
        elif data is None or data.root is None:
            raise InputError("pass DATA: there is no masks file to record it")
        else:
            spec = data
        if chosen.needs_groups:  # the error lists the data's columns
            require_groups(spec, f"--objective {objective} weighs groups (the masks do not record any)")
        teacher = _teacher_source(teacher, chosen, distillation, masks_artifact)
        if output is not None:
            refuse_overwriting_inputs(
                [output], [model.path, masks_artifact.path if masks_artifact else None, teacher and teacher.path]
            )
        seed_everything(seed)

        checkpoint = model.load()
        if output is None:  # finetuned.pt; a Hugging Face model: the folder finetuned/
            output = ckpt.default_model_output(DEFAULT_FINETUNED, checkpoint)
            refuse_overwriting_inputs(
                [output], [model.path, masks_artifact.path if masks_artifact else None, teacher and teacher.path]
            )
        weights = ckpt.prunable_parameters(checkpoint.model)
        if masks_artifact is not None:
            covered_layers(
                masks_artifact, checkpoint, "masks", remedy="Prune the model again to make its masks."
            )
            warn_if_other_model(masks_artifact, checkpoint, "masks")
            apply_masks(weights, masks_artifact.tensors)
        train_data = prepare_data(
            spec, checkpoint, image_size=loading.image_size, default_split=("train",),
            classes=checkpoint.classes or recorded_value(masks_artifact, "classes"),
            attributes=checkpoint.attributes or recorded_value(masks_artifact, "attributes"),
            recorded_image_size=int_or_none(recorded_value(masks_artifact, "image_size")),
        )  # fmt: skip
        val_data = _validation_data(spec, checkpoint, train_data, val_split)
        teacher_checkpoint = _load_teacher(teacher, train_data) if teacher is not None else None

    channels_last = uses_channels_last(precision, device)
    checkpoint.model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if runtime.distributed:
        torch.manual_seed(seed + runtime.rank)  # dropout masks differ between ranks
    mean, std = checkpoint.normalization
    prepare = Normalizer(mean, std, device, channels_last=channels_last)
    teacher_model = None
    if teacher_checkpoint is not None:
        teacher_checkpoint.model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        teacher_model = Teacher(teacher_checkpoint.model, Normalizer(*teacher_checkpoint.normalization, device, channels_last=channels_last))
    generator = torch.Generator().manual_seed(seed)  # the same epochs on every rank
    rows = TrainingRows(
        groups=train_data.table.group_index,
        num_groups=len(train_data.table.group_names),
        classes=train_data.targets.numpy() if train_data.attributes is None else np.zeros(len(train_data.targets), int),
    )  # several attributes have no class: a class x group cell is then the group
    rows_per_epoch = len(chosen.epoch_rows(rows, objective_options, torch.Generator().manual_seed(seed)))
    share = -(-rows_per_epoch // runtime.world_size)  # images per epoch for this rank, about
    task = progress.add_task("fine-tuning", total=epochs * share)

    def train_batches(epoch: int):
        order = chosen.epoch_rows(rows, objective_options, generator).tolist()
        batches = [order[start : start + loading.batch_size] for start in range(0, len(order), loading.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()  # BatchNorm cannot train on a batch of one
        # under torchrun: batch i to rank i % world, every rank the same number of steps
        batches = equal_share_of(batches, rank=runtime.rank, world_size=runtime.world_size)
        progress.update(task, description=f"fine-tuning epoch {epoch}/{epochs}")
        return runtime.lockstep(image_loader(train_data, batches, loading, spec, device))

    validation = None
    if val_data is not None:
        val_batches = share_of(
            sequential_batches(len(val_data.table), loading.batch_size),
            rank=runtime.rank, world_size=runtime.world_size,
        )  # fmt: skip
        validation = Validation(
            batches=lambda: runtime.agreed(image_loader(val_data, val_batches, loading, spec, device)),
            targets=val_data.targets,
            groups=torch.as_tensor(val_data.table.group_index),
            num_groups=len(val_data.table.group_names),
            by_worst_group=chosen.needs_groups,
        )
    masks_tensors = masks_artifact.tensors if masks_artifact is not None else {}
    result = train(
        model=checkpoint.model,
        weights=weights,
        masks=masks_tensors,
        train_batches=train_batches,
        validation=validation,
        prepare=prepare,
        targets=train_data.targets,
        loss_rule=chosen.loss_rule(rows, objective_options, device, runtime),
        epochs=epochs,
        lr=lr,
        lr_milestones=tuple(lr_milestones),
        lr_gamma=lr_gamma,
        seed=seed,
        augment=augment,
        runtime=runtime,
        autocast=autocast_for(precision, device),
        teacher=teacher_model,
        distillation=distillation,
        kept_epoch=kept_epoch,
        on_batch=lambda n: progress.advance(task, n),
    )
    checkpoint.model.to("cpu", memory_format=torch.contiguous_format)
    history = [record.__dict__ for record in result.history]
    provenance = {
        "stage": "finetune",
        "source": record_path(checkpoint.path, output),
        "source_sha256": checkpoint.sha256,
        "epochs": epochs,
        "lr": lr,
        "lr_milestones": list(lr_milestones),
        "lr_gamma": lr_gamma,
        "objective": objective,
        "objective_options": chosen.settings(objective_options),
        "groups": train_data.table.attribute or None,
        # the images it was trained on, so a report on the same ones can say so
        "data": record_path(spec.root, output),
        "labels": record_path(spec.labels, output) if spec.labels else None,
        "train_split": train_data.table.split,
        "best_epoch": result.best_epoch,
        "history": history,
    }
    if masks_artifact is not None:
        provenance["masks"] = record_path(masks_artifact.path, output)
        provenance["masks_sha256"] = masks_artifact.sha256
    if teacher_checkpoint is not None:
        provenance["teacher"] = record_path(teacher_checkpoint.path, output)
        provenance["teacher_sha256"] = teacher_checkpoint.sha256
    if distillation.active:
        provenance["distillation"] = distillation.settings()
    if val_data is not None:
        provenance["kept_epoch"] = kept_epoch.settings(weighs_groups=chosen.needs_groups)
    if precision != "fp32":
        provenance["precision"] = precision
    with runtime.together():  # rank 0 writes; the others wait until the file is there
        if runtime.is_main:
            ckpt.save_checkpoint(
                output,
                checkpoint.model,
                like=replace(checkpoint, image_size=train_data.image_size, attributes=train_data.attributes),
                classes=train_data.classes,
                provenance=provenance,
            )
    return FinetuneSummary(
        output=output,
        masks=masks_artifact.path if masks_artifact else None,
        history=history,
        best_epoch=result.best_epoch,
        density=density_against_dense(checkpoint),
        train_split=train_data.table.split,
        val_split=val_data.table.split if val_data else None,
        objective=objective,
        groups=train_data.table.group_names if spec.group_columns else [],
        seconds=time.perf_counter() - started,
        teacher=teacher_checkpoint.path if teacher_checkpoint is not None else None,
        kept_epoch=kept_epoch.resolved(weighs_groups=chosen.needs_groups),
        rows_per_epoch=rows_per_epoch,
    )


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


def _load_teacher(source: ModelSource, train_data: PreparedData) -> ckpt.Checkpoint:
    """The teacher checkpoint, refused when it does not predict the same classes or attributes."""
    teacher = source.load()
    names = teacher.attributes if train_data.attributes is not None else teacher.classes
    check_teacher_fits(
        teacher_names=names, teacher_outputs=teacher.num_classes, names=train_data.classes,
        what=f"teacher {source.path}",
    )  # fmt: skip
    return teacher


def _finetune_masks(masks: Path | None, model: ModelSource | None) -> Artifact | None:
    if masks is not None:
        return read_masks(masks)
    if model is not None:
        named = _masks_named_by(model.path)
        if named is not None:
            return read_masks(named)
    if DEFAULT_MASKS.exists():
        return read_masks(DEFAULT_MASKS)
    if model is None:
        raise InputError(
            f"{DEFAULT_MASKS} not found: run `fairgrape prune --rate R` first, or pass --masks"
        )
    log.warning("no masks: fine-tuning %s densely (every weight may change)", model.path)
    return None


def _masks_named_by(path: Path) -> Path | None:
    """Masks a fairgrape checkpoint names, read from the file without building the model."""
    if path.is_dir():  # a Hugging Face model folder: its fairgrape.json
        from ..io.huggingface import read_provenance

        recorded = read_provenance(path).get("masks")
        resolved = resolve_recorded(recorded, path) if recorded else None
        return resolved if resolved is not None and resolved.is_file() else None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a native .pt; the real load reports any problem
        return None
    recorded = (loaded.get("fairgrape") or {}).get("masks") if isinstance(loaded, dict) else None
    if not recorded:
        return None
    resolved = resolve_recorded(recorded, path)
    return resolved if resolved.is_file() else None


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

"""The four stages as importable functions: read inputs, compute, write the artifact, return data.

The CLI and ``pipeline.run_schedule`` both call these; nothing here prints. Each stage records
where its inputs came from (paths relative to its output, sha256) so the next stage finds them
without flags, refuses inputs that cannot fit, and warns when they look mismatched.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import checkpoints as ckpt
from ._files import record_path, refuse_overwriting_inputs, resolve_recorded
from ._progress import NoProgress, ProgressSink
from .artifacts import (
    IMPORTANCE_FORMAT,
    MASKS_FORMAT,
    Artifact,
    check_fits,
    float16_scaled,
    read_importance,
    read_masks,
    write_artifact,
)
from .data import (
    DEFAULT_IMAGE_SIZE,
    DataSpec,
    GroupedTable,
    ImageLoader,
    Normalizer,
    default_workers,
    group_pure_batches,
    load_table,
    resolve_classes,
    sequential_batches,
    shuffled_batches,
)
from .devices import resolve_device, seed_everything
from .errors import InputError

log = logging.getLogger("fairgrape")

DEFAULT_IMPORTANCE = Path("importance.safetensors")
DEFAULT_MASKS = Path("masks.safetensors")
DEFAULT_PRUNED = "pruned.pt"
DEFAULT_FINETUNED = Path("finetuned.pt")
STORED_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint path and how to read it (``--arch``, ``--trust-checkpoint``)."""

    path: Path
    arch: str | None = None
    trust_checkpoint: bool = False
    default_arch: str | None = None  # recorded by an artifact; used when the file names none

    def load(self) -> ckpt.Checkpoint:
        return ckpt.load_checkpoint(
            self.path,
            arch=self.arch,
            default_arch=self.default_arch,
            trust_checkpoint=self.trust_checkpoint,
        )


@dataclass(frozen=True)
class Loading:
    """How images are read and batched (shared by every stage that reads data)."""

    image_size: int | None = None
    batch_size: int = 64
    device: str = "auto"
    workers: int | None = None  # None: chosen from the machine and the amount of data

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.image_size is not None and self.image_size < 8:
            raise InputError(f"--image-size {self.image_size}: must be at least 8")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"--workers {self.workers}: must be 0 or more")


@dataclass
class PreparedData:
    table: GroupedTable
    classes: list[str]
    targets: torch.Tensor
    image_size: int


def _prepare_data(
    spec: DataSpec,
    checkpoint: ckpt.Checkpoint,
    *,
    image_size: int | None,
    default_split: Sequence[str],
    classes: list[str] | None = None,
) -> PreparedData:
    table = load_table(spec, default_split=default_split)
    for note in table.notes:
        log.info("%s", note)
    chosen_classes, targets = resolve_classes(
        table,
        num_classes=checkpoint.num_classes,
        checkpoint_classes=classes if classes is not None else checkpoint.classes,
        model_name=str(checkpoint.path),
    )
    size = image_size or checkpoint.image_size or DEFAULT_IMAGE_SIZE
    return PreparedData(table, chosen_classes, targets, int(size))


def _loader(
    prepared: PreparedData, batches: list[list[int]], loading: Loading, spec: DataSpec, device
) -> ImageLoader:
    workers = loading.workers if loading.workers is not None else default_workers(len(batches))
    return ImageLoader(
        table=prepared.table,
        image_size=prepared.image_size,
        batches=batches,
        workers=workers,
        pin_memory=device.type == "cuda",
        skip_bad_images=spec.skip_bad_images,
    )


def _recorded(artifact: Artifact | None, key: str) -> Any:
    return artifact.metadata.get(key) if artifact is not None else None


def _data_spec_from(artifact: Artifact, given: DataSpec | None) -> DataSpec:
    """The data an artifact records, with the flags the user gave taking precedence."""
    given = given or DataSpec(root=None)
    if given.root is not None:
        return replace(given, target=given.target or _recorded(artifact, "target") or None)
    root = artifact.recorded_path("data")
    if root is None:
        raise InputError(f"{artifact.path} does not record its data folder; pass DATA")
    return replace(
        given,
        root=root,
        target=given.target or _recorded(artifact, "target") or None,
        labels=given.labels or artifact.recorded_path("labels"),
    )


def _warn_if_other_model(artifact: Artifact, checkpoint: ckpt.Checkpoint, what: str) -> None:
    made_from = artifact.metadata.get("model_sha256")
    if not made_from or made_from == checkpoint.sha256:
        return  # (before hashing the artifact: that can take a while for a large file)
    if checkpoint.provenance.get("masks_sha256") != artifact.sha256:
        log.warning(
            "%s %s was made from %s, not from %s (expected after fine-tuning, suspicious "
            "otherwise)",
            what,
            artifact.path,
            artifact.metadata.get("model", "another model"),
            checkpoint.path,
        )


# ------------------------------------------------------------------------------------------ score


@dataclass
class ScoreSummary:
    output: Path
    groups: list[str]
    samples_per_group: list[int]
    batches_per_group: list[int]
    layers: int
    weights: int
    split: str | None
    dropped_groups: dict[str, int] = field(default_factory=dict)
    skipped_images: int = 0
    seconds: float = 0.0


def score(
    *,
    model: ModelSource,
    data: DataSpec,
    output: Path = DEFAULT_IMPORTANCE,
    masks: Path | None = None,
    loading: Loading = Loading(),
    max_batches: int | None = None,
    samples_per_group: int | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dtype: str = "float32",
    seed: int = 0,
    progress: ProgressSink | None = None,
) -> ScoreSummary:
    """Per-group importance of every prunable weight of ``model`` on ``data`` -> ``output``."""
    from .masks import apply_masks
    from .scoring import CRITERION, compute_importance

    started = time.perf_counter()
    progress = progress or NoProgress()
    if not data.group_columns:
        raise InputError("--groups is required: the column(s) whose groups importance is kept for")
    if dtype not in STORED_DTYPES:
        raise InputError(f"--dtype {dtype}: choose one of {', '.join(STORED_DTYPES)}")
    for flag, value in (("--max-batches", max_batches), ("--samples-per-group", samples_per_group)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}: must be at least 1")
    refuse_overwriting_inputs([output], [model.path, masks])
    seed_everything(seed)

    checkpoint = model.load()
    prepared = _prepare_data(data, checkpoint, image_size=loading.image_size, default_split=("train",))
    table = prepared.table
    weights = ckpt.prunable_parameters(checkpoint.model, include, exclude)
    masks_artifact = _scoring_masks(masks, checkpoint, weights)
    if masks_artifact is not None:
        apply_masks(weights, masks_artifact.tensors)

    device = resolve_device(loading.device)
    checkpoint.model.to(device)
    batches = group_pure_batches(
        table.group_index,
        len(table.group_names),
        batch_size=loading.batch_size,
        max_batches=max_batches,
        samples_per_group=samples_per_group,
        seed=seed,
    )
    loader = _loader(prepared, [rows for _, rows in batches], loading, data, device)
    totals = [0] * len(table.group_names)
    for group, rows in batches:
        totals[group] += len(rows)
    tasks = [
        progress.add_task(f"scoring {name}", total=totals[g], unit="images")
        for g, name in enumerate(table.group_names)
    ]
    mean, std = checkpoint.normalization
    result = compute_importance(
        model=checkpoint.model,
        weights=weights,
        batches=loader,
        prepare=Normalizer(mean, std, device),
        targets=prepared.targets,
        group_index=table.group_index,
        group_names=table.group_names,
        on_batch=lambda group, n: progress.advance(tasks[group], n),
    )
    checkpoint.model.to("cpu")

    stored, scales = result.importance, {}
    for name, values in stored.items():  # converted layer by layer: never two full copies
        if dtype == "float16":
            stored[name], scales[name] = float16_scaled(values)
        else:
            stored[name] = values.to(STORED_DTYPES[dtype])
    metadata = {
        "format": IMPORTANCE_FORMAT,
        "groups": table.group_names,
        "attribute": table.attribute,
        "criterion": CRITERION,
        "samples_per_group": dict(zip(table.group_names, result.samples_per_group)),
        "batches_per_group": dict(zip(table.group_names, result.batches_per_group)),
        "model": record_path(checkpoint.path, output),
        "model_sha256": checkpoint.sha256,
        "arch": checkpoint.arch,
        "data": record_path(data.root, output),
        "labels": record_path(data.labels, output) if data.labels else None,
        "split": table.split or "",
        "target": table.target,
        "classes": prepared.classes,
        "image_size": str(prepared.image_size),
        "batch_size": str(loading.batch_size),
        "dropped_groups": table.dropped_groups or None,
        "scales": scales or None,
    }
    if masks_artifact is not None:
        metadata["masks"] = record_path(masks_artifact.path, output)
        metadata["masks_sha256"] = masks_artifact.sha256
    write_artifact(output, stored, metadata)
    return ScoreSummary(
        output=output,
        groups=table.group_names,
        samples_per_group=result.samples_per_group,
        batches_per_group=result.batches_per_group,
        layers=len(weights),
        weights=sum(w.numel() for w in weights.values()),
        split=table.split,
        dropped_groups=table.dropped_groups,
        skipped_images=sum(table.skipped.values()) + loader.bad_images,
        seconds=time.perf_counter() - started,
    )


def _scoring_masks(
    masks: Path | None, checkpoint: ckpt.Checkpoint, weights: dict[str, torch.Tensor]
) -> Artifact | None:
    """Masks to score under: ``--masks``, else the ones a pruned checkpoint names."""
    path = masks
    if path is None and checkpoint.provenance.get("masks"):
        recorded = resolve_recorded(checkpoint.provenance["masks"], checkpoint.path)
        if recorded.is_file():
            path = recorded
        else:
            log.warning(
                "%s names masks %s, which no longer exist; scoring without them",
                checkpoint.path,
                recorded,
            )
    if path is None:
        return None
    artifact = read_masks(path)
    check_fits(artifact.tensors, weights, source=artifact.path, model_name=str(checkpoint.path))
    return artifact


# ------------------------------------------------------------------------------------------ prune


@dataclass
class PruneSummary:
    masks: Path
    checkpoint: Path
    method: str
    rate: float
    scope: str
    density: float
    layers: dict[str, tuple[int, int]]  # name -> (kept, size)
    seconds: float = 0.0


def _one_torch_thread(function):
    """Run ``function`` with torch's own thread pool at one thread: selection runs its own two
    threads; torch's pool beside them (or on a busy machine) made even the masks' bookkeeping
    sums up to 50x slower (measured), and the sorts slower rather than faster."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        from .selection import torch_threads

        with torch_threads(1):
            return function(*args, **kwargs)

    return run


@_one_torch_thread
def prune(
    *,
    rate: float,
    model: ModelSource | None = None,
    importance: Path | None = None,
    method: str = "fairgrape",
    scope: str = "layer",
    min_layer_density: float = 0.01,
    masks: Path | None = None,
    output: Path = DEFAULT_MASKS,
    model_output: Path | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    seed: int = 0,
    progress: ProgressSink | None = None,
) -> PruneSummary:
    """Masks at ``rate`` from an importance file (and/or the model) -> masks + pruned checkpoint."""
    from .masks import apply_masks
    from .selection import build_masks, check_options, get_criterion, warm_up

    started = time.perf_counter()
    progress = progress or NoProgress()
    check_options(rate=rate, scope=scope, min_layer_density=min_layer_density)
    criterion = get_criterion(method)
    model_output = model_output or output.with_name(DEFAULT_PRUNED)

    importance_path = importance or DEFAULT_IMPORTANCE
    scores = None
    if criterion.needs_importance or model is None or importance is not None:
        if not importance_path.exists():
            raise InputError(
                f"{importance_path} not found: run `fairgrape score MODEL DATA --groups COL` first"
                + ("" if criterion.needs_importance else ", or pass MODEL")
            )
        scores = read_importance(importance_path, lazy=True)  # one layer in memory at a time
    if model is None:
        recorded = scores.recorded_path("model")
        if recorded is None:
            raise InputError(f"{importance_path} does not record its model; pass MODEL")
        model = ModelSource(recorded, default_arch=_recorded(scores, "arch"))
    else:
        model = replace(model, default_arch=_recorded(scores, "arch"))

    threading.Thread(target=warm_up, name="fairgrape-warm-up", daemon=True).start()  # beside the load
    checkpoint = model.load()
    weights = ckpt.prunable_parameters(checkpoint.model, include, exclude)
    if scores is not None:
        check_fits(
            scores.headers, weights, source=scores.path, model_name=str(checkpoint.path),
            leading_dims=1,
        )  # fmt: skip
        _warn_if_other_model(scores, checkpoint, "importance")
        weights = {name: weights[name] for name in weights if name in scores.headers}
    previous = _previous_masks(masks, scores, checkpoint, weights)
    refuse_overwriting_inputs(
        [output, model_output],
        [checkpoint.path, scores.path if scores else None, previous.path if previous else None],
    )

    task = progress.add_task(f"selecting ({method}, {scope})", total=len(weights))
    built = build_masks(
        weights=weights,
        method=method,
        rate=rate,
        importance=scores.tensors if scores is not None else None,
        previous=previous.tensors if previous is not None else None,
        scope=scope,
        min_layer_density=min_layer_density,
        seed=seed,
        on_layer=lambda _name: progress.advance(task, 1),
    )
    layers = {name: (int(mask.count_nonzero()), mask.numel()) for name, mask in built.items()}
    total = sum(size for _, size in layers.values())
    kept_fraction = sum(kept for kept, _ in layers.values()) / total if total else 1.0
    metadata = {
        "format": MASKS_FORMAT,
        "method": method,
        "rate": str(rate),
        "scope": scope,
        "min_layer_density": str(min_layer_density) if scope == "global" else None,
        "seed": str(seed) if method == "random" else None,
        "importance": record_path(scores.path, output) if scores else None,
        "importance_sha256": scores.sha256 if scores else None,
        "model": record_path(checkpoint.path, output),
        "model_sha256": checkpoint.sha256,
        "arch": checkpoint.arch,
        "density": str(kept_fraction),
        "previous_masks": record_path(previous.path, output) if previous else None,
        "checkpoint": record_path(model_output, output),
    }
    for key in ("data", "labels"):  # re-anchor the data paths the importance file records
        recorded = scores.recorded_path(key) if scores else None
        metadata[key] = record_path(recorded, output) if recorded else None
    for key in ("target", "attribute", "groups", "classes", "image_size"):
        metadata[key] = _recorded(scores, key)
    masks_sha = write_artifact(output, built, metadata)

    apply_masks(weights, built)
    classes = checkpoint.classes or _recorded(scores, "classes")
    image_size = checkpoint.image_size or _int_or_none(_recorded(scores, "image_size"))
    ckpt.save_checkpoint(
        model_output,
        checkpoint.model,
        like=replace(checkpoint, image_size=image_size),
        classes=classes,
        provenance={
            "stage": "prune",
            "masks": record_path(output, model_output),
            "masks_sha256": masks_sha,
            "source": record_path(checkpoint.path, model_output),
            "source_sha256": checkpoint.sha256,
        },
    )
    return PruneSummary(
        masks=output,
        checkpoint=model_output,
        method=method,
        rate=rate,
        scope=scope,
        density=kept_fraction,
        layers=layers,
        seconds=time.perf_counter() - started,
    )


def _previous_masks(
    masks: Path | None,
    scores: Artifact | None,
    checkpoint: ckpt.Checkpoint,
    weights: dict[str, torch.Tensor],
) -> Artifact | None:
    """Masks already applied: ``--masks``, else those the importance was scored under, else the
    ones the checkpoint names. Their removed weights stay removed."""
    path = masks
    if path is None and scores is not None and scores.metadata.get("masks"):
        path = scores.recorded_path("masks")
        if not path.is_file():
            raise InputError(
                f"{scores.path} was scored under masks {path}, which no longer exist; pass "
                "--masks with the masks the model was pruned with"
            )
    if path is None and checkpoint.provenance.get("masks"):
        candidate = resolve_recorded(checkpoint.provenance["masks"], checkpoint.path)
        path = candidate if candidate.is_file() else None
    if path is None:
        return None
    artifact = read_masks(path)
    check_fits(artifact.tensors, weights, source=artifact.path, model_name=str(checkpoint.path))
    return artifact


def _int_or_none(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


# --------------------------------------------------------------------------------------- finetune


@dataclass
class FinetuneSummary:
    output: Path
    masks: Path | None
    history: list[Any]
    best_epoch: int | None
    density: float
    train_split: str | None
    val_split: str | None
    seconds: float = 0.0


def finetune(
    *,
    model: ModelSource | None = None,
    data: DataSpec | None = None,
    masks: Path | None = None,
    output: Path = DEFAULT_FINETUNED,
    loading: Loading = Loading(),
    epochs: int = 3,
    lr: float = 1e-4,
    lr_milestones: Sequence[int] = (),
    lr_gamma: float = 0.1,
    val_split: str | None = None,
    augment: bool = True,
    dense: bool = False,
    seed: int = 0,
    progress: ProgressSink | None = None,
) -> FinetuneSummary:
    """Train the pruned model on its target labels with the masks enforced -> ``output``.

    Model and data default to what the masks file records. The validation split (``val`` when
    present, or ``val_split``; ``"none"`` turns it off) picks the best epoch. ``dense`` trains
    ``model`` without any masks (the starting model of an experiment).
    """
    from .masks import apply_masks, nonzero_density
    from .training import finetune as train

    started = time.perf_counter()
    progress = progress or NoProgress()
    if epochs < 1:
        raise InputError(f"--epochs {epochs}: must be at least 1")
    if not lr > 0:
        raise InputError(f"--lr {lr}: must be positive")
    milestones = list(lr_milestones)
    in_range = all(isinstance(m, int) and 0 < m < epochs for m in milestones)
    if not in_range or milestones != sorted(set(milestones)):
        allowed = f"increasing epochs between 1 and {epochs - 1}" if epochs > 1 else "none with --epochs 1"
        raise InputError(f"--lr-milestones {','.join(map(str, lr_milestones))}: {allowed}")
    if dense and (model is None or masks is not None):
        raise InputError("dense training needs MODEL and no --masks")
    masks_artifact = None if dense else _finetune_masks(masks, model)
    if model is None:
        recorded = masks_artifact.recorded_path("model")
        if recorded is None:
            raise InputError(f"{masks_artifact.path} does not record its model; pass MODEL")
        model = ModelSource(recorded, default_arch=_recorded(masks_artifact, "arch"))
    else:
        model = replace(model, default_arch=_recorded(masks_artifact, "arch"))
    if masks_artifact is not None:
        spec = _data_spec_from(masks_artifact, data)
    elif data is None or data.root is None:
        raise InputError("pass DATA: there is no masks file to record it")
    else:
        spec = data
    refuse_overwriting_inputs(
        [output], [model.path, masks_artifact.path if masks_artifact else None]
    )
    seed_everything(seed)

    checkpoint = model.load()
    weights = ckpt.prunable_parameters(checkpoint.model)
    if masks_artifact is not None:
        check_fits(
            masks_artifact.tensors, weights, source=masks_artifact.path,
            model_name=str(checkpoint.path),
        )  # fmt: skip
        _warn_if_other_model(masks_artifact, checkpoint, "masks")
        apply_masks(weights, masks_artifact.tensors)
    image_size = (
        loading.image_size
        or checkpoint.image_size
        or _int_or_none(_recorded(masks_artifact, "image_size"))
    )
    classes = checkpoint.classes or _recorded(masks_artifact, "classes")
    train_data = _prepare_data(
        spec, checkpoint, image_size=image_size, default_split=("train",), classes=classes
    )
    val_data = _validation_data(spec, checkpoint, train_data, val_split)

    device = resolve_device(loading.device)
    checkpoint.model.to(device)
    mean, std = checkpoint.normalization
    prepare = Normalizer(mean, std, device)
    generator = torch.Generator().manual_seed(seed)
    rows = len(train_data.table)
    task = progress.add_task("fine-tuning", total=epochs * rows)

    def train_batches(epoch: int):
        batches = shuffled_batches(rows, loading.batch_size, generator)
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()  # BatchNorm cannot train on a batch of one
        progress.update(task, description=f"fine-tuning epoch {epoch}/{epochs}")
        return _loader(train_data, batches, loading, spec, device)

    def val_batches():
        batches = sequential_batches(len(val_data.table), loading.batch_size)
        return _loader(val_data, batches, loading, spec, device)

    masks_tensors = masks_artifact.tensors if masks_artifact is not None else {}
    result = train(
        model=checkpoint.model,
        weights=weights,
        masks=masks_tensors,
        train_batches=train_batches,
        val_batches=val_batches if val_data is not None else None,
        prepare=prepare,
        targets=train_data.targets,
        val_targets=val_data.targets if val_data is not None else None,
        epochs=epochs,
        lr=lr,
        lr_milestones=tuple(lr_milestones),
        lr_gamma=lr_gamma,
        seed=seed,
        augment=augment,
        on_batch=lambda n: progress.advance(task, n),
    )
    checkpoint.model.to("cpu")
    history = [record.__dict__ for record in result.history]
    provenance = {
        "stage": "finetune",
        "source": record_path(checkpoint.path, output),
        "source_sha256": checkpoint.sha256,
        "epochs": epochs,
        "lr": lr,
        "lr_milestones": list(lr_milestones),
        "lr_gamma": lr_gamma,
        "best_epoch": result.best_epoch,
        "history": history,
    }
    if masks_artifact is not None:
        provenance["masks"] = record_path(masks_artifact.path, output)
        provenance["masks_sha256"] = masks_artifact.sha256
    ckpt.save_checkpoint(
        output,
        checkpoint.model,
        like=replace(checkpoint, image_size=train_data.image_size),
        classes=train_data.classes,
        provenance=provenance,
    )
    return FinetuneSummary(
        output=output,
        masks=masks_artifact.path if masks_artifact else None,
        history=history,
        best_epoch=result.best_epoch,
        density=nonzero_density(weights),
        train_split=train_data.table.split,
        val_split=val_data.table.split if val_data else None,
        seconds=time.perf_counter() - started,
    )


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
        val_data = _prepare_data(
            replace(spec, split=val_split or "val", min_group_size=1),
            checkpoint,
            image_size=train_data.image_size,
            default_split=(),
            classes=train_data.classes,
        )
    except InputError:
        if val_split is not None:
            raise
        return None  # no "val" split: keep the last epoch
    return val_data


# ----------------------------------------------------------------------------------------- report


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
    json_output: Path | None = None,
    html_output: Path | None = None,
    progress: ProgressSink | None = None,
) -> ReportResult:
    """Per-group accuracy of ``model`` (and drop from ``baseline``), disparity, CI conditions."""
    from .masks import nonzero_density
    from .metrics import build_report, group_accuracies, parse_condition, predict
    from .report import save_report

    progress = progress or NoProgress()
    conditions = [parse_condition(text, has_baseline=baseline is not None) for text in fail_if]
    if not data.group_columns:
        raise InputError("--groups is required: the column(s) to compare accuracy across")
    refuse_overwriting_inputs([json_output, html_output], [model.path, baseline.path if baseline else None])

    checkpoint = model.load()
    prepared = _prepare_data(
        data, checkpoint, image_size=loading.image_size, default_split=("test", "val")
    )
    models = [checkpoint]
    if baseline is not None:
        reference = baseline.load()
        _, _ = resolve_classes(
            prepared.table, num_classes=reference.num_classes,
            checkpoint_classes=reference.classes, model_name=str(reference.path),
        )  # fmt: skip
        if reference.classes is not None and reference.classes != prepared.classes:
            raise InputError(
                f"{reference.path} orders its classes differently from {checkpoint.path}"
            )
        models.append(reference)

    device = resolve_device(loading.device)
    table = prepared.table
    batches = sequential_batches(len(table), loading.batch_size)
    loader = _loader(prepared, batches, loading, data, device)
    task = progress.add_task("evaluating", total=len(table))
    prepares = []
    for loaded in models:
        loaded.model.to(device)
        prepares.append(Normalizer(*loaded.normalization, device))
    predictions = predict(
        [loaded.model for loaded in models],
        loader,
        prepares,
        len(table),
        on_batch=lambda n: progress.advance(task, n),
    )
    groups = group_accuracies(predictions[0], prepared.targets, table.group_index, table.group_names)
    baseline_groups = None
    if baseline is not None:
        baseline_groups = group_accuracies(
            predictions[1], prepared.targets, table.group_index, table.group_names
        )
    result = build_report(
        model=str(model.path),
        data=str(data.root),
        split=table.split,
        target=table.target,
        attribute=table.attribute,
        density=nonzero_density(ckpt.prunable_parameters(checkpoint.model)),
        groups=groups,
        baseline_groups=baseline_groups,
    )
    result["baseline"] = str(baseline.path) if baseline else None
    result["pruning"] = _pruning_settings(checkpoint)
    save_report(result, json_output=json_output, html_output=html_output)
    failed = [condition.text for condition in conditions if condition.holds(result)]
    return ReportResult(result, failed, sum(table.skipped.values()) + loader.bad_images)


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
    return {key: metadata.get(key) for key in ("method", "rate", "scope", "density")}

"""The score stage: per-group importance of every prunable weight -> importance.safetensors.

resolve (:func:`resolve_score`: flags checked into a :class:`ScoreInputs`, no model loaded) ->
load (the checkpoint, its data, the masks it is scored under) -> compute (``method.scoring``)
-> write (the artifact and its provenance).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from .._progress import NoProgress, ProgressSink
from ..devices import resolve_device, seed_everything
from ..errors import InputError
from ..io import checkpoints as ckpt
from ..io.artifacts import IMPORTANCE_FORMAT, Artifact, float16_scaled, read_masks, write_artifact
from ..io.data import DataSpec, require_groups
from ..io.files import record_path, refuse_overwriting_inputs
from ..io.images import Normalizer
from ..method.batches import group_pure_batches, share_of_each_group
from ._inputs import (
    STORED_DTYPES,
    Loading,
    ModelSource,
    PreparedData,
    covered_layers,
    image_loader,
    prepare_data,
)


@dataclass
class ScoreSummary:
    """What :func:`score` wrote and measured."""

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


@dataclass(frozen=True)
class ScoreInputs:
    """Everything score works on, checked; ``masks`` None: the ones the model names, if any."""

    model: ModelSource
    data: DataSpec
    output: Path
    masks: Path | None
    loading: Loading
    max_batches: int | None
    samples_per_group: int | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    dtype: str
    seed: int


def resolve_score(
    *,
    model: ModelSource,
    data: DataSpec,
    output: Path,
    masks: Path | None = None,
    loading: Loading = Loading(),
    max_batches: int | None = None,
    samples_per_group: int | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    dtype: str = "float32",
    seed: int = 0,
) -> ScoreInputs:
    """Check score's flags (groups named, dtype known, counts positive, no input overwritten)."""
    require_groups(data, "the column(s) whose groups importance is kept for")
    if dtype not in STORED_DTYPES:
        raise InputError(f"--dtype {dtype}: choose one of {', '.join(STORED_DTYPES)}")
    for flag, value in (("--max-batches", max_batches), ("--samples-per-group", samples_per_group)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}: must be at least 1")
    refuse_overwriting_inputs([output], [model.path, masks])
    return ScoreInputs(
        model, data, Path(output), masks, loading, max_batches, samples_per_group, tuple(include), tuple(exclude),
        dtype, seed,
    )  # fmt: skip


@dataclass
class _Loaded:
    checkpoint: ckpt.Checkpoint
    prepared: PreparedData
    weights: dict[str, torch.Tensor]  # the layers scored
    masks: Artifact | None  # what the whole model is scored under


def score(
    *,
    model: ModelSource,
    data: DataSpec,
    output: Path,
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
    """Per-group importance of every prunable weight of ``model`` on ``data`` -> ``output``.

    Under torchrun each rank scores a share of every group's batches; the sums are added up
    before the mean, and rank 0 writes.
    """
    from ..method.scoring import importance_means

    started = time.perf_counter()
    device = resolve_device(loading.device)
    runtime = distributed.start(device)
    with runtime.together():  # every rank checks the inputs before any collective
        inputs = resolve_score(
            model=model, data=data, output=output, masks=masks, loading=loading, max_batches=max_batches,
            samples_per_group=samples_per_group, include=include, exclude=exclude, dtype=dtype, seed=seed,
        )  # fmt: skip
        seed_everything(seed)
        loaded = _load(inputs)
    scored, skipped_images = _accumulate(inputs, loaded, device, runtime, progress or NoProgress())
    with runtime.together():
        result = importance_means(scored, loaded.prepared.table.group_names)
    loaded.checkpoint.model.to("cpu")
    with runtime.together():  # rank 0 writes; the others wait until the file is there
        if runtime.is_main:
            _write(inputs, loaded, result)
    table = loaded.prepared.table
    return ScoreSummary(
        output=inputs.output,
        groups=table.group_names,
        samples_per_group=result.samples_per_group,
        batches_per_group=result.batches_per_group,
        layers=len(loaded.weights),
        weights=sum(w.numel() for w in loaded.weights.values()),
        split=table.split,
        dropped_groups=table.dropped_groups,
        skipped_images=sum(table.skipped.values()) + skipped_images,
        seconds=time.perf_counter() - started,
    )


def _load(inputs: ScoreInputs) -> _Loaded:
    """The model (masked as its masks say), the data it is scored on, the layers scored."""
    from ..method.masks import apply_masks

    checkpoint = inputs.model.load(weights_for="score")
    prepared = prepare_data(inputs.data, checkpoint, image_size=inputs.loading.image_size, default_split=("train",),
                            image_size_from=inputs.loading.image_size_from)
    weights = ckpt.prunable_parameters(checkpoint.model, inputs.include, inputs.exclude)
    path = inputs.masks if inputs.masks is not None else ckpt.named_masks(checkpoint)
    masks = None
    if path is not None:
        masks = read_masks(path)
        covered_layers(masks, checkpoint, "masks", remedy="Prune the model again to make its masks.")
        apply_masks(ckpt.prunable_parameters(checkpoint.model), masks.tensors)  # the whole model, as pruned
    return _Loaded(checkpoint, prepared, weights, masks)


def _accumulate(
    inputs: ScoreInputs, loaded: _Loaded, device: torch.device, runtime: distributed.Runtime, progress: ProgressSink
):
    """Importance sums over this rank's group-pure batches, added up over the ranks; and the
    images no rank could read."""
    from ..method.scoring import accumulate_importance

    table, checkpoint = loaded.prepared.table, loaded.checkpoint
    checkpoint.model.to(device)
    batches = group_pure_batches(
        table.group_index, len(table.group_names), batch_size=inputs.loading.batch_size,
        max_batches=inputs.max_batches, samples_per_group=inputs.samples_per_group, seed=inputs.seed,
    )  # fmt: skip
    # under torchrun each rank scores batch i of each group with i % world == rank: the batches
    # are a single process's, their sums are added up across ranks before the mean
    batches = share_of_each_group(batches, rank=runtime.rank, world_size=runtime.world_size)
    loader = image_loader(loaded.prepared, [rows for _, rows in batches], inputs.loading, inputs.data, device)
    totals = [0] * len(table.group_names)
    for group, rows in batches:
        totals[group] += len(rows)
    tasks = [
        progress.add_task(f"scoring {name}", total=totals[g], unit="images") for g, name in enumerate(table.group_names)
    ]
    scored = accumulate_importance(
        model=checkpoint.model,
        weights=loaded.weights,
        batches=runtime.agreed(loader),
        prepare=Normalizer(*checkpoint.normalization, device),
        targets=loaded.prepared.targets,
        group_index=table.group_index,
        group_names=table.group_names,
        on_batch=lambda group, n: progress.advance(tasks[group], n),
    )
    return scored, _sum_over_ranks(runtime, scored, loader.bad_images)


def _sum_over_ranks(runtime: distributed.Runtime, scored, bad_images: int) -> int:
    """Add up the ranks' importance sums and counts in place; returns the bad images of all ranks."""
    for values in scored.sums.values():
        runtime.sum_(values)
    counts = torch.tensor([*scored.batches_per_group, *scored.samples_per_group, bad_images], dtype=torch.int64)
    runtime.sum_(counts)
    groups = len(scored.batches_per_group)
    scored.batches_per_group = counts[:groups].tolist()
    scored.samples_per_group = counts[groups : 2 * groups].tolist()
    return int(counts[-1])


def _write(inputs: ScoreInputs, loaded: _Loaded, result) -> None:
    """The importance in its stored dtype, with what it was made from (docs/design.md, "Importance")."""
    stored, scales = result.importance, {}
    for name, values in stored.items():  # converted layer by layer: never two full copies
        if inputs.dtype == "float16":
            stored[name], scales[name] = float16_scaled(values)
        else:
            stored[name] = values.to(STORED_DTYPES[inputs.dtype])
    write_artifact(inputs.output, stored, _metadata(inputs, loaded, result, scales))


def _metadata(inputs: ScoreInputs, loaded: _Loaded, result, scales: dict[str, float]) -> dict[str, Any]:
    from ..method.scoring import CRITERION

    output, data, checkpoint, prepared = inputs.output, inputs.data, loaded.checkpoint, loaded.prepared
    table = prepared.table
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
        "arch_args": checkpoint.arch_args or None,
        "data": record_path(data.root, output),
        "labels": record_path(data.labels, output) if data.labels else None,
        "split": table.split or "",
        "target": table.target,
        **prepared.names(),
        "image_size": str(prepared.image_size),
        "batch_size": str(inputs.loading.batch_size),
        "dropped_groups": table.dropped_groups or None,
        "scales": scales or None,
        "include": list(inputs.include),  # so a later stage knows a subset of the layers was meant
        "exclude": list(inputs.exclude),
    }
    if loaded.masks is not None:
        metadata["masks"] = record_path(loaded.masks.path, output)
        metadata["masks_sha256"] = loaded.masks.sha256
    return metadata

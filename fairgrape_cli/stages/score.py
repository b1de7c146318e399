"""The score stage: per-group importance of every prunable weight -> importance.safetensors."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import distributed
from .._progress import NoProgress, ProgressSink
from ..devices import resolve_device, seed_everything
from ..errors import InputError
from ..io import checkpoints as ckpt
from ..io.artifacts import IMPORTANCE_FORMAT, Artifact, float16_scaled, read_masks, write_artifact
from ..io.data import DataSpec, require_groups
from ..io.files import record_path, refuse_overwriting_inputs, resolve_recorded
from ..io.images import Normalizer
from ..method.batches import group_pure_batches, share_of_each_group
from ._inputs import (
    DEFAULT_IMPORTANCE,
    STORED_DTYPES,
    Loading,
    ModelSource,
    covered_layers,
    image_loader,
    prepare_data,
)

log = logging.getLogger("fairgrape")


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
    from ..method.masks import apply_masks
    from ..method.scoring import CRITERION, accumulate_importance, importance_means

    started = time.perf_counter()
    progress = progress or NoProgress()
    device = resolve_device(loading.device)
    runtime = distributed.start(device)
    with runtime.together():  # every rank checks the inputs before any collective
        require_groups(data, "the column(s) whose groups importance is kept for")
        if dtype not in STORED_DTYPES:
            raise InputError(f"--dtype {dtype}: choose one of {', '.join(STORED_DTYPES)}")
        for flag, value in (("--max-batches", max_batches), ("--samples-per-group", samples_per_group)):
            if value is not None and value < 1:
                raise InputError(f"{flag} {value}: must be at least 1")
        refuse_overwriting_inputs([output], [model.path, masks])
        seed_everything(seed)

        checkpoint = model.load()
        prepared = prepare_data(data, checkpoint, image_size=loading.image_size, default_split=("train",))
        table = prepared.table
        weights = ckpt.prunable_parameters(checkpoint.model, include, exclude)
        masks_artifact = _scoring_masks(masks, checkpoint)
        if masks_artifact is not None:  # the whole model is scored as pruned, not only these layers
            apply_masks(ckpt.prunable_parameters(checkpoint.model), masks_artifact.tensors)

    checkpoint.model.to(device)
    batches = group_pure_batches(
        table.group_index,
        len(table.group_names),
        batch_size=loading.batch_size,
        max_batches=max_batches,
        samples_per_group=samples_per_group,
        seed=seed,
    )
    # under torchrun each rank scores batch i of each group with i % world == rank: the batches
    # are a single process's, their sums are added up across ranks before the mean
    batches = share_of_each_group(batches, rank=runtime.rank, world_size=runtime.world_size)
    loader = image_loader(prepared, [rows for _, rows in batches], loading, data, device)
    totals = [0] * len(table.group_names)
    for group, rows in batches:
        totals[group] += len(rows)
    tasks = [
        progress.add_task(f"scoring {name}", total=totals[g], unit="images")
        for g, name in enumerate(table.group_names)
    ]
    mean, std = checkpoint.normalization
    scored = accumulate_importance(
        model=checkpoint.model,
        weights=weights,
        batches=runtime.agreed(loader),
        prepare=Normalizer(mean, std, device),
        targets=prepared.targets,
        group_index=table.group_index,
        group_names=table.group_names,
        on_batch=lambda group, n: progress.advance(tasks[group], n),
    )
    skipped_images = _sum_over_ranks(runtime, scored, loader.bad_images)
    with runtime.together():
        result = importance_means(scored, table.group_names)
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
        "arch_args": checkpoint.arch_args or None,
        "data": record_path(data.root, output),
        "labels": record_path(data.labels, output) if data.labels else None,
        "split": table.split or "",
        "target": table.target,
        **prepared.names(),
        "image_size": str(prepared.image_size),
        "batch_size": str(loading.batch_size),
        "dropped_groups": table.dropped_groups or None,
        "scales": scales or None,
        "include": list(include),  # so a later stage knows a subset of the layers was meant
        "exclude": list(exclude),
    }
    if masks_artifact is not None:
        metadata["masks"] = record_path(masks_artifact.path, output)
        metadata["masks_sha256"] = masks_artifact.sha256
    with runtime.together():  # rank 0 writes; the others wait until the file is there
        if runtime.is_main:
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
        skipped_images=sum(table.skipped.values()) + skipped_images,
        seconds=time.perf_counter() - started,
    )


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


def _scoring_masks(masks: Path | None, checkpoint: ckpt.Checkpoint) -> Artifact | None:
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
    covered_layers(artifact, checkpoint, "masks", remedy="Prune the model again to make its masks.")
    return artifact

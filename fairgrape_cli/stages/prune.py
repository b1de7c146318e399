"""The prune stage: importance (or the weights) -> masks.safetensors and a pruned checkpoint."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .._progress import NoProgress, ProgressSink
from ..errors import InputError
from ..io import checkpoints as ckpt
from ..io.artifacts import MASKS_FORMAT, Artifact, read_importance, read_masks, write_artifact
from ..io.data import DEFAULT_IMAGE_SIZE
from ..io.files import all_or_none, record_path, refuse_overwriting_inputs, resolve_recorded
from ._inputs import (
    DEFAULT_IMPORTANCE,
    DEFAULT_MASKS,
    DEFAULT_PRUNED,
    ModelSource,
    covered_layers,
    int_or_none,
    recorded_patterns,
    recorded_value,
    warn_if_other_model,
)
from ._size import model_size

GRANULARITIES = ("weight", "channel")


@dataclass
class PruneSummary:
    masks: Path
    checkpoint: Path
    method: str
    rate: float
    scope: str
    density: float
    layers: dict[str, tuple[int, int]]  # name -> (kept, size); channel groups: (kept, dense) channels
    granularity: str = "weight"
    size: dict[str, Any] = field(default_factory=dict)  # params, flops, dense_params, dense_flops
    seconds: float = 0.0


def _one_torch_thread(function):
    """Run ``function`` with torch's own thread pool at one thread: selection runs its own two
    threads; torch's pool beside them (or on a busy machine) made even the masks' bookkeeping
    sums up to 50x slower (measured), and the sorts slower rather than faster."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        from ..method.ranking import torch_threads

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
    granularity: str = "weight",
    progress: ProgressSink | None = None,
) -> PruneSummary:
    """Masks at ``rate`` from an importance file (and/or the model) -> masks + pruned checkpoint.

    ``granularity="channel"`` removes whole coupled channel groups (``rate`` = the fraction of
    channels removed): the checkpoint is the slim model, the masks are in its (slim) shapes.
    """
    from ..method.masks import apply_masks
    from ..method.selection import build_masks, check_options, get_criterion, warm_up

    started = time.perf_counter()
    progress = progress or NoProgress()
    check_options(rate=rate, scope=scope, min_layer_density=min_layer_density)
    if granularity not in GRANULARITIES:
        raise InputError(f"--granularity {granularity}: choose {' or '.join(GRANULARITIES)}")
    criterion = get_criterion(method)

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
        model = ModelSource(recorded).recorded_by(scores)
    else:
        model = model.recorded_by(scores)

    threading.Thread(target=warm_up, name="fairgrape-warm-up", daemon=True).start()  # beside the load
    checkpoint = model.load()
    # a Hugging Face model is written as a folder: pruned/, not pruned.pt
    model_output = model_output or ckpt.default_model_output(output.with_name(DEFAULT_PRUNED), checkpoint)
    if scores is not None:  # the layers to prune must all be scored, unless the subset was meant
        weights = covered_layers(
            scores, checkpoint, "importance", include=include, exclude=exclude, leading_dims=1,
            remedy="If only some layers were meant, say which with --include/--exclude.",
        )  # fmt: skip
        warn_if_other_model(scores, checkpoint, "importance")
    else:
        weights = ckpt.prunable_parameters(checkpoint.model, include, exclude)
    # recorded in the masks, so later stages know which layers they were meant to cover
    include, exclude = (list(include), list(exclude)) if include or exclude else recorded_patterns(scores)
    previous = _previous_masks(masks, scores, checkpoint)
    refuse_overwriting_inputs(
        [output, model_output],
        [checkpoint.path, scores.path if scores else None, previous.path if previous else None],
    )
    recorded_size = int_or_none(recorded_value(scores, "image_size"))
    image_size = checkpoint.image_size or recorded_size or DEFAULT_IMAGE_SIZE

    if granularity == "channel":
        built, layers, kept_fraction, extra = _select_channels(
            checkpoint, weights, scores, previous, method=method, rate=rate, scope=scope,
            min_layer_density=min_layer_density, seed=seed, image_size=image_size, progress=progress,
        )  # fmt: skip
        slim = ckpt.prunable_parameters(checkpoint.model)  # the removal replaced the parameters
        weights = {name: slim[name] for name in built}
    else:
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
        extra = {}
    metadata = {
        "format": MASKS_FORMAT,
        "method": method,
        "rate": str(rate),
        "scope": scope,
        "granularity": granularity,
        "min_layer_density": str(min_layer_density) if scope == "global" else None,
        "seed": str(seed) if method == "random" else None,
        "importance": record_path(scores.path, output) if scores else None,
        "importance_sha256": scores.sha256 if scores else None,
        "model": record_path(checkpoint.path, output),
        "model_sha256": checkpoint.sha256,
        "arch": checkpoint.arch,
        "arch_args": checkpoint.arch_args or None,
        "density": str(kept_fraction),
        "previous_masks": record_path(previous.path, output) if previous else None,
        "checkpoint": record_path(model_output, output),
        "include": include,
        "exclude": exclude,
        **extra,
    }
    for key in ("data", "labels"):  # re-anchor the data paths the importance file records
        recorded = scores.recorded_path(key) if scores else None
        metadata[key] = record_path(recorded, output) if recorded else None
    for key in ("target", "attribute", "groups", "classes", "attributes", "image_size"):
        metadata[key] = recorded_value(scores, key)
    apply_masks(weights, built)
    classes = checkpoint.classes or recorded_value(scores, "classes")
    attributes = checkpoint.attributes or recorded_value(scores, "attributes")
    saved_like = replace(checkpoint, image_size=checkpoint.image_size or recorded_size, attributes=attributes)
    with all_or_none():  # the masks and the checkpoint that names them, or neither (a full disk)
        masks_sha = write_artifact(output, built, metadata)
        ckpt.save_checkpoint(
            model_output,
            checkpoint.model,
            like=saved_like,
            classes=classes,
            provenance={
                "stage": "prune",
                "masks": record_path(output, model_output),
                "masks_sha256": masks_sha,
                "source": record_path(checkpoint.path, model_output),
                "source_sha256": checkpoint.sha256,
            },
        )
    size = model_size(checkpoint, image_size)
    return PruneSummary(
        masks=output,
        checkpoint=model_output,
        method=method,
        rate=rate,
        scope=scope,
        density=kept_fraction,
        layers=layers,
        granularity=granularity,
        size=size,
        seconds=time.perf_counter() - started,
    )


def _previous_masks(
    masks: Path | None, scores: Artifact | None, checkpoint: ckpt.Checkpoint
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
    covered_layers(artifact, checkpoint, "masks", remedy="Prune the model again to make its masks.")
    return artifact


def _select_channels(
    checkpoint: ckpt.Checkpoint,
    weights: dict[str, torch.Tensor],
    scores: Artifact | None,
    previous: Artifact | None,
    *,
    method: str,
    rate: float,
    scope: str,
    min_layer_density: float,
    seed: int,
    image_size: int,
    progress: ProgressSink,
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, int]], float, dict[str, Any]]:
    """Remove coupled channel groups from ``checkpoint.model`` in place. Returns the masks of the
    slim model (the previous masks cut to its shapes, else all kept), the kept and dense channels
    of each group, the kept fraction of the dense model's prunable weights, and masks metadata."""
    from ..method.channel_groups import ChannelGraph
    from ..method.masks import apply_masks
    from ..method.selection import get_criterion
    from ..method.units import select_units, unit_importance, unit_norms

    if checkpoint.kind == "torchscript":
        raise InputError(
            f"{checkpoint.path} is TorchScript: --granularity channel needs the model's Python "
            "layers (a native checkpoint, a state dict with --arch, or a trusted module)"
        )
    if previous is not None:
        apply_masks(weights, previous.tensors)  # masked weights count as the zeros they are
    task = progress.add_task("tracing channel dependencies", total=None)
    graph = ChannelGraph(
        checkpoint.model, weights=weights, example_input=torch.zeros(1, 3, image_size, image_size)
    )
    progress.update(task, total=1, completed=1)
    if not graph.groups:
        raise InputError(
            f"{checkpoint.path} has no channel group that can be removed (the classifier's outputs "
            "never are, nor groups that reach layers left out by --include/--exclude)"
        )
    reference = (
        ckpt.dense_reference(checkpoint.arch, checkpoint.num_classes, arch_args=checkpoint.arch_args)
        if checkpoint.arch else None
    )  # fmt: skip
    dense_weights = dict(reference.named_parameters()) if reference is not None else {}
    dense_sizes = {}
    for group in graph.groups:  # units at the dense width: channels, or heads of unit_width channels
        dense = dense_weights.get(f"{group.name}.weight")
        dense_sizes[group.name] = int(dense.shape[group.out_dim]) // group.unit_width if dense is not None else group.size

    needs_importance = get_criterion(method).needs_importance
    task = progress.add_task(f"selecting channels ({method}, {scope})", total=len(graph.groups))
    kept = select_units(
        norms=unit_norms(graph.groups, weights),
        importance=unit_importance(graph.groups, scores.tensors) if needs_importance else None,
        dense_sizes=dense_sizes, method=method, rate=rate, scope=scope,
        min_layer_density=min_layer_density, seed=seed,
        on_layer=lambda _name: progress.advance(task, 1),
    )  # fmt: skip
    before = {
        name: previous.tensors[name] if previous is not None and name in previous.tensors
        else torch.ones(weight.shape, dtype=torch.bool)
        for name, weight in weights.items()
    }  # fmt: skip
    built = graph.remove(kept, before)
    layers = {group.name: (int(kept[group.name].sum()), dense_sizes[group.name]) for group in graph.groups}
    dense_total = sum(
        dense_weights[name].numel() if name in dense_weights else weights[name].numel() for name in built
    )
    kept_weights = sum(int(mask.count_nonzero()) for mask in built.values())
    kept_fraction = kept_weights / dense_total if dense_total else 1.0
    channels_kept = sum(count for count, _ in layers.values())
    channels_dense = sum(width for _, width in layers.values())
    extra = {
        "channels": {name: list(counts) for name, counts in layers.items()},
        "channel_density": str(channels_kept / channels_dense if channels_dense else 1.0),
    }
    return built, layers, kept_fraction, extra


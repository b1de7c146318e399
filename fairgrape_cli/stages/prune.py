"""The prune stage: importance (or the weights) -> masks.safetensors and a pruned checkpoint.

resolve (:func:`resolve_prune`: the flags checked, the importance file's header read, the model
it records; no model loaded) -> load (the checkpoint, the layers to prune, the masks already
applied) -> compute (``method.selection``, or ``method.units`` for channels) -> write (the
masks and the checkpoint that names them, both or neither).
"""

from __future__ import annotations

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
from ..io.files import all_or_none, record_path, refuse_overwriting_inputs
from ..io.reports import ModelSize
from ._inputs import (
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
    """What :func:`prune` wrote and kept."""

    masks: Path
    checkpoint: Path
    method: str
    rate: float
    scope: str
    density: float
    layers: dict[str, tuple[int, int]]  # name -> (kept, size); channel groups: (kept, dense) channels
    granularity: str = "weight"
    size: ModelSize = field(default_factory=ModelSize)  # params, flops, dense_params, dense_flops, ...
    seconds: float = 0.0


@dataclass(frozen=True)
class PruneInputs:
    """Everything prune works on, checked. ``importance`` is read lazily (one layer at a time);
    ``previous_masks`` None: the ones the checkpoint names, if any (read when it is loaded)."""

    rate: float
    method: str
    scope: str
    min_layer_density: float
    granularity: str
    model: ModelSource
    importance: Artifact | None
    previous_masks: Path | None
    output: Path
    model_output: Path  # given, else pruned.pt beside the masks
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    seed: int
    model_output_given: bool = True  # False: a Hugging Face model goes to the folder pruned/ instead


def resolve_prune(
    *,
    rate: float,
    output: Path,
    model: ModelSource | None = None,
    importance: Path | None = None,
    method: str = "fairgrape",
    scope: str = "layer",
    min_layer_density: float = 0.01,
    masks: Path | None = None,
    model_output: Path | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    seed: int = 0,
    granularity: str = "weight",
) -> PruneInputs:
    """Check prune's flags; read the importance file's header and take the model it records
    when none is given. The pruned checkpoint goes beside the masks unless ``model_output``."""
    from ..method.selection import CRITERIA, check_options

    check_options(rate=rate, scope=scope, min_layer_density=min_layer_density)
    if granularity not in GRANULARITIES:
        raise InputError(f"--granularity {granularity}: choose {' or '.join(GRANULARITIES)}")
    needs_importance = CRITERIA.choose(method).needs_importance
    scores = None
    if importance is not None:
        if not Path(importance).exists():
            raise InputError(
                f"{importance} not found: run `fairgrape score MODEL DATA --groups COL` first"
                + ("" if needs_importance else ", or pass MODEL")
            )
        scores = read_importance(importance, lazy=True)  # one layer in memory at a time
    elif needs_importance or model is None:
        raise InputError(
            f"--method {method} needs an importance file (run `fairgrape score MODEL DATA --groups COL` first)"
            if model is not None else "pass MODEL, or an importance file that records it"
        )  # fmt: skip
    if model is None:
        recorded = scores.recorded_path("model")
        if recorded is None:
            raise InputError(f"{scores.path} does not record its model; pass MODEL")
        model = ModelSource(recorded).recorded_by(scores)
    else:
        model = model.recorded_by(scores)
    output = Path(output)
    return PruneInputs(
        rate, method, scope, min_layer_density, granularity, model, scores, _previous_masks_path(masks, scores),
        output, Path(model_output) if model_output else output.with_name(DEFAULT_PRUNED),
        tuple(include), tuple(exclude), seed, model_output_given=model_output is not None,
    )  # fmt: skip


def _previous_masks_path(masks: Path | None, scores: Artifact | None) -> Path | None:
    """Masks already applied: ``--masks``, else those the importance was scored under (which
    must still be there). None: the ones the checkpoint names, looked up when it is loaded."""
    if masks is not None or scores is None or not scores.metadata.get("masks"):
        return masks
    path = scores.recorded_path("masks")
    if not path.is_file():
        raise InputError(
            f"{scores.path} was scored under masks {path}, which no longer exist; pass "
            "--masks with the masks the model was pruned with"
        )
    return path


@dataclass
class _Loaded:
    checkpoint: ckpt.Checkpoint
    weights: dict[str, torch.Tensor]  # the layers to prune
    include: list[str]  # the patterns recorded in the masks (given, else the importance's)
    exclude: list[str]
    previous: Artifact | None
    image_size: int  # what the FLOPs are counted at, and the tracing input's side
    model_output: Path  # the pruned checkpoint's path


@dataclass
class _Selection:
    masks: dict[str, torch.Tensor]  # by layer, in the shapes of the model as it is now
    weights: dict[str, torch.Tensor]  # those layers of the (possibly slimmed) model
    layers: dict[str, tuple[int, int]]
    kept_fraction: float
    metadata: dict[str, Any]  # what the granularity adds to the masks' metadata


def prune(
    *,
    rate: float,
    output: Path,
    model: ModelSource | None = None,
    importance: Path | None = None,
    method: str = "fairgrape",
    scope: str = "layer",
    min_layer_density: float = 0.01,
    masks: Path | None = None,
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
    from ..method.selection import warm_up

    started = time.perf_counter()
    progress = progress or NoProgress()
    inputs = resolve_prune(
        rate=rate, output=output, model=model, importance=importance, method=method, scope=scope,
        min_layer_density=min_layer_density, masks=masks, model_output=model_output, include=include,
        exclude=exclude, seed=seed, granularity=granularity,
    )  # fmt: skip
    threading.Thread(target=warm_up, name="fairgrape-warm-up", daemon=True).start()  # beside the load
    loaded = _load(inputs)
    selection = _select_channels(inputs, loaded, progress) if granularity == "channel" else _select(inputs, loaded, progress)
    _write(inputs, loaded, selection)
    return PruneSummary(
        masks=inputs.output,
        checkpoint=loaded.model_output,
        method=method,
        rate=rate,
        scope=scope,
        density=selection.kept_fraction,
        layers=selection.layers,
        granularity=granularity,
        size=model_size(loaded.checkpoint, loaded.image_size),
        seconds=time.perf_counter() - started,
    )


def _load(inputs: PruneInputs) -> _Loaded:
    """The checkpoint; the layers to prune (all scored, unless a subset was meant); the masks
    already applied; refuses outputs that would overwrite an input."""
    scores = inputs.importance
    checkpoint = inputs.model.load(weights_for="prune")
    if scores is not None:  # the layers to prune must all be scored, unless the subset was meant
        weights = covered_layers(
            scores, checkpoint, "importance", include=inputs.include, exclude=inputs.exclude, leading_dims=1,
            remedy="If only some layers were meant, say which with --include/--exclude.",
        )  # fmt: skip
        warn_if_other_model(scores, checkpoint, "importance")
    else:
        weights = ckpt.prunable_parameters(checkpoint.model, inputs.include, inputs.exclude)
    # recorded in the masks, so later stages know which layers they were meant to cover
    include, exclude = (
        (list(inputs.include), list(inputs.exclude)) if inputs.include or inputs.exclude else recorded_patterns(scores)
    )
    path = inputs.previous_masks if inputs.previous_masks is not None else ckpt.named_masks(checkpoint)
    previous = read_masks(path) if path is not None else None
    if previous is not None:
        covered_layers(previous, checkpoint, "masks", remedy="Prune the model again to make its masks.")
    # a Hugging Face model is written as a folder: pruned/, not pruned.pt
    model_output = inputs.model_output
    if not inputs.model_output_given:
        model_output = ckpt.default_model_output(model_output, checkpoint)
    refuse_overwriting_inputs(
        [inputs.output, model_output],
        [checkpoint.path, scores.path if scores else None, previous.path if previous else None],
    )
    recorded_size = int_or_none(recorded_value(scores, "image_size"))
    image_size = checkpoint.image_size or recorded_size or DEFAULT_IMAGE_SIZE
    return _Loaded(checkpoint, weights, include, exclude, previous, image_size, model_output)


def _select(inputs: PruneInputs, loaded: _Loaded, progress: ProgressSink) -> _Selection:
    """Single weights: the method's masks, layer by layer or over one pool."""
    from ..method.selection import build_masks

    task = progress.add_task(f"selecting ({inputs.method}, {inputs.scope})", total=len(loaded.weights))
    built = build_masks(
        weights=loaded.weights,
        method=inputs.method,
        rate=inputs.rate,
        importance=inputs.importance.tensors if inputs.importance is not None else None,
        previous=loaded.previous.tensors if loaded.previous is not None else None,
        scope=inputs.scope,
        min_layer_density=inputs.min_layer_density,
        seed=inputs.seed,
        on_layer=lambda _name: progress.advance(task, 1),
    )
    layers = {name: (int(mask.count_nonzero()), mask.numel()) for name, mask in built.items()}
    total = sum(size for _, size in layers.values())
    kept_fraction = sum(kept for kept, _ in layers.values()) / total if total else 1.0
    return _Selection(built, loaded.weights, layers, kept_fraction, {})


def _write(inputs: PruneInputs, loaded: _Loaded, selection: _Selection) -> None:
    """The masks and the pruned checkpoint that names them, or neither (a full disk)."""
    from ..method.masks import apply_masks

    scores, checkpoint = inputs.importance, loaded.checkpoint
    apply_masks(selection.weights, selection.masks)
    recorded_size = int_or_none(recorded_value(scores, "image_size"))
    saved_like = replace(
        checkpoint, image_size=checkpoint.image_size or recorded_size,
        attributes=checkpoint.attributes or recorded_value(scores, "attributes"),
    )  # fmt: skip
    with all_or_none():
        masks_sha = write_artifact(inputs.output, selection.masks, _metadata(inputs, loaded, selection))
        ckpt.save_checkpoint(
            loaded.model_output,
            checkpoint.model,
            like=saved_like,
            classes=checkpoint.classes or recorded_value(scores, "classes"),
            provenance={
                "stage": "prune",
                "masks": record_path(inputs.output, loaded.model_output),
                "masks_sha256": masks_sha,
                "source": record_path(checkpoint.path, loaded.model_output),
                "source_sha256": checkpoint.sha256,
            },
        )


def _metadata(inputs: PruneInputs, loaded: _Loaded, selection: _Selection) -> dict[str, Any]:
    """The masks' metadata (docs/design.md, "Masks"), with what the importance records about
    the data re-anchored to the masks file."""
    scores, output, checkpoint, previous = inputs.importance, inputs.output, loaded.checkpoint, loaded.previous
    metadata = {
        "format": MASKS_FORMAT,
        "method": inputs.method,
        "rate": str(inputs.rate),
        "scope": inputs.scope,
        "granularity": inputs.granularity,
        "min_layer_density": str(inputs.min_layer_density) if inputs.scope == "global" else None,
        "seed": str(inputs.seed) if inputs.method == "random" else None,
        "importance": record_path(scores.path, output) if scores else None,
        "importance_sha256": scores.sha256 if scores else None,
        "model": record_path(checkpoint.path, output),
        "model_sha256": checkpoint.sha256,
        "arch": checkpoint.arch,
        "arch_args": checkpoint.arch_args or None,
        "density": str(selection.kept_fraction),
        "previous_masks": record_path(previous.path, output) if previous else None,
        "checkpoint": record_path(loaded.model_output, output),
        "include": loaded.include,
        "exclude": loaded.exclude,
        **selection.metadata,
    }
    for key in ("data", "labels"):  # re-anchor the data paths the importance file records
        recorded = scores.recorded_path(key) if scores else None
        metadata[key] = record_path(recorded, output) if recorded else None
    for key in ("target", "attribute", "groups", "classes", "attributes", "image_size"):
        metadata[key] = recorded_value(scores, key)
    return metadata


def _select_channels(inputs: PruneInputs, loaded: _Loaded, progress: ProgressSink) -> _Selection:
    """Remove coupled channel groups from the checkpoint's model in place. The masks are the
    slim model's (the previous masks cut to its shapes, else all kept); each group's layers
    count kept and dense channels; the kept fraction is of the dense model's prunable weights."""
    from ..method.masks import apply_masks
    from ..method.selection import CRITERIA
    from ..method.units import select_units, unit_importance, unit_norms

    checkpoint, weights, previous = loaded.checkpoint, loaded.weights, loaded.previous
    if checkpoint.kind == "torchscript":
        raise InputError(
            f"{checkpoint.path} is TorchScript: --granularity channel needs the model's Python "
            "layers (a native checkpoint, a state dict with --arch, or a trusted module)"
        )
    if previous is not None:
        apply_masks(weights, previous.tensors)  # masked weights count as the zeros they are
    graph = _channel_graph(checkpoint, weights, loaded.image_size, progress)
    dense_weights, dense_sizes = _dense_widths(checkpoint, graph)
    needs_importance = CRITERIA.choose(inputs.method).needs_importance
    task = progress.add_task(f"selecting channels ({inputs.method}, {inputs.scope})", total=len(graph.groups))
    kept = select_units(
        norms=unit_norms(graph.groups, weights),
        importance=unit_importance(graph.groups, inputs.importance.tensors) if needs_importance else None,
        dense_sizes=dense_sizes, method=inputs.method, rate=inputs.rate, scope=inputs.scope,
        min_layer_density=inputs.min_layer_density, seed=inputs.seed,
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
    channels_kept = sum(count for count, _ in layers.values())
    channels_dense = sum(width for _, width in layers.values())
    extra = {
        "channels": {name: list(counts) for name, counts in layers.items()},
        "channel_density": str(channels_kept / channels_dense if channels_dense else 1.0),
    }
    slim = ckpt.prunable_parameters(checkpoint.model)  # the removal replaced the parameters
    kept_fraction = kept_weights / dense_total if dense_total else 1.0
    return _Selection(built, {name: slim[name] for name in built}, layers, kept_fraction, extra)


def _channel_graph(checkpoint: ckpt.Checkpoint, weights: dict[str, torch.Tensor], image_size: int, progress):
    """The model's coupled channel groups (Torch-Pruning's dependency graph), refused if none."""
    from ..method.channel_groups import ChannelGraph

    task = progress.add_task("tracing channel dependencies", total=None)
    graph = ChannelGraph(checkpoint.model, weights=weights, example_input=torch.zeros(1, 3, image_size, image_size))
    progress.update(task, total=1, completed=1)
    if not graph.groups:
        raise InputError(
            f"{checkpoint.path} has no channel group that can be removed (the classifier's outputs "
            "never are, nor groups that reach layers left out by --include/--exclude)"
        )
    return graph


def _dense_widths(checkpoint: ckpt.Checkpoint, graph) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The dense architecture's weights (meta tensors) and each group's dense channel count, so
    rates count against the dense model however slim this one already is."""
    reference = (
        ckpt.dense_reference(checkpoint.arch, checkpoint.num_classes, arch_args=checkpoint.arch_args)
        if checkpoint.arch else None
    )  # fmt: skip
    dense_weights = dict(reference.named_parameters()) if reference is not None else {}
    dense_sizes = {}
    for group in graph.groups:
        dense = dense_weights.get(f"{group.name}.weight")
        dense_sizes[group.name] = int(dense.shape[group.out_dim]) // group.unit_width if dense is not None else group.size
    return dense_weights, dense_sizes

"""The prune stage: importance (or the weights) -> masks.safetensors and a pruned checkpoint."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .._progress import NoProgress, ProgressSink
from ..errors import InputError
from ..io import checkpoints as ckpt
from ..io.artifacts import MASKS_FORMAT, Artifact, read_importance, read_masks, write_artifact
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
    progress: ProgressSink | None = None,
) -> PruneSummary:
    """Masks at ``rate`` from an importance file (and/or the model) -> masks + pruned checkpoint."""
    from ..method.masks import apply_masks
    from ..method.selection import build_masks, check_options, get_criterion, warm_up

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
        model = ModelSource(recorded, default_arch=recorded_value(scores, "arch"))
    else:
        model = replace(model, default_arch=recorded_value(scores, "arch"))

    threading.Thread(target=warm_up, name="fairgrape-warm-up", daemon=True).start()  # beside the load
    checkpoint = model.load()
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
        "include": include,
        "exclude": exclude,
    }
    for key in ("data", "labels"):  # re-anchor the data paths the importance file records
        recorded = scores.recorded_path(key) if scores else None
        metadata[key] = record_path(recorded, output) if recorded else None
    for key in ("target", "attribute", "groups", "classes", "attributes", "image_size"):
        metadata[key] = recorded_value(scores, key)
    apply_masks(weights, built)
    classes = checkpoint.classes or recorded_value(scores, "classes")
    attributes = checkpoint.attributes or recorded_value(scores, "attributes")
    image_size = checkpoint.image_size or int_or_none(recorded_value(scores, "image_size"))
    with all_or_none():  # the masks and the checkpoint that names them, or neither (a full disk)
        masks_sha = write_artifact(output, built, metadata)
        ckpt.save_checkpoint(
            model_output,
            checkpoint.model,
            like=replace(checkpoint, image_size=image_size, attributes=attributes),
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

"""fairgrape score: per-group importance of every prunable weight."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt


def score_command(
    model: Annotated[Path, typer.Argument(help="Checkpoint to score (.pt, .pth, .safetensors, TorchScript) or Hugging Face model folder.")],
    data: Annotated[Path, typer.Argument(help="Group-labelled image folder.")],
    groups: opt.RequiredGroups = None,
    target: opt.Target = None,
    split: opt.TrainSplit = None,
    labels: opt.Labels = None,
    image_size: opt.ImageSize = None,
    batch_size: opt.BatchSize = 64,
    max_batches: Annotated[Optional[int], typer.Option("--max-batches", help="At most this many batches per group.")] = None,
    samples_per_group: Annotated[
        Optional[int], typer.Option("--samples-per-group", help="Balance groups: a seeded random subset of this size per group.")
    ] = None,
    min_group_size: opt.MinGroupSize = 1,
    masks: Annotated[Optional[Path], typer.Option("--masks", help="Score under these masks (masked weights get 0).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Stored precision: float32, float16 or bfloat16.")] = "float32",
    output: Annotated[Path, typer.Option("--output", "-o", help="Importance file to write.")] = opt.IMPORTANCE,
    include: opt.Include = None,
    exclude: opt.Exclude = None,
    arch: opt.Arch = None,
    arch_args: opt.ArchArgs = None,
    trust_checkpoint: opt.TrustCheckpoint = False,
    skip_bad_images: opt.SkipBadImages = False,
    device: opt.Device = "auto",
    workers: opt.Workers = None,
    seed: opt.Seed = 0,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Score every prunable weight's importance for each group.

    Importance is (w * dL/dw)^2 averaged over group-pure batches: one forward and backward pass
    per image, the model in eval mode and unchanged.

    Defaults to the train split when the data has one. Writes importance.safetensors. Under
    torchrun each process scores a share of every group's batches; the file is one process's.

    Example:

        fairgrape score model.pt data/ --groups race --target label

        torchrun --nproc-per-node 4 -m fairgrape_cli score model.pt data/ --groups race
    """
    from .. import stages
    from ..io.data import DataSpec
    from ._console import info, progress_display, setup_logging

    setup_logging(quiet)
    spec = DataSpec(
        root=data, target=target, groups=groups, split=split, labels=labels,
        skip_bad_images=skip_bad_images, min_group_size=min_group_size,
    )  # fmt: skip
    with progress_display(quiet) as progress:
        summary = stages.score(
            model=opt.model_source(model, arch, arch_args, trust_checkpoint),
            data=spec,
            output=output,
            masks=masks,
            loading=stages.Loading(image_size, batch_size, device, workers),
            max_batches=max_batches,
            samples_per_group=samples_per_group,
            include=include or (),
            exclude=exclude or (),
            dtype=dtype,
            seed=seed,
            progress=progress,
        )
    per_group = ", ".join(
        f"{name}: {n} images / {b} batch{'es' if b != 1 else ''}"
        for name, n, b in zip(summary.groups, summary.samples_per_group, summary.batches_per_group)
    )
    info(f"scored {summary.weights:,} weights in {summary.layers} layers on split "
         f"{summary.split or 'all'} ({per_group}) in {summary.seconds:.1f}s", quiet)
    if summary.dropped_groups:
        dropped = ", ".join(f"{name} ({n})" for name, n in summary.dropped_groups.items())
        info(f"dropped groups below --min-group-size: {dropped}", quiet)
    if summary.skipped_images:
        info(f"skipped {summary.skipped_images} bad image(s)", quiet)
    info(f"wrote {summary.output}", quiet)

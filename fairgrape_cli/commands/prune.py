"""fairgrape prune: scores -> masks and a pruned checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt

Rate = Annotated[
    float, typer.Option("--rate", "-r", help="Fraction of each layer's weights (or channels) pruned in total, in [0, 1).")
]
Granularity = Annotated[
    str,
    typer.Option(
        "--granularity",
        help="weight: mask single weights (dense tensors with zeros); channel: remove coupled channel "
        "groups, writing a physically smaller model.",
    ),
]
Method = Annotated[str, typer.Option("--method", "-m", help="fairgrape, taylor, magnitude or random.")]
Scope = Annotated[str, typer.Option("--scope", help="layer: rate per layer; global: one pool over all layers.")]
MinLayerDensity = Annotated[
    float, typer.Option("--min-layer-density", help="With --scope global, every layer keeps at least this fraction.")
]
Importance = Annotated[
    Optional[Path], typer.Option("--importance", "-i", help="Importance file [default: importance.safetensors].")
]
Masks = Annotated[Optional[Path], typer.Option("--masks", help="Previous masks; their pruned weights stay pruned.")]
Output = Annotated[Path, typer.Option("--output", "-o", help="Masks file to write.")]
ModelOutput = Annotated[
    Optional[Path], typer.Option("--model-output", help="Pruned checkpoint to write [default: pruned.pt beside the masks; a Hugging Face model: the folder pruned].")
]


def prune_command(
    model: Annotated[
        Optional[Path], typer.Argument(help="Checkpoint to prune [default: the model the importance file names].")
    ] = None,
    rate: Rate = ...,
    granularity: Granularity = "weight",
    method: Method = "fairgrape",
    scope: Scope = "layer",
    min_layer_density: MinLayerDensity = 0.01,
    importance: Importance = None,
    masks: Masks = None,
    output: Output = opt.MASKS,
    model_output: ModelOutput = None,
    include: opt.Include = None,
    exclude: opt.Exclude = None,
    arch: opt.Arch = None,
    arch_args: opt.ArchArgs = None,
    trust_checkpoint: opt.TrustCheckpoint = False,
    seed: opt.Seed = 0,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Choose the weights to keep, with FairGRAPE or a baseline.

    FairGRAPE's greedy keeps every group's share of importance in every layer; the baselines are
    taylor, magnitude and random. Writes masks.safetensors and pruned.pt. On our fairness
    benchmark magnitude pruning with group-balanced fine-tuning protected the worst group best
    (sample_configs/recommended.yaml; README, "Which recipe protects the worst group").

    --granularity channel removes whole channels (each with the channels coupled to it through
    residual additions and BatchNorm), never the classifier's outputs: pruned.pt is the smaller,
    faster model, and every command loads it as it is.

    Reads importance.safetensors and the model it names unless told otherwise; weights already
    masked (--masks, or the masks the importance was scored under) stay masked.

    Examples:

        fairgrape prune --rate 0.9

        fairgrape prune model.pt --rate 0.9 --method magnitude --scope global

        fairgrape prune --rate 0.5 --granularity channel

        fairgrape export pruned.pt -o pruned.torchscript    (the slim model, for deployment)
    """
    from .. import stages
    from ..method.selection import CRITERIA
    from ._console import progress_display, setup_logging

    setup_logging(quiet)
    if importance is None and (model is None or CRITERIA.choose(method).needs_importance):
        importance = opt.IMPORTANCE  # the one score wrote here
    source = opt.model_source(model, arch, arch_args, trust_checkpoint) if model is not None else None
    with progress_display(quiet) as progress:
        summary = stages.prune(
            rate=rate, model=source, importance=importance, method=method, scope=scope,
            min_layer_density=min_layer_density, masks=masks, output=output, model_output=model_output,
            include=include or (), exclude=exclude or (), seed=seed, granularity=granularity, progress=progress,
        )  # fmt: skip
    _print_summary(summary, quiet)


def _print_summary(summary, quiet: bool) -> None:
    """What was kept, how small the model is, what was written (on stderr)."""
    from ..render.report import size_line
    from ._console import info

    kept = sum(count for count, _ in summary.layers.values())
    total = sum(size for _, size in summary.layers.values())
    unit = "channels" if summary.granularity == "channel" else "weights"
    what = "channel groups" if summary.granularity == "channel" else "layers"
    info(
        f"{summary.method} ({summary.scope}) at rate {summary.rate}: kept {kept:,} of {total:,} {unit} "
        f"in {len(summary.layers)} {what} (density {summary.density:.4f}) in {summary.seconds:.1f}s",
        quiet,
    )
    info(size_line(summary.size), quiet)
    info(f"wrote {summary.masks}, {summary.checkpoint}", quiet)

"""fairgrape export: a checkpoint -> a sparse safetensors file, ONNX or TorchScript, checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt


def export_command(
    model: Annotated[Path, typer.Argument(help="Checkpoint to export (any format fairgrape reads).")],
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output", "-o",
            help="File to write; its suffix picks the format: .safetensors sparse, .onnx ONNX, .torchscript "
            "TorchScript (.pt/.pth need --format) [default: MODEL's name with the format's suffix, here].",
        ),
    ] = None,
    format: Annotated[
        Optional[str],
        typer.Option("--format", "-f", help="sparse, onnx or torchscript [default: from --output's suffix, else sparse]."),
    ] = None,
    values: Annotated[
        str, typer.Option("--values", help="sparse: kept values as float32 (exact) or float16 (half the bytes).")
    ] = "float32",
    data: Annotated[
        Optional[Path],
        typer.Option("--data", help="Check the export on the first --batch-size images of this folder [default: random input]."),
    ] = None,
    labels: opt.Labels = None,
    image_size: opt.ImageSize = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Inputs in the check batch.")] = 8,
    arch: opt.Arch = None,
    arch_args: opt.ArchArgs = None,
    trust_checkpoint: opt.TrustCheckpoint = False,
    seed: opt.Seed = 0,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Ship a pruned model: a sparse file, ONNX or TorchScript.

    sparse: a safetensors file storing each pruned layer as a bit mask plus its kept values (about
    13% of the dense file at 90% pruning with float32 values); every fairgrape command reads it as
    a checkpoint. onnx: the model at its image size with a dynamic batch axis (needs `pip install
    'fairgrape[export]'`). torchscript: a traced archive that fairgrape reads back.

    Each export is checked before it is put in place: the sparse file must read back the same
    weights, TorchScript and ONNX (with onnxruntime) must give the checkpoint's logits to 1e-4 on a
    batch of --data or of random input; a failed check exits 1 and leaves no file.

    Examples:

        fairgrape export pruned.pt -o pruned.sparse.safetensors

        fairgrape export finetuned.pt -o finetuned.onnx --data data/
    """
    from .. import stages
    from ..stages.export import default_output
    from ._console import info, setup_logging

    setup_logging(quiet)
    summary = stages.export(
        model=opt.model_source(model, arch, arch_args, trust_checkpoint),
        output=output or default_output(model, format),  # here, named after MODEL
        format=format,
        values=values,
        data=data,
        labels=labels,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
    )
    details = summary.details
    what = summary.format
    if summary.format == "sparse":
        what += (
            f", {details['values']} values; {details['sparse_layers']} of {details['prunable_layers']} "
            f"prunable layers stored as mask + values, density {details['density']:.3f}"
        )
    elif "exporter" in details:
        what += f", {details['exporter']} exporter"
    info(f"wrote {summary.output} ({what}) in {summary.seconds:.1f}s", quiet)
    info(
        f"  {_size(summary.bytes)}: {summary.ratio:.1%} of {summary.reference} ({_size(summary.reference_bytes)})",
        quiet,
    )
    info(f"  {summary.check.text}", quiet)


def _size(count: int) -> str:
    """A byte count as people read it (``44.8 MB``)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"

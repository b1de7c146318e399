"""fairgrape quantize: a checkpoint or fp32 ONNX file -> static int8 ONNX, gated per group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt

Model = Annotated[
    Path, typer.Argument(help="Checkpoint (any format fairgrape reads) or an fp32 .onnx from `fairgrape export`.")
]
Data = Annotated[
    Optional[Path],
    typer.Option("--data", help="Group-labelled image folder: calibration and the per-group check.  [required]"),
]
Output = Annotated[
    Optional[Path], typer.Option("--output", "-o", help="ONNX file to write [default: MODEL's name + .int8.onnx, here].")
]
MaxGroupDrop = Annotated[
    Optional[float],
    typer.Option(
        "--max-group-drop",
        help="Largest accuracy drop any group may take against the float model, a fraction (0.01 = 1 point): "
        "layers go back to float, the most harmful first, until every group is within it; exit 1 when "
        "nothing is left to return [default: no bound, every layer int8].",
    ),
]
Calibration = Annotated[
    str, typer.Option("--calibration", help="How activation ranges are set: minmax, entropy or percentile (onnxruntime's).")
]
CalibrationSplit = Annotated[
    Optional[str],
    typer.Option("--calibration-split", help="Split the calibration images come from [default: train, else every row].",
                 rich_help_panel="Data"),  # fmt: skip
]
CalibrationSize = Annotated[
    int, typer.Option("--calibration-size", help="Calibration images, the same number from every group.",
                      rich_help_panel="Data"),  # fmt: skip
]
Split = Annotated[
    Optional[str],
    typer.Option("--split", help="Split each group's accuracy is checked on [default: val, else test, else every row].",
                 rich_help_panel="Data"),  # fmt: skip
]


def quantize_command(
    model: Model,
    data: Data = None,
    groups: opt.RequiredGroups = None,
    output: Output = None,
    max_group_drop: MaxGroupDrop = None,
    calibration: Calibration = "minmax",
    calibration_split: CalibrationSplit = None,
    calibration_size: CalibrationSize = 256,
    split: Split = None,
    target: opt.Target = None,
    labels: opt.Labels = None,
    image_size: opt.ImageSize = None,
    min_group_size: opt.MinGroupSize = 1,
    skip_bad_images: opt.SkipBadImages = False,
    batch_size: opt.BatchSize = 64,
    workers: opt.Workers = None,
    arch: opt.Arch = None,
    arch_args: opt.ArchArgs = None,
    trust_checkpoint: opt.TrustCheckpoint = False,
    seed: opt.Seed = 0,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Quantize to int8 without letting any group pay for it.

    Static int8 quantization with onnxruntime (QDQ, int8 weights per channel, uint8 activations),
    activations calibrated on images drawn equally from every group of the training split. The
    result is measured per group on the validation split against the float model; with
    --max-group-drop, weight layers go back to float, the most harmful first (each layer's effect
    measured alone), until every group is within the bound. The file records the layers left in
    float and the per-group drops; `fairgrape report` reads it like a checkpoint. Needs
    `pip install 'fairgrape[onnx]'`.

    Examples:

        fairgrape quantize finetuned.pt --data data/ --groups race -o model.int8.onnx --max-group-drop 0.01

        fairgrape quantize finetuned.onnx --data data/ --groups race --calibration entropy

        fairgrape quantize vit.pt --arch timm:vit_tiny_patch16_224 --arch-args img_size=32 --data data/ --groups race
    """
    from .. import stages
    from ..errors import InputError
    from ..io.data import DataSpec
    from ..stages.quantize import default_output
    from ._console import info, progress_display, setup_logging, stdout

    setup_logging(quiet)
    if data is None:
        raise InputError("--data is required: the images to calibrate on and to check each group's accuracy with")
    spec = DataSpec(
        root=data, target=target, groups=groups, split=split, labels=labels,
        skip_bad_images=skip_bad_images, min_group_size=min_group_size,
    )  # fmt: skip
    with progress_display(quiet) as progress:
        summary = stages.quantize(
            model=opt.model_source(model, arch, arch_args, trust_checkpoint),
            data=spec,
            output=output or default_output(model),  # here, named after MODEL
            max_group_drop=max_group_drop,
            calibration=calibration,
            calibration_split=calibration_split,
            calibration_size=calibration_size,
            loading=stages.Loading(image_size, batch_size, "cpu", workers),
            seed=seed,
            progress=progress,
        )
    from ..render._formats import file_size
    from ..render.quantization import render_quantization

    stdout.print(render_quantization(summary))
    info(
        f"wrote {summary.output}: {file_size(summary.bytes)}, {summary.ratio:.1%} of the fp32 ONNX model "
        f"({file_size(summary.float_bytes)}), in {summary.seconds:.1f}s",
        quiet,
    )

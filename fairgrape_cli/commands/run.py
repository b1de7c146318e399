"""fairgrape run: the iterative schedule from a YAML config, resumable."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt


class KeepArtifacts(str, Enum):
    """--keep-artifacts' choices."""

    last = "last"
    all = "all"


def run_command(
    config: Annotated[Path, typer.Argument(help="YAML config (see sample_configs/).")],
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override a setting: KEY=VALUE, e.g. method=magnitude or finetune.epochs=5 (repeatable)."),
    ] = None,
    keep_artifacts: Annotated[
        Optional[KeepArtifacts],
        typer.Option(
            "--keep-artifacts",
            help="last: delete an iteration's importance, masks and checkpoints once the next iteration "
            "has finished (the last iteration's stay) [default: the config's keep_artifacts, else last]; "
            "all: keep every iteration's files.",
        ),
    ] = None,
    track: Annotated[
        Optional[str],
        typer.Option(
            "--track",
            help="Log the settings, each iteration's density and per-group accuracy, and the final report "
            "to an experiment tracker: mlflow (pip install 'fairgrape[mlflow]'; where MLFLOW_TRACKING_URI "
            "says, else MLflow's default store in the current folder).",
        ),
    ] = None,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Run a whole iterative pruning schedule from a YAML config, resumably.

    Scores, prunes and fine-tunes in steps, then fine-tunes once more and reports against the
    starting model. Iteration i prunes to min(1 - keep_per_iter**i, rate). Outputs go to the
    config's output folder: iter-NN/{importance,masks}.safetensors, pruned.pt, finetuned.pt,
    final.pt and report.json (with the per-iteration history). A stage reruns only when its
    settings or inputs changed.

    A `quantize` section in the config ends the schedule with final.int8.onnx, quantized to
    int8 and checked per group (see `fairgrape quantize`); changing it reruns only that stage.

    An iteration's files are deleted once the next iteration has finished (the last
    iteration's stay, with final.pt); --keep-artifacts all keeps them all.

    Examples:

        fairgrape run schedule.yaml

        fairgrape run schedule.yaml --set method=fairgrape --set output=runs/fairgrape

        fairgrape run schedule.yaml --track mlflow

        torchrun --nproc-per-node 4 -m fairgrape_cli run schedule.yaml
    """
    from ..flows.config import load_config
    from ..flows.pipeline import run_schedule
    from ..render.report import render_history, render_report
    from ._console import info, progress_display, setup_logging, stage_announcer, stdout

    setup_logging(quiet)
    settings = load_config(config, overrides=set_ or ())
    if keep_artifacts is not None:
        settings.settings["keep_artifacts"] = keep_artifacts.value

    with progress_display(quiet) as progress:
        announce = stage_announcer(progress, show_up_to_date=True)
        result = run_schedule(settings, progress=progress, on_stage=announce, track=track)
    stdout.print(render_report(result.report))
    stdout.print(render_history(result.report))
    if result.quantized is not None:
        from ..render._formats import file_size
        from ..render.quantization import render_quantization

        quantized = result.quantized
        stdout.print(render_quantization(quantized))
        info(f"int8 model: {quantized.output} ({file_size(quantized.bytes)}, {quantized.ratio:.1%} of the fp32 "
             f"ONNX model)", quiet)  # fmt: skip
    info(
        f"{len(result.ran)} stage(s) ran, {len(result.skipped)} up to date; "
        f"outputs in {result.output}",
        quiet,
    )

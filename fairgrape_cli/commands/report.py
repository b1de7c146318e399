"""fairgrape report: per-group accuracy, drops and disparity; a CI gate with --fail-if."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt

Model = Annotated[Path, typer.Argument(help="Checkpoint to evaluate (usually the fine-tuned one).")]
Data = Annotated[Path, typer.Argument(help="Group-labelled image folder.")]
Baseline = Annotated[
    Optional[Path], typer.Option("--baseline", help="Dense model to measure each group's accuracy drop against.")
]
JsonOutput = Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON.")]
HtmlOutput = Annotated[
    Optional[Path], typer.Option("--html", help="Also write the report as a self-contained HTML page.")
]
FailIf = Annotated[
    Optional[list[str]],
    typer.Option(
        "--fail-if",
        help="Exit 1 when METRIC>VALUE (or <, >=, <=) holds, quoted in a shell, e.g. 'drop_gap>0.05'; "
        "METRIC.hi or METRIC.lo gates on an end of its 95% interval, e.g. 'drop_gap.hi>0.05' (repeatable).",
    ),
]
Exemplars = Annotated[
    Optional[Path],
    typer.Option("--exemplars", help="With --baseline: write every flipped prediction as CSV, most confident first."),
]
ModelCard = Annotated[
    Optional[Path],
    typer.Option("--model-card", help="Write the fairness section of a Hugging Face model card (Markdown)."),
]
Intervals = Annotated[
    str,
    typer.Option("--intervals", help="How the 95% intervals are computed: score (tested coverage) or bootstrap."),
]
AllAttributes = Annotated[
    bool, typer.Option("--all", help="A multi-label model: list every attribute, not only the worst ten.")
]
Bootstrap = Annotated[
    int,
    typer.Option("--bootstrap", help="Resamples for --intervals bootstrap (images resampled within each group); 0: no intervals."),
]


def report_command(
    model: Model,
    data: Data,
    groups: opt.RequiredGroups = None,
    baseline: Baseline = None,
    json_output: JsonOutput = None,
    html_output: HtmlOutput = None,
    fail_if: FailIf = None,
    exemplars: Exemplars = None,
    model_card: ModelCard = None,
    all_attributes: AllAttributes = False,
    intervals: Intervals = "score",
    bootstrap: Bootstrap = 1000,
    target: opt.Target = None,
    split: opt.TestSplit = None,
    labels: opt.Labels = None,
    image_size: opt.ImageSize = None,
    min_group_size: opt.MinGroupSize = 1,
    batch_size: opt.BatchSize = 64,
    arch: opt.Arch = None,
    arch_args: opt.ArchArgs = None,
    trust_checkpoint: opt.TrustCheckpoint = False,
    skip_bad_images: opt.SkipBadImages = False,
    device: opt.Device = "auto",
    workers: opt.Workers = None,
    precision: opt.Precision = "fp32",
    seed: opt.Seed = 0,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Per-group accuracy, drops against a baseline, and a CI gate.

    Evaluates MODEL per group (the test split by default, else val) and, with --baseline, each
    group's accuracy drop and flips (predictions right before and wrong now, and the reverse),
    with 95% intervals; for a binary target (or a multi-attribute head) the error types per
    group; prints a table and exits 1 if a --fail-if condition holds.

    Metrics for --fail-if: accuracy_gap, worst_group_accuracy, drop_std, drop_gap,
    worst_group_flip_rate, accuracy, baseline_accuracy, accuracy_drop, density,
    equalized_odds_difference, demographic_parity_difference; METRIC.lo and METRIC.hi are the
    ends of its 95% interval.

    Example:

        fairgrape report finetuned.pt data/ --groups race --baseline model.pt --json report.json --fail-if 'drop_gap>0.05'

        fairgrape report finetuned.pt data/ --groups race --baseline model.pt --fail-if 'drop_gap.hi>0.05' --exemplars flips.csv --model-card card.md

        torchrun --nproc-per-node 4 -m fairgrape_cli report finetuned.pt data/ --groups race
    """
    from .. import stages
    from ..io.data import DataSpec
    from ..method.metrics import Bootstrap
    from ._console import progress_display, setup_logging

    setup_logging(quiet)
    spec = DataSpec(
        root=data, target=target, groups=groups, split=split, labels=labels,
        skip_bad_images=skip_bad_images, min_group_size=min_group_size,
    )  # fmt: skip
    with progress_display(quiet) as progress:
        result = stages.report(
            model=opt.model_source(model, arch, arch_args, trust_checkpoint),
            data=spec,
            baseline=opt.model_source(baseline, arch, arch_args, trust_checkpoint) if baseline else None,
            loading=stages.Loading(image_size, batch_size, device, workers),
            fail_if=fail_if or (),
            bootstrap=Bootstrap(resamples=bootstrap, seed=seed, method=intervals),
            json_output=json_output,
            html_output=html_output,
            exemplars_output=exemplars,
            model_card_output=model_card,
            precision=precision,
            progress=progress,
        )
    _show(result, all_attributes=all_attributes, written=(json_output, html_output, exemplars, model_card), quiet=quiet)


def _show(result, *, all_attributes: bool, written, quiet: bool) -> None:
    """The table, each --fail-if condition with what it measured, the files written; exit 1 when
    a condition holds."""
    from ..render.report import render_conditions, render_report
    from ._console import info, stdout, warn

    stdout.print(render_report(result.report, all_attributes=all_attributes))
    if result.checks:
        stdout.print(render_conditions(result.checks))
    if result.skipped_images:
        info(f"skipped {result.skipped_images} bad image(s)", quiet)
    for path in written:
        if path is not None:
            info(f"wrote {path}", quiet)
    if result.guessing:
        warn(result.guessing)
    if result.failed:
        raise typer.Exit(1)

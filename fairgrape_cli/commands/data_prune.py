"""fairgrape data-prune: a smaller training set with fair per-class quotas (DRoP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt

Model = Annotated[Path, typer.Argument(help="Query model: its validation recall sets the quotas.")]
Data = Annotated[Path, typer.Argument(help="Group-labelled image folder with train and val splits.")]
Keep = Annotated[
    float, typer.Option("--keep", "-k", help="Fraction d of the training rows to keep, in (0, 1].")
]
By = Annotated[
    str,
    typer.Option("--by", help="Units that get quotas: target (classes), group (--groups) or both (class x group cells)."),
]
Quota = Annotated[
    str,
    typer.Option("--quota", help="drop (DRoP: from each unit's val recall) or uniform (every unit keeps d: random pruning)."),
]
Within = Annotated[
    str,
    typer.Option("--within", help="Rows kept inside a unit: random, or el2n (highest EL2N under the query model first)."),
]
MinQuota = Annotated[
    float,
    typer.Option("--min-quota", help="Share of every unit kept before the quotas share out the rest (0: the paper's formula as published)."),
]
ValSplit = Annotated[
    Optional[str], typer.Option("--val-split", help="Split the recall is measured on [default: val].")
]
Output = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Manifest to write [default: DATA's manifest name + '-pruned', e.g. data/labels-pruned.csv]."),
]
JsonOutput = Annotated[Optional[Path], typer.Option("--json", help="Also write the plan as JSON.")]
Split = Annotated[
    Optional[str], typer.Option("--split", help="Split that is pruned [default: train].", rich_help_panel="Data")
]


def data_prune_command(
    model: Model,
    data: Data,
    keep: Keep,
    by: By = "target",
    groups: opt.Groups = None,
    quota: Quota = "drop",
    within: Within = "random",
    min_quota: MinQuota = 0.0,
    val_split: ValSplit = None,
    output: Output = None,
    json_output: JsonOutput = None,
    target: opt.ClassTarget = None,
    split: Split = None,
    labels: opt.Labels = None,
    image_size: opt.ImageSize = None,
    batch_size: opt.BatchSize = 64,
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
    """Prune the training set with per-class quotas that protect the classes the model gets wrong.

    DRoP (Vysogorets, Ahuja, Kempe): class k keeps the fraction d_k = d (1 - r_k) / Z of its
    N_k training rows, Z = sum_k (N_k/N)(1 - r_k), where r_k is MODEL's recall on the val split;
    a d_k above 1 is capped and the excess goes to the other classes in proportion to (1 - r_k),
    until N*d rows (rounded half up) are kept. This is the paper's form (fractions); the authors'
    code sets counts proportional to (1 - r_k), which agrees on balanced classes. If every class
    with r_k < 1 is capped (or all r_k = 1), the rest is spread evenly over the classes with
    r_k = 1 (all perfect: every class keeps d). A class with r_k = 1 keeps no rows under the
    formula; --min-quota f keeps f of every class first and shares out the rest by the formula.
    --by group or both put the quotas on groups or class x group cells instead.

    Writes a manifest with the kept training rows and every other row unchanged (same columns,
    paths relative to DATA: use it as --labels), and its plan beside it (.plan.json: the model
    and its sha256, the settings, N_k, r_k, d_k and rows kept per unit). Train on it with
    `fairgrape finetune MODEL DATA --dense --labels FILE`.

    Examples:

        fairgrape data-prune model.pt data/ --keep 0.5 --by group --groups race -o data/drop.csv

        fairgrape data-prune model.pt data/ --keep 0.5 --by group --groups race --quota uniform -o data/uniform.csv
    """
    from .. import stages
    from ..io.data import DataSpec
    from ..render.data_plan import render_data_plan
    from ._console import info, progress_display, setup_logging, stdout

    setup_logging(quiet)
    spec = DataSpec(root=data, target=target, groups=groups, split=split, labels=labels, skip_bad_images=skip_bad_images)
    with progress_display(quiet) as progress:
        summary = stages.data_prune(
            model=opt.model_source(model, arch, arch_args, trust_checkpoint), data=spec, keep=keep, by=by, quota=quota,
            within=within, min_quota=min_quota, val_split=val_split, output=output, json_output=json_output,
            loading=stages.Loading(image_size, batch_size, device, workers), seed=seed, progress=progress,
        )  # fmt: skip
    stdout.print(render_data_plan(summary.plan))
    if summary.skipped_images:
        info(f"skipped {summary.skipped_images} bad image(s)", quiet)
    info(f"kept {summary.plan['kept']} of {summary.plan['rows']} training rows; {summary.seconds:.1f}s", quiet)
    for written in (summary.output, summary.plan_file, json_output):
        if written is not None:
            info(f"wrote {written}", quiet)

"""fairgrape finetune: masked fine-tuning of a pruned model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt


def finetune(
    model: Annotated[
        Optional[Path], typer.Argument(help="Checkpoint to fine-tune [default: the model the masks name].")
    ] = None,
    data: Annotated[Optional[Path], typer.Argument(help="Image folder [default: the data the masks name].")] = None,
    masks: Annotated[
        Optional[Path], typer.Option("--masks", help="Masks to enforce [default: the model's, else masks.safetensors].")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", "-e", help="Passes over the training split.")] = 3,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-4,
    lr_milestones: Annotated[
        str, typer.Option("--lr-milestones", help="Epochs after which the learning rate is multiplied by --lr-gamma, e.g. 13,16.")
    ] = "",
    lr_gamma: Annotated[float, typer.Option("--lr-gamma", help="Learning-rate decay factor at each milestone.")] = 0.1,
    val_split: Annotated[
        Optional[str], typer.Option("--val-split", help="Split that picks the best epoch [default: val if present; 'none' to disable].")
    ] = None,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random horizontal flips.")] = True,
    dense: Annotated[
        bool,
        typer.Option("--dense", help="Train MODEL on DATA without masks (every weight may change): train or retrain a model on a manifest."),
    ] = False,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="How groups weigh: erm (plain), balanced (every group the same per epoch), group-dro "
            "(online group DRO) or constrained (no group worse than the dense --teacher by more than "
            "--constraint-bound, held by Lagrange multipliers).",
            rich_help_panel="Objective",
        ),
    ] = "erm",
    groups: opt.MasksGroups = None,
    dro_step: Annotated[
        float,
        typer.Option("--dro-step", help="group-dro: step of the exponentiated-gradient update of the group weights.", rich_help_panel="Objective"),
    ] = 0.1,
    balance_unit: Annotated[
        str,
        typer.Option("--balance-unit", help="balanced: weigh each group the same, or each class x group cell.", rich_help_panel="Objective"),
    ] = "group",
    balance_by: Annotated[
        str,
        typer.Option(
            "--balance-by",
            help="balanced: sampling (the epoch's rows split equally over the groups: large groups see "
            "part of their rows), upsample (every row of every group, smaller groups repeated up to the "
            "largest: a longer epoch) or weights (loss weights by inverse group size).",
            rich_help_panel="Objective",
        ),
    ] = "sampling",
    constraint_bound: Annotated[
        float,
        typer.Option("--constraint-bound", help="constrained: how much worse than the teacher a group may get "
                     "(a fraction of accuracy, or of loss with --constraint-metric loss).", rich_help_panel="Objective"),
    ] = 0.02,
    constraint_metric: Annotated[
        str,
        typer.Option("--constraint-metric", help="constrained: bound each group's accuracy (the loss is its "
                     "differentiable proxy) or its loss.", rich_help_panel="Objective"),
    ] = "accuracy",
    multiplier_lr: Annotated[
        float,
        typer.Option("--multiplier-lr", help="constrained: step of the Lagrange multipliers' updates.", rich_help_panel="Objective"),
    ] = 0.1,
    distill_weight: Annotated[
        float,
        typer.Option("--distill-weight", help="Share of each sample's loss that is distillation from the dense "
                     "--teacher (0 = off): the model also learns the teacher's outputs. Combines with any --objective.",
                     rich_help_panel="Distillation"),
    ] = 0.0,
    distill_temperature: Annotated[
        float,
        typer.Option("--distill-temperature", help="Temperature that softens the teacher's and the model's outputs.",
                     rich_help_panel="Distillation"),
    ] = 4.0,
    teacher: Annotated[
        Optional[Path],
        typer.Option("--teacher", help="The dense model for --distill-weight and --objective constrained "
                     "[default: the model the masks were pruned from].", rich_help_panel="Distillation"),
    ] = None,
    keep_epoch: Annotated[
        str,
        typer.Option(
            "--keep-epoch",
            help="Which epoch to keep, by the val split: accuracy, worst-group (best worst-group accuracy), "
            "worst-group-near-best (best worst-group accuracy among epochs within --keep-within of the best "
            "accuracy: no worst-group point bought with many overall points), last, or auto (accuracy "
            "for erm, worst-group otherwise).",
        ),
    ] = "auto",
    keep_within: Annotated[
        float,
        typer.Option("--keep-within", help="worst-group-near-best: how far below the best val accuracy a kept "
                     "epoch may be (a fraction: 0.01 = 1 point)."),
    ] = 0.01,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Checkpoint to write [default: finetuned.pt; a Hugging Face model: the folder finetuned].")
    ] = None,
    target: opt.Target = None,
    split: opt.TrainSplit = None,
    labels: opt.Labels = None,
    image_size: opt.ImageSize = None,
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
    """Fine-tune a pruned model with its masked weights held at exactly zero.

    Trains on the target labels (Adam, random flips) and keeps the best epoch on the val split
    when there is one. --objective balanced or group-dro weighs the groups (--groups, default: the
    groups the masks were scored for) so that the worst-served group wins back what pruning cost it.

    The model and data default to what masks.safetensors records. Writes finetuned.pt, which
    loads into a plain torchvision model with load_state_dict. --dense trains MODEL on DATA with
    no masks at all: how to train or retrain a model on a manifest (e.g. one from data-prune,
    passed with --labels).

    Examples:

        fairgrape finetune

        fairgrape finetune pruned.pt data/ --masks masks.safetensors --epochs 5 --lr 1e-4

        fairgrape finetune --objective balanced --groups race

        fairgrape finetune --objective balanced --balance-by upsample --distill-weight 0.5 --teacher model.pt

        torchrun --nproc-per-node 4 -m fairgrape_cli finetune --precision bf16

        fairgrape finetune model.pt data/ --dense --labels data/labels-pruned.csv -o retrained.pt
    """
    from .. import stages
    from ..io.data import DataSpec
    from ..method.distillation import Distillation
    from ..method.kept_epoch import KeptEpoch
    from ..method.objectives import ObjectiveOptions
    from ._console import info, progress_display, setup_logging

    setup_logging(quiet)
    # without DATA the flags apply to the data the masks name
    spec = DataSpec(
        root=data, target=target, groups=groups, split=split, labels=labels, skip_bad_images=skip_bad_images
    )
    with progress_display(quiet) as progress:
        summary = stages.finetune(
            model=opt.model_source(model, arch, arch_args, trust_checkpoint) if model is not None else None,
            data=spec,
            masks=masks,
            output=output,
            loading=stages.Loading(image_size, batch_size, device, workers),
            epochs=epochs,
            lr=lr,
            lr_milestones=_milestones(lr_milestones),
            lr_gamma=lr_gamma,
            val_split=val_split,
            augment=augment,
            dense=dense,
            objective=objective,
            objective_options=ObjectiveOptions(
                dro_step=dro_step, balance_unit=balance_unit, balance_by=balance_by,
                constraint_bound=constraint_bound, constraint_metric=constraint_metric, multiplier_lr=multiplier_lr,
            ),
            teacher=stages.ModelSource(teacher, arch, trust_checkpoint) if teacher is not None else None,
            distillation=Distillation(distill_weight, distill_temperature),
            kept_epoch=KeptEpoch(keep_epoch, keep_within),
            seed=seed,
            precision=precision,
            progress=progress,
        )
    for record in summary.history:
        val = f", val accuracy {record['val_accuracy']:.4f}" if record["val_accuracy"] is not None else ""
        if record["val_worst_group_accuracy"] is not None and summary.groups:
            val += f", worst group {record['val_worst_group_accuracy']:.4f}"
        if record["group_weights"] is not None:
            val += ", group weights " + " ".join(f"{w:.2f}" for w in record["group_weights"])
        info(f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, "
             f"train accuracy {record['train_accuracy']:.4f}{val}", quiet)
    if summary.objective != "erm":
        info(f"objective {summary.objective} over groups {', '.join(summary.groups)}, "
             f"{summary.rows_per_epoch} rows per epoch", quiet)  # fmt: skip
    if summary.teacher is not None:
        info(f"teacher {summary.teacher}", quiet)
    kept = (f"kept epoch {summary.best_epoch} ({summary.kept_epoch} on {summary.val_split})" if summary.best_epoch
            else "kept the last epoch")  # fmt: skip
    info(f"{kept}; density {summary.density:.4f}; {summary.seconds:.1f}s", quiet)
    info(f"wrote {summary.output}", quiet)


def _milestones(text: str) -> tuple[int, ...]:
    from ..errors import InputError

    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--lr-milestones {text}: expected epochs separated by commas, e.g. 13,16") from None

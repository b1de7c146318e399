"""fairgrape finetune: masked fine-tuning of a pruned model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _options as opt

Model = Annotated[
    Optional[Path], typer.Argument(help="Checkpoint to fine-tune [default: the model the masks name].")
]
Data = Annotated[Optional[Path], typer.Argument(help="Image folder [default: the data the masks name].")]
Masks = Annotated[
    Optional[Path], typer.Option("--masks", help="Masks to enforce [default: the model's, else masks.safetensors].")
]
Epochs = Annotated[int, typer.Option("--epochs", "-e", help="Passes over the training split.")]
Lr = Annotated[float, typer.Option("--lr", help="Adam learning rate.")]
LrMilestones = Annotated[
    str, typer.Option("--lr-milestones", help="Epochs after which the learning rate is multiplied by --lr-gamma, e.g. 13,16.")
]
LrGamma = Annotated[float, typer.Option("--lr-gamma", help="Learning-rate decay factor at each milestone.")]
ValSplit = Annotated[
    Optional[str], typer.Option("--val-split", help="Split that picks the best epoch [default: val if present; 'none' to disable].")
]
Augment = Annotated[bool, typer.Option("--augment/--no-augment", help="Random horizontal flips.")]
Dense = Annotated[
    bool,
    typer.Option("--dense", help="Train MODEL on DATA without masks (every weight may change): train or retrain a model on a manifest."),
]
Objective = Annotated[
    str,
    typer.Option(
        "--objective",
        help="How groups weigh: erm (plain), balanced (every group the same per epoch), group-dro "
        "(online group DRO), constrained (no group worse than the dense --teacher by more than "
        "--constraint-bound, held by Lagrange multipliers) or balanced-constrained (both: balanced's "
        "epochs, --balance-by, with constrained's bounds).",
        rich_help_panel="Objective",
    ),
]
DroStep = Annotated[
    float,
    typer.Option("--dro-step", help="group-dro: step of the exponentiated-gradient update of the group weights.", rich_help_panel="Objective"),
]
BalanceUnit = Annotated[
    str,
    typer.Option("--balance-unit", help="balanced: weigh each group the same, or each class x group cell.", rich_help_panel="Objective"),
]
BalanceBy = Annotated[
    str,
    typer.Option(
        "--balance-by",
        help="balanced: sampling (the epoch's rows split equally over the groups: large groups see "
        "part of their rows), upsample (every row of every group, smaller groups repeated up to the "
        "largest: a longer epoch) or weights (loss weights by inverse group size).",
        rich_help_panel="Objective",
    ),
]
ConstraintBound = Annotated[
    float,
    typer.Option("--constraint-bound", help="constrained: how much worse than the teacher a group may get "
                 "(a fraction of accuracy, or of loss with --constraint-metric loss).", rich_help_panel="Objective"),
]
ConstraintMetric = Annotated[
    str,
    typer.Option("--constraint-metric", help="constrained: bound each group's accuracy (the loss is its "
                 "differentiable proxy) or its loss.", rich_help_panel="Objective"),
]
ConstraintForm = Annotated[
    str,
    typer.Option("--constraint-form", help="constrained: bound each group's drop from the teacher (drop), or "
                 "how much more than all the rows together it dropped (excess-drop, Balancing Act's form: "
                 "keeps the groups' drops close).", rich_help_panel="Objective"),
]
MultiplierLr = Annotated[
    float,
    typer.Option("--multiplier-lr", help="constrained: step of the Lagrange multipliers' updates.", rich_help_panel="Objective"),
]
DistillWeight = Annotated[
    float,
    typer.Option("--distill-weight", help="Share of each sample's loss that is distillation from the dense "
                 "--teacher (0 = off): the model also learns the teacher's outputs. Combines with any --objective.",
                 rich_help_panel="Distillation"),
]
DistillTemperature = Annotated[
    float,
    typer.Option("--distill-temperature", help="Temperature that softens the teacher's and the model's outputs.",
                 rich_help_panel="Distillation"),
]
Teacher = Annotated[
    Optional[Path],
    typer.Option("--teacher", help="The dense model for --distill-weight and --objective constrained "
                 "[default: the model the masks were pruned from].", rich_help_panel="Distillation"),
]
KeepEpoch = Annotated[
    str,
    typer.Option(
        "--keep-epoch",
        help="Which epoch to keep, by the val split: accuracy, worst-group (best worst-group accuracy), "
        "worst-group-near-best (best worst-group accuracy among epochs within --keep-within of the best "
        "accuracy: no worst-group point bought with many overall points), last, or auto (accuracy "
        "for erm, worst-group otherwise).",
    ),
]
KeepWithin = Annotated[
    float,
    typer.Option("--keep-within", help="worst-group-near-best: how far below the best val accuracy a kept "
                 "epoch may be (a fraction: 0.01 = 1 point)."),
]
Output = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Checkpoint to write [default: finetuned.pt; a Hugging Face model: the folder finetuned]."),
]


def finetune_command(
    model: Model = None,
    data: Data = None,
    masks: Masks = None,
    epochs: Epochs = 3,
    lr: Lr = 1e-4,
    lr_milestones: LrMilestones = "",
    lr_gamma: LrGamma = 0.1,
    val_split: ValSplit = None,
    augment: Augment = True,
    dense: Dense = False,
    objective: Objective = "erm",
    groups: opt.MasksGroups = None,
    dro_step: DroStep = 0.1,
    balance_unit: BalanceUnit = "group",
    balance_by: BalanceBy = "sampling",
    constraint_bound: ConstraintBound = 0.02,
    constraint_metric: ConstraintMetric = "accuracy",
    constraint_form: ConstraintForm = "drop",
    multiplier_lr: MultiplierLr = 0.1,
    distill_weight: DistillWeight = 0.0,
    distill_temperature: DistillTemperature = 4.0,
    teacher: Teacher = None,
    keep_epoch: KeepEpoch = "auto",
    keep_within: KeepWithin = 0.01,
    output: Output = None,
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

    Trains on the target labels (Adam, random flips), keeping the best epoch on the val split when
    there is one. --objective balanced or group-dro weighs the groups (--groups, default: those the
    masks were scored for) so the worst-served group wins back what pruning cost it. MODEL and
    DATA default to what masks.safetensors records; writes finetuned.pt, which loads into a plain
    torchvision model with load_state_dict. --dense trains MODEL on DATA without masks: how to
    train or retrain a model on a manifest (one from data-prune, passed with --labels).

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
    from ._console import progress_display, setup_logging

    setup_logging(quiet)
    source = (lambda path: opt.model_source(path, arch, arch_args, trust_checkpoint) if path is not None else None)
    with progress_display(quiet) as progress:
        summary = stages.finetune(
            model=source(model), data=DataSpec(data, target, groups, split, labels, skip_bad_images), masks=masks, fallback_masks=_fallback_masks(model, masks, dense),
            output=output, loading=stages.Loading(image_size, batch_size, device, workers), epochs=epochs, lr=lr,
            lr_milestones=_milestones(lr_milestones), lr_gamma=lr_gamma, val_split=val_split, augment=augment,
            dense=dense, objective=objective, teacher=source(teacher), seed=seed, precision=precision,
            progress=progress, **_levers(**{name: value for name, value in locals().items() if name in _LEVERS}),
        )  # fmt: skip
    _print_summary(summary, quiet)


# the flags _levers turns into finetune's objective options, distillation and kept-epoch rule
_LEVERS = ("dro_step", "balance_unit", "balance_by", "constraint_bound", "constraint_metric", "constraint_form",
           "multiplier_lr", "distill_weight", "distill_temperature", "keep_epoch", "keep_within")  # fmt: skip


def _levers(
    *, dro_step, balance_unit, balance_by, constraint_bound, constraint_metric, constraint_form, multiplier_lr,
    distill_weight, distill_temperature, keep_epoch, keep_within,
) -> dict:
    """The objective's options, the distillation and the kept-epoch rule, as finetune takes them."""
    from ..method.distillation import Distillation
    from ..method.kept_epoch import KeptEpoch
    from ..method.objectives import ObjectiveOptions

    options = ObjectiveOptions(
        dro_step=dro_step, balance_unit=balance_unit, balance_by=balance_by, constraint_bound=constraint_bound,
        constraint_metric=constraint_metric, constraint_form=constraint_form, multiplier_lr=multiplier_lr,
    )  # fmt: skip
    return {
        "objective_options": options,
        "distillation": Distillation(distill_weight, distill_temperature),
        "kept_epoch": KeptEpoch(keep_epoch, keep_within),
    }


def _fallback_masks(model: Path | None, masks: Path | None, dense: bool) -> Path | None:
    """masks.safetensors here, for when neither --masks nor the model names masks (prune wrote it
    here); without MODEL it must be there."""
    from ..errors import InputError

    if dense or masks is not None:
        return None
    if opt.MASKS.exists():
        return opt.MASKS
    if model is None:
        raise InputError(f"{opt.MASKS} not found: run `fairgrape prune --rate R` first, or pass --masks")
    return None


def _print_summary(summary, quiet: bool) -> None:
    """Each epoch's numbers, the objective and teacher, the kept epoch (on stderr)."""
    from ._console import info

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
    """--lr-milestones 13,16 as epochs."""
    from ..errors import InputError

    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--lr-milestones {text}: expected epochs separated by commas, e.g. 13,16") from None

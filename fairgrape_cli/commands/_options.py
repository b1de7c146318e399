"""Option aliases shared by the commands, defined once (typer ``Annotated`` types)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# The files the commands read and write in the current folder when not told otherwise: decided
# here, on the command line, never in the library below it (a Python caller names its files).
IMPORTANCE = Path("importance.safetensors")
MASKS = Path("masks.safetensors")

DEBUG = "fairgrape.debug"  # the key of --debug in the Typer context's meta (shared by its subcontexts)


def _enable_debug(ctx: typer.Context, value: bool) -> bool:
    if value:
        ctx.meta[DEBUG] = True
    return value


def debug_enabled(ctx: typer.Context) -> bool:
    """Whether the command running in ``ctx`` was given ``--debug``."""
    return bool(ctx.meta.get(DEBUG))


def _print_version(value: bool) -> None:
    """--version's callback: print fairgrape's version and stop."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("fairgrape")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "(not installed)"
        typer.echo(f"fairgrape {number}")
        raise typer.Exit()


Version = Annotated[
    bool,
    typer.Option("--version", help="Print fairgrape's version and exit.", callback=_print_version, is_eager=True),
]


# model loading
Arch = Annotated[
    Optional[str],
    typer.Option(
        "--arch",
        help="Architecture of a plain state dict: a torchvision model (resnet18, mobilenet_v2, "
        "...), timm:NAME (timm:vit_tiny_patch16_224), or module.path:callable taking num_classes= "
        "(looked for in the current folder too). A file may name only the first two or hf:CLASS: "
        "a module it names is imported only with this flag or --trust-checkpoint.",
        rich_help_panel="Model",
    ),
]
ArchArgs = Annotated[
    Optional[list[str]],
    typer.Option(
        "--arch-args",
        help="Constructor arguments of the architecture, KEY=VALUE or a JSON object (repeatable): "
        "img_size=32 for a ViT at 32 px. Recorded in the checkpoints written [default: the file's].",
        rich_help_panel="Model",
    ),
]
TrustCheckpoint = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Allow loading a whole pickled nn.Module (this can run code from the file).",
        rich_help_panel="Model",
    ),
]



def model_source(path: Path, arch: Optional[str], arch_args: Optional[list[str]], trust_checkpoint: bool):
    """The stages' ModelSource for MODEL and the model flags (``--arch-args`` parsed)."""
    from .. import stages
    from ..io.architectures import parse_arch_args

    return stages.ModelSource(path, arch, trust_checkpoint, arch_args=parse_arch_args(arch_args))


# data
def _groups(note: str = ""):
    """The --groups option, its help ending with ``note``."""
    return Annotated[
        Optional[str],
        typer.Option(
            "--groups", "-g", help=f"Group column; 'race,gender' for intersectional groups.{note}", rich_help_panel="Data"
        ),
    ]


Groups = _groups()
# score and report cannot do without groups; they check it themselves (not typer) so that the
# error can list the data's columns
RequiredGroups = _groups("  [required]")
MasksGroups = _groups(" [default: the groups the masks record]")  # finetune


def _target(help: str):
    """The --target option with this ``help``."""
    return Annotated[Optional[str], typer.Option("--target", "-t", help=help, rich_help_panel="Data")]


Target = _target(
    "Class label column [default: label]; or several binary attribute columns of one multi-label head, "
    "'Smiling,Young' or 'all' (every column but the groups)."
)
ClassTarget = _target("Class label column [default: label].")  # data-prune: one class column


def _split(default: str):
    """The --split option, naming its ``default``."""
    return Annotated[
        Optional[str],
        typer.Option(
            "--split", help=f"Rows of this split when the data has a split column [default: {default}].",
            rich_help_panel="Data",
        ),
    ]


TrainSplit = _split("train, else every row")  # score, finetune
TestSplit = _split("test, else val, else every row")  # report
Labels = Annotated[
    Optional[Path],
    typer.Option("--labels", help="Manifest CSV to use instead of DATA/labels.csv.", rich_help_panel="Data"),
]
ImageSize = Annotated[
    Optional[int],
    typer.Option("--image-size", help="Square image side [default: the checkpoint's, else 224].", rich_help_panel="Data"),
]
SkipBadImages = Annotated[
    bool,
    typer.Option("--skip-bad-images", help="Count and skip missing or undecodable images instead of stopping.", rich_help_panel="Data"),
]
MinGroupSize = Annotated[
    int,
    typer.Option("--min-group-size", help="Drop (and report) groups with fewer images than this.", rich_help_panel="Data"),
]

# execution
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.", rich_help_panel="Execution")]
Device = Annotated[
    str,
    typer.Option("--device", help="auto (CUDA when present), cpu, cuda or mps.", rich_help_panel="Execution"),
]
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", help="Image-decoding processes [default: by machine and data size].", rich_help_panel="Execution"),
]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="fp32, or bf16: bf16 autocast with channels_last on CUDA (faster on recent GPUs; refused on the CPU).",
        rich_help_panel="Execution",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.", rich_help_panel="Execution")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries.", rich_help_panel="Execution")]
Debug = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="Show the traceback of an error.",
        callback=_enable_debug,
        is_eager=True,
        rich_help_panel="Execution",
    ),
]

# layer selection
Include = Annotated[
    Optional[list[str]],
    typer.Option("--include", help="Only layers whose parameter name matches this glob (repeatable).", rich_help_panel="Layers"),
]
Exclude = Annotated[
    Optional[list[str]],
    typer.Option("--exclude", help="Leave out layers whose parameter name matches this glob (repeatable).", rich_help_panel="Layers"),
]

"""The ``fairgrape`` command: wires the commands and turns errors into messages and exit codes.

Only typer is imported here; each command imports torch and the library when it runs, so
``fairgrape --help`` answers fast.
"""

from __future__ import annotations

import sys
import traceback

import typer

from .commands._options import debug_enabled
from .commands.compare import compare
from .commands.demo import demo
from .commands.finetune import finetune
from .commands.prune import prune
from .commands.report import report
from .commands.run import run
from .commands.score import score

app = typer.Typer(
    name="fairgrape",
    help="Prune image classifiers without making them unfair (FairGRAPE, ECCV 2022).\n\n"
    "score -> prune -> finetune -> report, each reading and writing plain files.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(score)
app.command()(prune)
app.command()(finetune)
app.command()(report)
app.command()(run)
app.command()(compare)
app.command()(demo)


def main() -> None:
    from .errors import FairgrapeError

    try:
        app(prog_name="fairgrape")
    except FairgrapeError as error:
        _fail(f"error: {error}", error.exit_code)
    except MemoryError:
        _fail("error: out of memory; try a smaller --batch-size", 1)
    except Exception as error:  # a bug or an environment problem: one line unless --debug
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if "out of memory" in first.lower():
            _fail("error: out of memory; try a smaller --batch-size", 1)
        _fail(
            f"error: {type(error).__name__}: {first} (this is a bug in fairgrape or its "
            "environment; rerun with --debug for the traceback)",
            1,
        )


def _fail(message: str, exit_code: int) -> None:
    """Print the traceback (with --debug) and the one-line message, then exit."""
    if debug_enabled():
        traceback.print_exc()
    _print_error(message)
    sys.exit(exit_code)


def _print_error(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()

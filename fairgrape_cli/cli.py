"""The ``fairgrape`` command: wires the commands and turns errors into messages and exit codes.

Only typer is imported here; each command imports torch and the library when it runs, so
``fairgrape --help`` answers fast.
"""

from __future__ import annotations

import sys

import typer

from ._options import debug_enabled
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
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(score)
app.command()(prune)
app.command()(finetune)
app.command()(report)
app.command()(run)


def main() -> None:
    from .errors import FairgrapeError

    try:
        app(prog_name="fairgrape")
    except FairgrapeError as error:
        if debug_enabled():
            raise
        _print_error(f"error: {error}")
        sys.exit(error.exit_code)
    except MemoryError:
        if debug_enabled():
            raise
        _print_error("error: out of memory; try a smaller --batch-size")
        sys.exit(1)
    except Exception as error:  # a bug or an environment problem: one line unless --debug
        if debug_enabled():
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if "out of memory" in first.lower():
            _print_error("error: out of memory; try a smaller --batch-size")
        else:
            _print_error(
                f"error: {type(error).__name__}: {first} (this is a bug in fairgrape or its "
                "environment; rerun with --debug for the traceback)"
            )
        sys.exit(1)


def _print_error(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()

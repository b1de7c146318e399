"""The ``fairgrape`` command: wires the commands and turns errors into messages and exit codes.

Only typer is imported here; each command imports torch and the library when it runs, so
``fairgrape --help`` answers fast.
"""

from __future__ import annotations

import sys
import traceback

import typer

from .commands._console import closed_stdout_is_not_an_error
from .commands._help import Command, Group
from .commands._options import Version, debug_enabled
from .commands.compare import compare
from .commands.data_prune import data_prune
from .commands.demo import demo
from .commands.export import export
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
    cls=Group,
)
for name, command in (("score", score), ("prune", prune), ("finetune", finetune), ("report", report),
                      ("run", run), ("compare", compare), ("data-prune", data_prune),
                      ("export", export), ("demo", demo)):
    app.command(name=name, cls=Command)(command)


@app.callback()
def _root(version: Version = False) -> None:
    # the root's own options; its help is the app's
    pass


# the commands that pass over images and shard them under torchrun
SHARDED_COMMANDS = ("score", "finetune", "report", "run")


def main() -> None:
    _threads_wait_passively()
    from . import distributed
    from .errors import FairgrapeError

    crashed = False  # an error the other torchrun processes may not know of
    try:
        _refuse_unsharded_command_under_torchrun()
        with closed_stdout_is_not_an_error():
            app(prog_name="fairgrape")
    except SystemExit as exit_:
        if _interrupted(exit_):
            _fail(f"interrupted: {_after_interruption()}", 130)
        raise
    except FairgrapeError as error:
        _fail(f"error: {error}", error.exit_code, user_error=True)
    except MemoryError:
        crashed = True
        _fail("error: out of memory; try a smaller --batch-size", 1)
    except OSError as error:  # the machine refused (disk full, permissions): not a bug, say which file
        where = f"{error.filename}: " if error.filename is not None else ""
        _fail(f"error: {where}{error.strerror or error}", 1)
    except Exception as error:  # a bug or an environment problem: one line unless --debug
        crashed = not distributed.agreed_error(error)
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if "out of memory" in first.lower():
            _fail("error: out of memory; try a smaller --batch-size", 1, user_error=not crashed)
        _fail(
            f"error: {type(error).__name__}: {first} (this is a bug in fairgrape or its "
            "environment; rerun with --debug for the traceback)",
            1,
            user_error=not crashed,
        )
    finally:
        distributed.shutdown(after_crash=crashed)


def _interrupted(exit_: SystemExit) -> bool:
    """Whether Typer ended the command because of Ctrl-C (it turns it into exit status 130)."""
    cause = exit_.__context__
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _after_interruption() -> str:
    """What an interruption left, for the one line that says it happened."""
    if sys.argv[1:2] == ["run"]:
        return ("every finished stage is kept; run the same command again to resume after the last one "
                "(a stage that was running starts over)")  # fmt: skip
    return "files are written whole or not at all: the outputs are the previous ones, or none"


def _threads_wait_passively() -> None:
    """Let torch's idle OpenMP threads sleep rather than spin (unless the user chose otherwise).

    Spinning threads wait for a thread that another process holds off the CPU and burn the
    time they wait in: on a 2-core machine with two other busy processes a training step took
    2.5x longer than with passive threads (benchmarks/contention.py). Read once, when torch
    loads its OpenMP runtime, so this runs before any command imports torch.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _refuse_unsharded_command_under_torchrun() -> None:
    from .distributed import launched
    from .errors import InputError

    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if launched() and command in app_commands() and command not in SHARDED_COMMANDS:
        raise InputError(
            f"fairgrape {command} runs in one process: start it without torchrun "
            f"(torchrun runs {', '.join(SHARDED_COMMANDS)})"
        )


def app_commands() -> list[str]:
    return [info.name or info.callback.__name__ for info in app.registered_commands]


def _fail(message: str, exit_code: int, *, user_error: bool = False) -> None:
    """Print the traceback (with --debug) and the one-line message, then exit.

    Under torchrun, rank 0 prints; the others print (naming their rank) only errors that are
    their own: a user error is either the same on every rank or was agreed on, and then rank 0
    names the rank it came from.
    """
    from .distributed import env_rank

    rank = env_rank()
    if rank == 0 or not user_error:
        if debug_enabled():
            traceback.print_exc()
        _print_error(message if rank == 0 else f"rank {rank}: {message}")
    sys.exit(exit_code)


def _print_error(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()

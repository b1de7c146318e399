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
from .commands.compare import compare_command
from .commands.data_prune import data_prune_command
from .commands.demo import demo_command
from .commands.export import export_command
from .commands.finetune import finetune_command
from .commands.prune import prune_command
from .commands.quantize import quantize_command
from .commands.report import report_command
from .commands.run import run_command
from .commands.score import score_command


def _framework_errors() -> tuple[type[BaseException], ...]:
    """Click's own exceptions (--help, usage errors, ``typer.Exit(1)`` of a CI gate), wherever they
    live: typer >= 0.29 vendors click and no longer installs it, older typer raises click's."""
    click_error = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")
    click_exceptions = sys.modules[click_error.__module__]
    # In click (older typer) Exit and Abort live beside ClickException and typer's are the same
    # classes; typer >= 0.29 defines its own in typer.exceptions.
    return tuple({typer.Exit, typer.Abort, click_error,
                  getattr(click_exceptions, "Exit", typer.Exit), getattr(click_exceptions, "Abort", typer.Abort)})


_FRAMEWORK_ERRORS = _framework_errors()


class _Command(Command):
    """A command whose errors end in its own context, so that the ``--debug`` it was given (on
    the Typer context, see ``_options.Debug``) decides whether the traceback is shown."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_ERRORS:
            raise
        except Exception as error:
            exit_for(error, debug=debug_enabled(ctx))


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
for name, command in (("score", score_command), ("prune", prune_command), ("finetune", finetune_command),
                      ("report", report_command), ("run", run_command), ("compare", compare_command),
                      ("data-prune", data_prune_command), ("export", export_command), ("quantize", quantize_command),
                      ("demo", demo_command)):
    app.command(name=name, cls=_Command)(command)


@app.callback()
def _root(version: Version = False) -> None:
    # the root's own options; its help is the app's
    pass


# the commands that pass over images and shard them under torchrun
SHARDED_COMMANDS = ("score", "finetune", "report", "run")


def main() -> None:
    """The console script: run the command ``sys.argv`` names; exit with its status."""
    _threads_wait_passively()
    try:
        _refuse_unsharded_command_under_torchrun()
        with closed_stdout_is_not_an_error():
            app(prog_name="fairgrape")
    except SystemExit as exit_:
        if _interrupted(exit_):
            _fail(f"interrupted: {_after_interruption()}", 130)
        raise
    except Exception as error:  # before any command ran (a command's own errors end in _Command)
        exit_for(error, debug=False)
    finally:
        from . import distributed

        distributed.shutdown()


def exit_for(error: Exception, *, debug: bool) -> None:
    """Turn ``error`` into one line on stderr and an exit code (the traceback too with ``debug``).

    A FairgrapeError is the user's to fix (its own exit code); running out of memory or an
    OSError (disk full, permissions) is the machine's (1); anything else is a bug (1).
    """
    from . import distributed
    from .errors import FairgrapeError, error_summary, first_line

    crashed = False  # an error the other torchrun processes may not know of
    if isinstance(error, FairgrapeError):
        message, code, user_error = f"error: {error}", error.exit_code, True
    elif isinstance(error, MemoryError):
        message, code, user_error, crashed = "error: out of memory; try a smaller --batch-size", 1, False, True
    elif isinstance(error, OSError):  # the machine refused: not a bug, say which file
        where = f"{error.filename}: " if error.filename is not None else ""
        message, code, user_error = f"error: {where}{error.strerror or error}", 1, False
    else:
        crashed = not distributed.agreed_error(error)
        user_error = not crashed
        message, code = (
            "error: out of memory; try a smaller --batch-size"
            if "out of memory" in first_line(error).lower()
            else f"error: {error_summary(error)} (this is a bug in fairgrape or its environment; rerun "
            "with --debug for the traceback)"
        ), 1
    distributed.shutdown(after_crash=crashed)
    _fail(message, code, user_error=user_error, debug=debug)


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
    """The names of fairgrape's commands, as a user types them."""
    return [info.name or info.callback.__name__ for info in app.registered_commands]


def _fail(message: str, exit_code: int, *, user_error: bool = False, debug: bool = False) -> None:
    """Print the traceback (with --debug) and the one-line message, then exit.

    Under torchrun, rank 0 prints; the others print (naming their rank) only errors that are
    their own: a user error is either the same on every rank or was agreed on, and then rank 0
    names the rank it came from.
    """
    from .distributed import env_rank

    rank = env_rank()
    if rank == 0 or not user_error:
        if debug:
            traceback.print_exc()
        _print_error(message if rank == 0 else f"rank {rank}: {message}")
    sys.exit(exit_code)


def _print_error(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()

"""Terminal output shared by the commands: stdout for reports only, everything else on stderr.

Under torchrun only rank 0 prints: the other ranks' consoles are silenced and their progress
bars never drawn (their errors still reach the terminal: see ``cli.main``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..distributed import is_main_process

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


class _RateColumn(ProgressColumn):
    """Items per second, named by the task's ``unit`` field when it has one (``images/s``)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        unit = f" {task.fields['unit']}" if task.fields.get("unit") else ""
        return Text(f"{speed:,.0f}{unit}/s" if speed else "", style="progress.data.speed")


class _LazyProgress(Progress):
    """Starts drawing at its first task, so a command that fails early prints nothing."""

    def add_task(self, *args, **kwargs):
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


@contextlib.contextmanager
def progress_display(quiet: bool) -> Iterator[Progress | None]:
    if quiet or not is_main_process():
        yield None
        return
    progress = _LazyProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )
    try:
        yield progress
    finally:
        if progress.live.is_started:
            progress.stop()


def stage_announcer(progress: Progress | None, *, show_up_to_date: bool) -> Callable[[str, bool], None]:
    """The ``on_stage`` callback of a schedule: clears the last stage's bars, names the next one."""

    def announce(stage: str, runs: bool) -> None:
        if progress is None:  # quiet
            return
        for task in list(progress.task_ids):  # one stage's bars at a time
            progress.remove_task(task)
        if runs:
            stderr.print(f"[bold]{stage}[/bold]", highlight=False)
        elif show_up_to_date:
            stderr.print(f"{stage}: up to date", style="dim", highlight=False)

    return announce


class _RichHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            stderr.print(f"warning: {message}", style="yellow", markup=False, highlight=False)
        else:
            stderr.print(message, markup=False, highlight=False)


def setup_logging(quiet: bool) -> None:
    stdout.quiet = stderr.quiet = not is_main_process()
    logger = logging.getLogger("fairgrape")
    logger.handlers[:] = [_RichHandler()]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def info(message: str, quiet: bool) -> None:
    if not quiet:
        stderr.print(message, highlight=False)

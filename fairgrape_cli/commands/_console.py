"""Terminal output shared by the commands: stdout for reports only, everything else on stderr.

Under torchrun only rank 0 prints: the other ranks' consoles are silenced and their progress
bars never drawn (their errors still reach the terminal: see ``cli.main``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
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

stdout = Console(soft_wrap=True)  # writes to whatever sys.stdout is when it prints
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
    """Progress bars on stderr, or None when ``quiet`` (or on a rank other than 0)."""
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
    """Log lines on stderr; a warning already shown is not repeated (``run`` evaluates the same
    data after every iteration, and one warning about it is enough)."""

    def __init__(self) -> None:
        super().__init__()
        self.warned: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            if message in self.warned:
                return
            self.warned.add(message)
            stderr.print(f"warning: {message}", style="yellow", markup=False, highlight=False)
        else:
            stderr.print(message, markup=False, highlight=False)


def setup_logging(quiet: bool) -> None:
    """The ``fairgrape`` logger to stderr (warnings in yellow); quiet: warnings only."""
    stdout.quiet = stderr.quiet = not is_main_process()
    logger = logging.getLogger("fairgrape")
    handler = _RichHandler()
    handler.addFilter(_InfoOnce())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


class _InfoOnce(logging.Filter):
    """An information line shown once per command: a run's stages each say the same image size."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        if message in self.shown:
            return False
        self.shown.add(message)
        return True


def warn(message: str) -> None:
    """A warning on stderr, as the log's are written (shown with --quiet too)."""
    logging.getLogger("fairgrape").warning("%s", message)


def info(message: str, quiet: bool) -> None:
    """A line on stderr unless ``quiet``."""
    if not quiet:
        stderr.print(message, highlight=False)


class _ClosedPipeTolerant:
    """A text stream that drops what it cannot write once its reader has gone (``| head -1``).

    Rich turns a ``BrokenPipeError`` into exit status 1, and click does too, which a CI script
    reads as "a condition held". A reader that stops early is not a failure: the command carries
    on to its own exit status, printing into nothing.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop_the_rest()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop_the_rest()

    def _drop_the_rest(self) -> None:
        self.reader_gone = True
        # Python flushes the stream again at exit and would fail (status 120): point its file
        # descriptor at /dev/null, as the Python docs' note on SIGPIPE advises
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def closed_stdout_is_not_an_error() -> Iterator[None]:
    """Within the block, writing to a closed stdout or stderr pipe is not an error."""
    original = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ClosedPipeTolerant(sys.stdout), _ClosedPipeTolerant(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = original

"""Errors the command line turns into a one-line message and an exit code."""

from __future__ import annotations


class FairgrapeError(Exception):
    """A problem the user can fix: bad input, bad usage, files that do not belong together.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code`` (2, as for usage errors);
    the traceback is shown only with ``--debug``.
    """

    exit_code = 2


class InputError(FairgrapeError):
    """A file, row, column or flag the tool cannot use."""


class OutputError(FairgrapeError):
    """An output that could not be written: no space left, no permission, a read-only folder.

    Not the user's input and not a bug: exit 1, one line naming the file and the reason.
    """

    exit_code = 1


FIRST_LINE_LIMIT = 200  # characters of an exception's message quoted in a one-line error


def first_line(error: BaseException, *, limit: int = FIRST_LINE_LIMIT) -> str:
    """The first line of ``error``'s message, cut to ``limit`` characters; its type's name when
    the message is empty. What a one-line error quotes of an exception it cannot explain itself
    (a library's, an image decoder's): enough to search for, never a wall of text.
    """
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def error_summary(error: BaseException) -> str:
    """``ValueError: first line``, or the type's name alone when the message is empty."""
    name, line = type(error).__name__, first_line(error)
    return name if line == name else f"{name}: {line}"

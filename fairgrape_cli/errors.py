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

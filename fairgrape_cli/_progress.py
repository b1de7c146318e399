"""The progress interface library code reports to; the CLI passes a rich ``Progress``."""

from __future__ import annotations

from typing import Any, Protocol


class ProgressSink(Protocol):
    """Where progress goes: tasks with a total, advanced as work is done."""

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> Any:
        """Start a task; returns its id."""

    def advance(self, task_id: Any, advance: float = 1) -> None:
        """Count ``advance`` more units of work done on a task."""

    def update(self, task_id: Any, **fields: Any) -> None:
        """Change a task's fields (description, total, completed)."""


class NoProgress:
    """Reports nowhere (library calls, ``--quiet``)."""

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        """A task that is never shown."""
        return 0

    def advance(self, task_id: Any, advance: float = 1) -> None:
        """Nothing to show."""
        pass

    def update(self, task_id: Any, **fields: Any) -> None:
        """Nothing to show."""
        pass

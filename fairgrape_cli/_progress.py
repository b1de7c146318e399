"""The progress interface library code reports to; the CLI passes a rich ``Progress``."""

from __future__ import annotations

from typing import Any, Protocol


class ProgressSink(Protocol):
    def add_task(self, description: str, total: float | None = None, **fields: Any) -> Any: ...

    def advance(self, task_id: Any, advance: float = 1) -> None: ...

    def update(self, task_id: Any, **fields: Any) -> None: ...


class NoProgress:
    """Reports nowhere (library calls, ``--quiet``)."""

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        return 0

    def advance(self, task_id: Any, advance: float = 1) -> None:
        pass

    def update(self, task_id: Any, **fields: Any) -> None:
        pass

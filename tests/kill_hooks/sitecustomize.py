"""Fault injection for tests/test_kill_resume.py: SIGKILL this process at a named point.

Loaded only by the tests, which put this folder first on ``PYTHONPATH`` of a ``fairgrape run``
subprocess (Python imports ``sitecustomize`` at start-up); the product has no test-only code.
``FAIRGRAPE_TEST_KILL_AT=KIND:NAME:N`` picks the point, counted from the process's start:

- ``progress:WORDS:N``  the N-th progress advance of a task whose description starts with WORDS
  ("scoring", "selecting", "fine-tuning"): inside a stage, between two batches or layers;
- ``replace:NAME:N``    the N-th atomic rename onto a file called NAME, just before it: the new
  file is complete in its temporary, which the kill leaves behind;
- ``replaced:NAME:N``   just after the N-th such rename: ``replaced:run-state.json:N`` kills
  between two stages, once the N-th finished stage was recorded.
"""

from __future__ import annotations

import os
import signal


def _install(spec: str) -> None:
    kind, name, count = spec.split(":")
    remaining = [int(count)]

    def reached() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    if kind == "progress":
        from rich.progress import Progress

        advance = Progress.advance

        def advancing(self, task_id, *args, **kwargs) -> None:
            advance(self, task_id, *args, **kwargs)
            task = self._tasks.get(task_id)
            if task is not None and task.description.startswith(name):
                reached()

        Progress.advance = advancing
    elif kind in ("replace", "replaced"):
        real_replace = os.replace

        def replacing(source, destination, *args, **kwargs):
            onto = os.path.basename(os.fspath(destination)) == name
            if onto and kind == "replace":
                reached()
            real_replace(source, destination, *args, **kwargs)
            if onto and kind == "replaced":
                reached()

        os.replace = replacing
    else:
        raise ValueError(f"FAIRGRAPE_TEST_KILL_AT: unknown kind {kind!r}")


if os.environ.get("FAIRGRAPE_TEST_KILL_AT"):
    _install(os.environ["FAIRGRAPE_TEST_KILL_AT"])

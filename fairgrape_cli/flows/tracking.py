"""A run's experiment tracking (``fairgrape run --track mlflow``): what is logged when.

The settings when the run starts; after each evaluation (the dense model, every iteration, the
final model) its density, accuracy and per-group accuracy at step = its place in the history;
at the end the report's numbers and files. The tracker's run id is kept in
``OUTPUT/tracking.json``, so a resumed run continues the same tracked run and logs only the
steps it had not logged. Under torchrun rank 0 alone tracks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io.files import write_text_atomically
from ..io.reports import METRICS, Report
from ..io.tracking import Tracker, metric_name, open_tracker
from .config import RunConfig

TRACKING_FILE = "tracking.json"


class RunTracking:
    """One run's tracker, and the history steps it has logged."""

    def __init__(self, tracker: Tracker, directory: Path):
        self.tracker = tracker
        self.directory = directory
        self.logged: set[int] = set()

    @classmethod
    def open(cls, kind: str, config: RunConfig) -> RunTracking:
        """The tracker ``kind`` names, continuing the run this output folder tracked before."""
        directory = config.output
        directory.mkdir(parents=True, exist_ok=True)
        known = _read_ids(directory)
        params = {**config.settings, **config.sections}
        tags = {"fairgrape.config": str(config.path), "fairgrape.output": str(directory)}
        tracker = open_tracker(kind, run_name=directory.name, params=params, tags=tags, resume=known.get(kind))
        write_text_atomically(directory / TRACKING_FILE, json.dumps({**known, kind: tracker.run_id}, indent=2) + "\n")
        return cls(tracker, directory)

    def evaluated(self, step: int, entry: dict[str, Any], *, ran: bool) -> None:
        """Log history entry ``step`` once: when its evaluation ran now, or the tracked run is new."""
        if step in self.logged or (self.tracker.resumed and not ran):
            return
        self.logged.add(step)
        metrics = {"density": entry.get("density"), "accuracy": entry.get("accuracy")}
        metrics.update({metric_name("group_accuracy", group): value for group, value in (entry.get("groups") or {}).items()})
        self.tracker.log_step(step, metrics)

    def finished(self, report: Report, files: list[Path]) -> None:
        """Log the report's numbers (every metric, each group's accuracy and drop) and files."""
        metrics: dict[str, float | None] = {f"final/{name}": report.metric(name) for name in METRICS}
        for row in report.groups:
            metrics[metric_name("final", "group_accuracy", row.group)] = row.accuracy
            metrics[metric_name("final", "group_drop", row.group)] = row.drop
        self.tracker.finish(metrics=metrics, files=files)

    def failed(self, error: BaseException) -> None:
        """End the tracked run as killed (interrupted) or failed."""
        self.tracker.fail("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def _read_ids(directory: Path) -> dict[str, str]:
    try:
        known = json.loads((directory / TRACKING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}

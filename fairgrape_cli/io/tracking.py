"""Experiment tracking: a run's settings, each iteration's density and per-group accuracy, and
its final report, logged to the tracker teams already use (``run --track mlflow``).

A tracker is one registered definition (``TRACKERS``); the run calls ``start``, ``log_step``
after each evaluation and ``finish`` (or ``fail``). MLflow is an optional extra: without it,
``--track mlflow`` is refused in one line that names the extra. MLflow logs where the user's
environment says (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``), else to its local store
in the current folder (the one ``mlflow ui`` opens there).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ..errors import InputError
from ..registry import Registry

DEFAULT_EXPERIMENT = "fairgrape"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")  # characters MLflow refuses in metric and param names


class Tracker(Protocol):
    """What a run tells its tracker."""

    run_id: str
    where: str
    resumed: bool  # an earlier run's tracking continued (its steps are logged already)

    def log_step(self, step: int, metrics: Mapping[str, float | None]) -> None:
        """Log one evaluation's numbers at ``step`` (the iteration)."""

    def finish(self, *, metrics: Mapping[str, float | None], files: list[Path]) -> None:
        """Log the final numbers and files, and end the run as finished."""

    def fail(self, status: str) -> None:
        """End the run with ``status`` (failed or killed)."""


def metric_name(*parts: str) -> str:
    """A name MLflow accepts (``accuracy/dark skin``): other characters become ``_``."""
    return "/".join(_UNSAFE.sub("_", str(part)) for part in parts)


def flat_params(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params: ``finetune.epochs`` -> ``"3"`` (None left out)."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, prefix=f"{name}."))
        elif value is not None:
            out[metric_name(name)] = str(value)[:6000]  # MLflow's limit on a param's value
    return out


def _finite(metrics: Mapping[str, float | None]) -> dict[str, float]:
    return {
        metric_name(key): float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class MlflowTracker:
    """One MLflow run; ``resume``: the id of a run to continue (a resumed ``fairgrape run``)."""

    def __init__(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str], resume: str | None = None):
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise InputError(
                "--track mlflow needs MLflow, which is not installed: pip install 'fairgrape[mlflow]'"
            ) from None
        self._client = MlflowClient()
        self.where = mlflow.get_tracking_uri()
        run = None
        if resume:
            try:
                run = self._client.get_run(resume)
                self._client.update_run(resume, status="RUNNING")
            except Exception:  # gone from this store (another URI, deleted): start a new one
                run = None
        self.resumed = run is not None
        if run is None:
            experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
            experiment = self._client.get_experiment_by_name(experiment_name)
            experiment_id = (
                experiment.experiment_id if experiment is not None else self._client.create_experiment(experiment_name)
            )
            run = self._client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
            for key, value in flat_params(params).items():
                self._client.log_param(run.info.run_id, key, value)
        self.run_id = run.info.run_id

    def log_step(self, step: int, metrics: Mapping[str, float | None]) -> None:
        """Log each finite number at ``step``."""
        for key, value in _finite(metrics).items():
            self._client.log_metric(self.run_id, key, value, step=step)

    def finish(self, *, metrics: Mapping[str, float | None], files: list[Path]) -> None:
        """Log the final numbers and the files that exist, and end the run as finished."""
        for key, value in _finite(metrics).items():
            self._client.log_metric(self.run_id, key, value)
        for path in files:
            if path.is_file():
                self._client.log_artifact(self.run_id, str(path))
        self._client.set_terminated(self.run_id, status="FINISHED")

    def fail(self, status: str = "FAILED") -> None:
        """End the run with ``status``."""
        self._client.set_terminated(self.run_id, status=status)


TRACKERS: Registry[type] = Registry("--track")
TRACKERS.add("mlflow", MlflowTracker)


def open_tracker(
    kind: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str], resume: str | None = None
) -> Tracker:
    """The tracker ``kind`` names (``TRACKERS``), with a run started (or ``resume`` continued)."""
    return TRACKERS.choose(kind)(run_name=run_name, params=params, tags=tags, resume=resume)

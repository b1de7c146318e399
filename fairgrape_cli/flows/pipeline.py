"""``fairgrape run config.yaml``: the iterative score -> prune -> fine-tune schedule, resumable.

Iteration i prunes to ``min(1 - keep_per_iter**i, rate)`` on a freshly scored model, then
fine-tunes it; a final fine-tune and a report (against the starting model) follow. Each stage is
one declaration in ``flows.steps`` (its call, and what its *fingerprint* is made of: the
settings it reads and the sha256 of the files it reads); a stage runs only when its fingerprint
differs from the one recorded when it last finished, so re-running a config resumes after the
last finished stage and a changed setting reruns what depends on it. Outputs are written
atomically, so a run killed mid-stage resumes cleanly.

Under torchrun the stages that pass over images (score, fine-tune, evaluation, report) run on every
rank, sharded; the selection (prune) and the copy of the final model run on rank 0 while the others
wait, and rank 0 alone decides what is up to date and writes the run state; the others read the
files it wrote (the output folder must be one that every node sees).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import distributed
from .._progress import NoProgress, ProgressSink
from ..devices import check_precision, resolve_device
from ..errors import InputError
from ..io.checkpoints import model_digest
from ..io.files import remove_leftover_temporaries, sha256_file
from ..io.layouts import read_layout
from ..io.locks import FolderLock
from ..io.reports import Report, load_report
from ..stages.quantize import QuantizeSummary
from .config import RunConfig, schedule
from .run_state import RunState, StageRecord, fingerprint
from .steps import ITERATION_STEPS, QUANTIZE, Planned, StepCall, check_given_teachers, fingerprint_parts, plan
from .tracking import RunTracking

log = logging.getLogger("fairgrape")


class _Remake(Exception):
    """A stage that must run needs a file deleted as superseded: its stage was forgotten, so the
    schedule runs again from the start (finished stages are skipped) and makes it anew."""


@dataclass
class RunResult:
    """A run's outcome: its folder, its report, the stages that ran and those up to date, and
    the int8 file of a ``quantize`` section (where it is, each group's accuracy)."""

    output: Path
    report: Report
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quantized: QuantizeSummary | None = None


@dataclass
class _Pass:
    """What one pass over the schedule knows: the run's files by role, with their sha256, the
    evaluations so far, the data's identity."""

    files: dict[str, tuple[Path, str | None]]
    data_identity: dict[str, Any]
    history: list[dict] = field(default_factory=list)


class _Runner:
    """Runs one stage at a time against the recorded state."""

    def __init__(
        self,
        config: RunConfig,
        progress: ProgressSink,
        on_stage: Callable[[str, bool], None] | None,
        runtime: distributed.Runtime = distributed.SINGLE,
    ):
        self.config = config
        self.runtime = runtime
        self.directory = config.output
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state = RunState(self.directory)
        _refuse_another_configs_folder(self.state, config, runtime)
        self.progress = progress
        self.on_stage = on_stage
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self._announced: set[tuple[str, bool]] = set()  # a remade file replays the schedule: say things once

    def run(self, planned: Planned, current: _Pass) -> StageRecord:
        """Run ``planned`` unless the outputs of the same fingerprint are already there.

        A file it reads that was deleted as superseded is made again first. Under torchrun rank
        0 decides whether the stage is up to date and records it; a stage that reads no images
        runs on rank 0 while the others wait.
        """
        step, runtime = planned.step, self.runtime
        call = self._call(planned, current)
        shas = {role: current.files[role][1] if role in current.files else None for role in current.files}
        if call.files.get("teacher") is not None:
            shas["teacher"] = model_digest(call.files["teacher"])
        key = fingerprint(fingerprint_parts(step, self.config, shas, call.values, current.data_identity))
        record = runtime.broadcast(self.state.up_to_date(planned.name, key) if runtime.is_main else None)
        if record is not None:
            self.skipped.append(planned.name)
            self._announce(planned.name, False)
            return record
        self._remake_discarded(list(call.files.values()))  # (with the files it needs present)
        self._announce(planned.name, True)
        if step.every_rank:
            result = step.call(call)
        else:
            with runtime.together():
                result = step.call(call) if runtime.is_main else None
        self.ran.append(planned.name)
        if not runtime.is_main:  # rank 0 hashes the outputs and writes the state
            record = runtime.broadcast(None)
            self.state.records[planned.name] = record
            return record
        outputs = list(planned.outputs.values())
        return runtime.broadcast(self.state.finish(planned.name, key, outputs, result if step.result else None))

    def _call(self, planned: Planned, current: _Pass) -> StepCall:
        """The step's view of the settings, its files, outputs and declared values."""
        step = planned.step
        view = step.view(self.config)
        files = {role.rstrip("?"): current.files.get(role.rstrip("?"), (None, None))[0] for role in step.files}
        files.update({role: current.files[role][0] for role in step.present if role in current.files})
        if step.teacher is not None:
            files["teacher"] = step.teacher(view, self.config)
        values = dict(planned.values)
        if current.history:
            values.update(baseline=current.history[0], history=current.history)
        values = {name: values[name] for name in step.values}  # what it declares, nothing else
        return StepCall(view, files, planned.outputs, values, self.config, self.progress, self.runtime)

    def _announce(self, name: str, runs: bool) -> None:
        if self.on_stage is not None and (name, runs) not in self._announced:
            self._announced.add((name, runs))
            self.on_stage(name, runs)

    def _remake_discarded(self, inputs: list[Path | None]) -> None:
        """Forget the stage that made an input deleted as superseded, and start over (_Remake)."""
        runtime = self.runtime
        producer = runtime.broadcast(self._discarded_input(inputs) if runtime.is_main else None)
        if producer is None:
            return
        if runtime.is_main:
            self.state.forget(producer)
        else:
            self.state.records.pop(producer, None)
        raise _Remake(producer)

    def _discarded_input(self, inputs: list[Path | None]) -> str | None:
        """The stage to run again because it made an input that was deleted as superseded."""
        for path in inputs:
            producer = self.state.producer_of_discarded(path) if path is not None and not path.exists() else None
            if producer is not None:
                log.info("%s runs again after all: %s is needed, and keep_artifacts: last deleted it", producer,
                         path.relative_to(self.directory).as_posix())
                return producer
        return None

    def superseded(self, iteration: int) -> None:
        """With ``keep_artifacts: last``, delete an iteration's files once the next one finished
        (rank 0 does, under torchrun: it keeps the state)."""
        if self.config["keep_artifacts"] != "last" or not self.runtime.is_main:
            return
        folder = f"iter-{iteration:02d}"
        for step in ITERATION_STEPS:
            self.state.discard(f"{folder}/{step.name}")
        with contextlib.suppress(OSError):  # the folder, when nothing else is in it
            (self.directory / folder).rmdir()

    def sha(self, record: StageRecord, path: Path) -> str:
        """The sha256 the state records for ``path``, an output of ``record``'s stage."""
        return record.outputs[path.relative_to(self.directory).as_posix()]["sha256"]


def run_schedule(
    config: RunConfig,
    *,
    progress: ProgressSink | None = None,
    on_stage: Callable[[str, bool], None] | None = None,
    track: str | None = None,
) -> RunResult:
    """Run (or resume) the schedule of ``config``; returns the final report with its history.

    ``on_stage(name, runs)`` is told about each stage before it runs or is skipped. The run is
    the output folder's only writer while it holds ``OUTPUT/run.lock`` (a second run there is
    refused), so it may remove the temporary files a killed run left behind. ``track``: an
    experiment tracker (``io.tracking.TRACKERS``, e.g. ``mlflow``) told the settings, each
    evaluation and the final report (``flows.tracking``).
    """
    with contextlib.ExitStack() as held:  # the lock, released however the run ends
        device = resolve_device(config.settings["device"])
        runtime = distributed.start(device)
        with runtime.together():
            if runtime.is_main:  # (under torchrun, rank 0 writes for all; a refusal stops every rank)
                _hold_folder(config.output, held)
            check_precision(config.settings["precision"], device, flag=f"{config.path}: precision")
            if runtime.is_main:
                check_given_teachers(config)
            runner = _Runner(config, progress or NoProgress(), on_stage, runtime)
            tracking = RunTracking.open(track, config) if track and runtime.is_main else None
        try:
            result = _run_passes(runner, tracking)
        except BaseException as error:
            if tracking is not None:
                tracking.failed(error)
            raise
        if tracking is not None:
            tracking.finished(result.report, [path for path in (result.output / "report.json",
                                                                result.output / "report.html") if path.is_file()])  # fmt: skip
        return result


def _run_passes(runner: _Runner, tracking: RunTracking | None) -> RunResult:
    """Passes over the schedule until one finishes without a stage forgotten to remake a file."""
    while True:
        runner.skipped = []
        try:
            return _run_pass(runner, tracking)
        except _Remake:  # a stage was forgotten to remake a deleted file: go through again
            continue


def _run_pass(runner: _Runner, tracking: RunTracking | None = None) -> RunResult:
    """Every stage of the schedule in order, each run or found up to date."""
    config = runner.config
    settings = config.settings
    with runner.runtime.together():
        start = Path(settings["model"])
        if not start.exists():  # a checkpoint file, or a Hugging Face model folder
            raise InputError(f"{config.origin('model')}: model {start} does not exist")
        start_sha = model_digest(start)
        current = _Pass({"start": (start, start_sha), "model": (start, start_sha)}, _data_identity(config))
    rates = schedule(settings["rate"], keep_per_iter=settings["keep_per_iter"], iterations=settings["iterations"])
    quantized = None
    for planned in plan(config, rates, runner.directory):
        record = runner.run(planned, current)
        if planned.step is QUANTIZE:  # the file where it is now (the folder may have moved)
            quantized = replace(QuantizeSummary.from_dict(record.result), output=planned.outputs["quantized"])
        for role, path in planned.outputs.items():
            current.files[role] = (path, runner.sha(record, path))
        if planned.history is not None:
            current.history.append({**record.result, **planned.history})
            if tracking is not None:
                tracking.evaluated(len(current.history) - 1, current.history[-1], ran=planned.name in runner.ran)
        if planned.supersedes:
            runner.superseded(planned.supersedes)  # the next iteration finished and is recorded
    report = load_report(runner.directory / "report.json")
    skipped = [name for name in runner.skipped if name not in runner.ran]
    return RunResult(runner.directory, report, runner.ran, skipped, quantized)


def _refuse_another_configs_folder(state: RunState, config: RunConfig, runtime: distributed.Runtime) -> None:
    """Refuse to run in a folder that holds the run of another config file: its results would be
    replaced without a word (two configs copied from one keep its ``output``). The same config
    with changed settings reruns what they affect, as ever; the state records the file's name,
    not its path, so a moved folder still resumes. A state written before 0.3 names none: it is
    stamped with this config's name at once (rank 0 writes the state)."""
    name = config.path.name
    if state.config is not None and state.config != name:
        raise InputError(
            f"{config.origin('output')}: output folder {state.directory} holds the run of {state.config}, not of "
            f"{name}, and this run would replace its results; give {name} its own folder (output: DIR, or "
            f"--set output=DIR), run it as {state.config} if it was renamed, or delete {state.directory} to "
            "start over"
        )
    unstamped = state.config is None and bool(state.records)
    state.config = name
    if unstamped and runtime.is_main:
        state.save()


def _hold_folder(directory: Path, held: contextlib.ExitStack) -> None:
    """Take ``directory``'s run lock until ``held`` closes, then remove what killed runs left."""
    held.enter_context(FolderLock(directory))
    leftovers = remove_leftover_temporaries([directory, *directory.glob("iter-*")])
    if leftovers:
        log.info("removed %d temporary file(s) a killed run left in %s", len(leftovers), directory)


def _data_identity(config: RunConfig) -> dict[str, Any]:
    """What identifies the data cheaply: its folder and the sha256 of its label files (and
    skip_bad_images, when on: absent when off, so runs recorded before it stay up to date).

    Images are not hashed (that would cost a full read of the dataset on every resume); a
    changed label file reruns everything.
    """
    settings = config.settings
    root = Path(settings["data"])
    raw = read_layout(root, Path(settings["labels"]) if settings["labels"] else None)
    identity = {
        "root": str(root.resolve()),
        "labels": {str(source): sha256_file(source) for source in raw.sources if source.is_file()},
        "rows": len(raw),
    }
    if settings["skip_bad_images"]:
        identity["skip_bad_images"] = True
    return identity

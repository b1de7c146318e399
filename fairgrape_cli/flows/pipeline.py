"""``fairgrape run config.yaml``: the iterative score -> prune -> fine-tune schedule, resumable.

Iteration i prunes to ``min(1 - keep_per_iter**i, rate)`` on a freshly scored model, then
fine-tunes it; a final fine-tune and a report (against the starting model) follow. Every stage is
one of the library stages in ``fairgrape_cli.stages``, run only when its *fingerprint* (its settings and
the sha256 of its inputs) differs from the one recorded when it last finished, so re-running a
config resumes after the last finished stage and a changed setting reruns from the first stage
it affects. Outputs are written atomically, so a run killed mid-stage resumes cleanly.

Under torchrun the stages that pass over images (score, fine-tune, evaluation, report) run on every
rank, sharded; the selection (prune) and the copy of the final model run on rank 0 while the others
wait, and rank 0 alone decides what is up to date and writes the run state; the others read the
files it wrote (the output folder must be one that every node sees).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import distributed, stages
from .._progress import NoProgress, ProgressSink
from ..devices import check_precision, resolve_device
from ..errors import InputError
from ..io.data import DataSpec
from ..io.files import atomic_output, remove_leftover_temporaries, sha256_file
from ..io.layouts import read_layout
from ..io.locks import FolderLock
from ..method.distillation import Distillation
from ..method.kept_epoch import KeptEpoch
from ..method.metrics import Bootstrap
from ..method.objectives import ObjectiveOptions, get_objective
from .config import FINETUNE_KEYS_SINCE_0_3, SCHEMA, RunConfig, schedule
from .run_state import RunState, StageRecord, fingerprint

log = logging.getLogger("fairgrape")

# ------------------------------------------------------------------------------------------- run


class _Remake(Exception):
    """A stage that must run needs a file deleted as superseded: its stage was forgotten, so the
    schedule runs again from the start (finished stages are skipped) and makes it anew."""


@dataclass
class RunResult:
    output: Path
    report: dict
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Runner:
    """Runs one stage at a time against the recorded state; knows the config's shared options."""

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
        self.progress = progress
        self.on_stage = on_stage
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self._announced: set[tuple[str, bool]] = set()  # a remade file replays the schedule: say things once

    def stage(
        self,
        name: str,
        parts: dict[str, Any],
        outputs: list[Path],
        action: Callable[[], Any],
        *,
        inputs: list[Path | None] = (),
        keep_result: bool = False,
        on_every_rank: bool = True,
    ) -> StageRecord:
        """Run ``action`` unless the outputs of the same fingerprint are already there.

        ``inputs`` are the files ``action`` reads (one deleted as superseded is made again
        first); ``keep_result`` records what ``action`` returns (small JSON data) for later runs.
        Under torchrun rank 0 decides whether the stage is up to date and records it; a stage
        that reads no images (``on_every_rank=False``) runs on rank 0 while the others wait.
        """
        runtime = self.runtime
        key = fingerprint(parts)
        record = runtime.broadcast(self.state.up_to_date(name, key) if runtime.is_main else None)
        if record is not None:
            self.skipped.append(name)
            self._announce(name, False)
            return record
        producer = runtime.broadcast(self._discarded_input(inputs) if runtime.is_main else None)
        if producer is not None:
            if runtime.is_main:
                self.state.forget(producer)
            else:
                self.state.records.pop(producer, None)
            raise _Remake(producer)
        self._announce(name, True)
        if on_every_rank:
            result = action()
        else:
            with runtime.together():
                result = action() if runtime.is_main else None
        self.ran.append(name)
        if not runtime.is_main:  # rank 0 hashes the outputs and writes the state
            record = runtime.broadcast(None)
            self.state.records[name] = record
            return record
        return runtime.broadcast(self.state.finish(name, key, outputs, result if keep_result else None))

    def _announce(self, name: str, runs: bool) -> None:
        if self.on_stage is not None and (name, runs) not in self._announced:
            self._announced.add((name, runs))
            self.on_stage(name, runs)

    def _discarded_input(self, inputs: list[Path | None]) -> str | None:
        """The stage to run again because it made an input that was deleted as superseded."""
        for path in inputs:
            producer = self.state.producer_of_discarded(path) if path is not None and not path.exists() else None
            if producer is not None:
                log.info("%s runs again to remake %s, which keep_artifacts: last deleted", producer,
                         path.relative_to(self.directory).as_posix())
                return producer
        return None

    def superseded(self, iteration: int) -> None:
        """With ``keep_artifacts: last``, delete an iteration's files once the next one finished
        (rank 0 does, under torchrun: it keeps the state)."""
        if self.config["keep_artifacts"] != "last" or not self.runtime.is_main:
            return
        folder = f"iter-{iteration:02d}"
        for stage in (f"{folder}/score", f"{folder}/prune", f"{folder}/finetune"):
            self.state.discard(stage)
        with contextlib.suppress(OSError):  # the folder, when nothing else is in it
            (self.directory / folder).rmdir()

    def sha(self, record: StageRecord, path: Path) -> str:
        return record.outputs[path.relative_to(self.directory).as_posix()]["sha256"]

    def model(self, path: Path) -> stages.ModelSource:
        from ..io.architectures import check_arch_args

        arch_args = self.config["arch_args"]
        if arch_args is not None:
            arch_args = check_arch_args(arch_args, source=self.config.origin("arch_args"))
        return stages.ModelSource(path, self.config["arch"], self.config["trust_checkpoint"], arch_args=arch_args)

    def data(self, split: str | None, **overrides: Any) -> DataSpec:
        settings = self.config.settings
        return DataSpec(
            root=Path(settings["data"]),
            target=settings["target"],
            groups=settings["groups"],
            split=split,
            labels=Path(settings["labels"]) if settings["labels"] else None,
            skip_bad_images=settings["skip_bad_images"],  # every stage reads the same images
            **overrides,
        )

    def precision(self) -> str:
        return self.config.settings["precision"]

    def precision_part(self) -> dict[str, str]:
        """The precision, in the fingerprints of the stages it changes (absent for fp32, so the
        runs recorded before it existed stay up to date)."""
        return {} if self.precision() == "fp32" else {"precision": self.precision()}

    def loading(self, batch_size: int) -> stages.Loading:
        settings = self.config.settings
        return stages.Loading(settings["image_size"], batch_size, settings["device"], settings["workers"])


def run_schedule(
    config: RunConfig,
    *,
    progress: ProgressSink | None = None,
    on_stage: Callable[[str, bool], None] | None = None,
) -> RunResult:
    """Run (or resume) the schedule of ``config``; returns the final report with its history.

    ``on_stage(name, runs)`` is told about each stage before it runs or is skipped. The run is
    the output folder's only writer while it holds ``OUTPUT/run.lock`` (a second run there is
    refused), so it may remove the temporary files a killed run left behind.
    """
    with contextlib.ExitStack() as held:  # the lock, released however the run ends
        return _run_schedule(config, progress, on_stage, held)


def _run_schedule(
    config: RunConfig,
    progress: ProgressSink | None,
    on_stage: Callable[[str, bool], None] | None,
    held: contextlib.ExitStack,
) -> RunResult:
    device = resolve_device(config.settings["device"])
    runtime = distributed.start(device)
    with runtime.together():
        if runtime.is_main:  # (under torchrun, rank 0 writes for all; a refusal stops every rank)
            _hold_folder(config.output, held)
        check_precision(config.settings["precision"], device, flag=f"{config.path}: precision")
        runner = _Runner(config, progress or NoProgress(), on_stage, runtime)
    while True:
        runner.skipped = []
        try:
            return _run_pass(runner)
        except _Remake:  # a stage was forgotten to remake a deleted file: go through again
            continue


def _run_pass(runner: _Runner) -> RunResult:
    from ..method.selection import get_criterion

    config, runtime = runner.config, runner.runtime
    with runtime.together():
        settings, sections = config.settings, config.sections
        directory = runner.directory
        start = Path(settings["model"])
        if not start.exists():  # a checkpoint file, or a Hugging Face model folder
            raise InputError(f"{config.origin('model')}: model {start} does not exist")
        data_identity = _data_identity(runner.data(None))
        if settings["skip_bad_images"]:  # (absent when off, so runs recorded before it stay up to date)
            data_identity["skip_bad_images"] = True
        needs_scores = get_criterion(settings["method"]).needs_importance
    rates = schedule(settings["rate"], keep_per_iter=settings["keep_per_iter"], iterations=settings["iterations"])
    common = {
        key: settings[key]
        for key in ("target", "groups", "image_size", "seed", "include", "exclude", "arch")
    }
    if settings["arch_args"] is not None:  # (absent when unset, so runs recorded before stay up to date)
        common["arch_args"] = settings["arch_args"]

    # what an evaluation's numbers depend on: not the batch size, the HTML page nor the bootstrap
    # (only the report has intervals), so changing those does not re-evaluate every iteration's
    # model (which keep_artifacts: last may have deleted)
    evaluation = {key: sections["report"][key] for key in ("split", "min_group_size")}
    model_path, model_sha = start, _model_digest(start)
    masks_path, masks_sha = None, None
    history = [runner.stage(
        "evaluate-00",
        {"model": model_sha, "data": data_identity, "report": evaluation, **common, **runner.precision_part()},
        [],
        lambda: _evaluate(runner, start),
        inputs=[start],
        keep_result=True,
    ).result]  # fmt: skip
    history[0].update(iteration=0, stage="dense")

    for index, rate in enumerate(rates, start=1):
        folder = directory / f"iter-{index:02d}"
        importance = folder / "importance.safetensors"
        masks, pruned, finetuned = folder / "masks.safetensors", folder / "pruned.pt", folder / "finetuned.pt"
        importance_sha = None
        if needs_scores:
            record = runner.stage(
                f"iter-{index:02d}/score",
                {"model": model_sha, "masks": masks_sha, "data": data_identity, "score": sections["score"], **common},
                [importance],
                lambda: stages.score(
                    model=runner.model(model_path),
                    data=runner.data(sections["score"]["split"], min_group_size=sections["score"]["min_group_size"]),
                    output=importance,
                    masks=masks_path,
                    loading=runner.loading(sections["score"]["batch_size"]),
                    max_batches=sections["score"]["max_batches"],
                    samples_per_group=sections["score"]["samples_per_group"],
                    include=settings["include"],
                    exclude=settings["exclude"],
                    dtype=sections["score"]["dtype"],
                    seed=settings["seed"],
                    progress=runner.progress,
                ),
                inputs=[model_path, masks_path],
            )
            importance_sha = runner.sha(record, importance)
        record = runner.stage(
            f"iter-{index:02d}/prune",
            {"rate": rate, "method": settings["method"], "prune": sections["prune"], "model": model_sha,
             "importance": importance_sha, "masks": masks_sha, **common},
            [masks, pruned],
            lambda: stages.prune(
                rate=rate,
                model=runner.model(model_path),
                importance=importance if needs_scores else None,
                method=settings["method"],
                scope=sections["prune"]["scope"],
                min_layer_density=sections["prune"]["min_layer_density"],
                granularity=sections["prune"]["granularity"],
                masks=masks_path,
                output=masks,
                model_output=pruned,
                include=settings["include"],
                exclude=settings["exclude"],
                seed=settings["seed"],
                progress=runner.progress,
            ),
            on_every_rank=False,  # selection reads no images: rank 0 prunes, the others wait
            inputs=[model_path, importance if needs_scores else None, masks_path],
        )
        masks_path, masks_sha = masks, runner.sha(record, masks)
        model_path, model_sha = pruned, runner.sha(record, pruned)
        if sections["finetune"]["epochs"] > 0:
            model_path, model_sha = _finetune(
                runner, f"iter-{index:02d}/finetune", "finetune", model_path, model_sha,
                masks_path, masks_sha, finetuned, data_identity, common,
            )  # fmt: skip
        entry = runner.stage(
            f"evaluate-{index:02d}",
            {"model": model_sha, "data": data_identity, "report": evaluation, **common, **runner.precision_part()},
            [],
            lambda: _evaluate(runner, model_path),
            inputs=[model_path],
            keep_result=True,
        ).result
        history.append({**entry, "iteration": index, "stage": "iteration", "rate": rate})
        if index > 1:
            runner.superseded(index - 1)  # this iteration finished and is recorded

    final = directory / "final.pt"
    if sections["final_finetune"]["epochs"] > 0:
        model_path, model_sha = _finetune(
            runner, "final_finetune", "final_finetune", model_path, model_sha,
            masks_path, masks_sha, final, data_identity, common,
        )  # fmt: skip
    else:
        runner.stage("final_finetune", {"model": model_sha, "copy": True}, [final],
                     lambda: _copy_atomically(model_path, final), on_every_rank=False, inputs=[model_path])
        model_sha = sha256_file(final)
    final_entry = runner.stage(
        "evaluate-final",
        {"model": model_sha, "data": data_identity, "report": evaluation, **common, **runner.precision_part()},
        [],
        lambda: _evaluate(runner, final),
        inputs=[final],
        keep_result=True,
    ).result
    history.append({**final_entry, "iteration": len(rates), "stage": "final", "rate": rates[-1]})

    report_path = directory / "report.json"
    outputs = [report_path] + ([directory / "report.html"] if sections["report"]["html"] else [])
    runner.stage(
        "report",
        {"model": model_sha, "baseline": history[0], "history": history, "data": data_identity,
         "report": sections["report"], **common, **runner.precision_part()},
        outputs,
        lambda: _write_report(runner, final, start, history, rates, outputs),
        inputs=[final, start, masks_path],  # the report names the final model's masks
    )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return RunResult(directory, report, runner.ran, [name for name in runner.skipped if name not in runner.ran])


def _finetune(runner, name, section, model_path, model_sha, masks_path, masks_sha, output, data_identity, common):
    options = runner.config.sections[section]
    teacher = _teacher(runner, options)
    settings = {
        key: value for key, value in options.items()
        if key not in FINETUNE_KEYS_SINCE_0_3 or value != SCHEMA[section][key].default
    }  # fmt: skip
    record = runner.stage(
        name,
        {"model": model_sha, "masks": masks_sha, "data": data_identity, section: settings, **common,
         **runner.precision_part(), **({"teacher": _model_digest(teacher)} if teacher else {})},
        [output],
        lambda: stages.finetune(
            model=runner.model(model_path),
            data=runner.data(options["split"]),
            masks=masks_path,
            output=output,
            loading=runner.loading(options["batch_size"]),
            epochs=options["epochs"],
            lr=options["lr"],
            lr_milestones=options["lr_milestones"],
            lr_gamma=options["lr_gamma"],
            val_split=options["val_split"],
            augment=options["augment"],
            objective=options["objective"],
            objective_options=ObjectiveOptions(
                dro_step=options["dro_step"], balance_unit=options["balance_unit"], balance_by=options["balance_by"],
                constraint_bound=options["constraint_bound"], constraint_metric=options["constraint_metric"],
                multiplier_lr=options["multiplier_lr"],
            ),
            teacher=runner.model(teacher) if teacher else None,
            distillation=Distillation(options["distill_weight"], options["distill_temperature"]),
            kept_epoch=KeptEpoch(options["keep_epoch"], options["keep_within"]),
            seed=runner.config["seed"],
            precision=runner.precision(),
            progress=runner.progress,
        ),
        inputs=[model_path, masks_path, teacher],
    )
    return output, runner.sha(record, output)


def _model_digest(path: Path) -> str:
    """sha256 of a checkpoint file or of a Hugging Face model folder (io/checkpoints.model_digest)."""
    from ..io.checkpoints import model_digest

    return model_digest(path)


def _teacher(runner: _Runner, options: dict) -> Path | None:
    """The dense model a fine-tuning section learns from or compares with, when it uses one:
    its ``teacher``, else the run's starting model."""
    if not (options["distill_weight"] > 0 or get_objective(options["objective"]).needs_teacher):
        return None
    teacher = Path(options["teacher"] or runner.config.settings["model"])
    if not teacher.exists():  # a checkpoint file, or a Hugging Face model folder
        raise InputError(f"{runner.config.path}: teacher {teacher} does not exist")
    return teacher


def _evaluate(runner: _Runner, model: Path) -> dict:
    """Density, overall and per-group accuracy of ``model`` on the report split (for the history)."""
    options = runner.config.sections["report"]
    result = stages.report(
        model=runner.model(model),
        data=runner.data(options["split"], min_group_size=options["min_group_size"]),
        loading=runner.loading(options["batch_size"]),
        bootstrap=Bootstrap(resamples=0),  # the history keeps no intervals
        precision=runner.precision(),
        progress=runner.progress,
    ).report
    return {
        "density": result["density"],
        "accuracy": result["overall"]["accuracy"],
        "groups": {row["group"]: row["accuracy"] for row in result["groups"]},
    }


def _write_report(runner: _Runner, final: Path, start: Path, history, rates, outputs) -> None:
    settings, options = runner.config.settings, runner.config.sections["report"]
    result = stages.report(
        model=runner.model(final),
        data=runner.data(options["split"], min_group_size=options["min_group_size"]),
        baseline=runner.model(start),
        loading=runner.loading(options["batch_size"]),
        bootstrap=Bootstrap(resamples=options["bootstrap"], seed=settings["seed"]),
        precision=runner.precision(),
        progress=runner.progress,
    ).report
    result["history"] = history
    result["run"] = {
        "config": str(runner.config.path),
        "method": settings["method"],
        "rate": settings["rate"],
        "keep_per_iter": settings["keep_per_iter"],
        "iterations": len(rates),
        "schedule": rates,
        "seed": settings["seed"],
    }
    with runner.runtime.together():
        if runner.runtime.is_main:
            stages.save_report(result, json_output=outputs[0], html_output=outputs[1] if len(outputs) > 1 else None)


def _hold_folder(directory: Path, held: contextlib.ExitStack) -> None:
    """Take ``directory``'s run lock until ``held`` closes, then remove what killed runs left."""
    held.enter_context(FolderLock(directory))
    leftovers = remove_leftover_temporaries([directory, *directory.glob("iter-*")])
    if leftovers:
        log.info("removed %d temporary file(s) a killed run left in %s", len(leftovers), directory)


def _copy_atomically(source: Path, target: Path) -> None:
    with atomic_output(target) as tmp:
        shutil.copyfile(source, tmp)


def _data_identity(spec: DataSpec) -> dict[str, Any]:
    """What identifies the data cheaply: its folder and the sha256 of its label files.

    Images are not hashed (that would cost a full read of the dataset on every resume); a
    changed label file reruns everything.
    """
    raw = read_layout(spec.root, spec.labels)
    return {
        "root": str(spec.root.resolve()),
        "labels": {str(source): sha256_file(source) for source in raw.sources if source.is_file()},
        "rows": len(raw),
    }

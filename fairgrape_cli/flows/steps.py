"""The stages of ``fairgrape run``, one declaration each: what it reads and how it is called.

A :class:`Step` names the run-config settings its stage reads, the run's files it reads (by
role: ``model``, ``masks``, ``importance``...) and the files it writes. Its *fingerprint* (what
``run`` compares to decide whether the stage is up to date) is built from exactly those
declarations: the settings' values, the files' sha256 and the planned values (a rate). Its call
sees the settings through a :class:`SettingsView` that refuses any key the step did not declare,
so no setting can change what a stage does without changing whether ``run`` redoes it.

- a setting in a section a step reads whole (``"finetune.*"``) needs nothing more: add its
  ``Option`` to ``flows.config.SCHEMA`` (``fingerprint_default=False`` keeps runs recorded
  before it up to date while it is at its default);
- a new optional final stage is one ``Step`` appended to ``FINAL_STEPS``, with its ``when``.

``runs_with`` names settings that change how a stage runs, never what it computes (the batch
size of an evaluation); ``legacy`` names settings fingerprinted only so that runs recorded before
the steps were declared stay up to date: changing one reruns the stage needlessly, never skips
it wrongly. ``EXECUTION`` settings (device, workers, trust_checkpoint) are every step's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import stages
from ..errors import InputError
from ..io.data import DataSpec
from ..io.reports import HistoryEntry, RunInfo
from ..method.distillation import Distillation
from ..method.kept_epoch import KeptEpoch
from ..method.metrics import Bootstrap
from ..method.objectives import ObjectiveOptions
from .config import FINETUNE_SECTIONS, SCHEMA, RunConfig, uses_teacher

log = logging.getLogger("fairgrape")

if TYPE_CHECKING:
    from .._progress import ProgressSink
    from ..distributed import Runtime

# how a stage runs, never what it computes: in no fingerprint, readable by every step
EXECUTION = ("device", "workers", "trust_checkpoint")
# what every data-reading stage's data is (its identity, not its settings, is fingerprinted)
DATA = ("data", "labels", "skip_bad_images")
COMMON = ("target", "groups", "image_size", "seed", "include", "exclude", "arch", "arch_args")


class UndeclaredSetting(KeyError):
    """A step's call read a setting its declaration does not name: a bug, caught at once."""


class SettingsView:
    """A run config's settings as one step may read them: its declared keys and EXECUTION."""

    def __init__(self, config: RunConfig, allowed: tuple[str, ...], step: str) -> None:
        self._config, self._allowed, self._step = config, allowed, step

    def __getitem__(self, key: str) -> Any:
        section, _, option = key.rpartition(".")
        if key not in self._allowed and f"{section}.*" not in self._allowed:
            raise UndeclaredSetting(f"step {self._step!r} reads {key!r}, which its declaration does not name")
        return self._config.sections[section][option] if section else self._config.settings[key]


@dataclass(frozen=True)
class Step:
    """One stage of a run: its call and everything its fingerprint is made of (module doc)."""

    name: str
    call: Callable[[StepCall], Any]
    settings: tuple[str, ...] = ()  # "seed", "score.*" (the whole section), "report.split", "data"
    files: tuple[str, ...] = ()  # roles of the run's files it reads; "teacher?": only when one is used
    writes: Callable[[SettingsView], dict[str, str]] = lambda view: {}  # role -> file name
    present: tuple[str, ...] = ()  # files it needs on disk without fingerprinting them
    runs_with: tuple[str, ...] = ()
    legacy: tuple[str, ...] = ()
    values: tuple[str, ...] = ()  # planned values in its fingerprint: "rate", "copy", "history", "schedule"
    result: bool = False  # records what the call returns (small JSON) for later stages
    every_rank: bool = True  # False: rank 0 runs it while the others wait (reads no images)
    when: Callable[[RunConfig], bool] = lambda config: True  # whether the schedule has it
    teacher: Callable[[SettingsView, RunConfig], Path | None] | None = None  # the "teacher?" file

    def view(self, config: RunConfig) -> SettingsView:
        """The settings its call may read."""
        data = DATA if "data" in self.settings else ()
        return SettingsView(config, (*self.settings, *data, *self.runs_with, *EXECUTION), self.name)


@dataclass
class StepCall:
    """What a step's call gets: its settings, its files and values, the runner's means."""

    settings: SettingsView
    files: dict[str, Path | None]
    outputs: dict[str, Path]
    values: dict[str, Any]
    config: RunConfig
    progress: ProgressSink
    runtime: Runtime

    def model(self, path: Path | None) -> stages.ModelSource:
        """A model of the run, read with the config's ``arch``, ``arch_args`` and ``trust_checkpoint``."""
        return run_model(self.config, path)

    def data(self, split: str | None, **overrides: Any) -> DataSpec:
        """The config's data, at ``split``."""
        view = self.settings
        return DataSpec(
            root=Path(view["data"]), target=view["target"], groups=view["groups"], split=split,
            labels=Path(view["labels"]) if view["labels"] else None,
            skip_bad_images=view["skip_bad_images"],  # every stage reads the same images
            **overrides,
        )  # fmt: skip

    def loading(self, batch_size: int) -> stages.Loading:
        """How images are read: the config's image size, device and workers."""
        view = self.settings
        where = self.config.origin("image_size")  # --set image_size=N, or the config file
        where = where if "image_size" in self.config.set_by else f"{where}: image_size"
        return stages.Loading(view["image_size"], batch_size, view["device"], view["workers"], image_size_from=where)


def fingerprint_parts(step: Step, config: RunConfig, shas: Mapping[str, str | None], values: Mapping[str, Any],
                      data_identity: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """What the step's fingerprint is made of: every declared setting (a section as a mapping,
    ``data`` as the data's identity), every declared file's sha256, every declared value."""
    parts: dict[str, Any] = {}
    for role in step.files:
        if role.endswith("?"):
            if shas.get(role[:-1]) is not None:
                parts[role[:-1]] = shas[role[:-1]]
        else:
            parts[role] = shas.get(role)
    for key in (*step.settings, *step.legacy):
        _place(parts, key, config, data_identity)
    parts.update({name: values[name] for name in step.values})
    return parts


def _place(parts: dict[str, Any], key: str, config: RunConfig, data_identity: dict[str, Any]) -> None:
    if key == "data":
        parts["data"] = data_identity
        return
    section, _, option = key.rpartition(".")
    if not section:
        if _fingerprinted(SCHEMA[""][key], config.settings[key]):
            parts[key] = config.settings[key]
        return
    chosen = config.sections[section]
    keys = list(chosen) if option == "*" else [option]
    into = parts.setdefault(section, {})
    into.update({name: chosen[name] for name in keys if _fingerprinted(SCHEMA[section][name], chosen[name])})


def _fingerprinted(option, value: Any) -> bool:
    """A setting counts unless it was added after runs were first recorded and is at its default."""
    return option.fingerprint_default or value != option.default


# ------------------------------------------------------------------------------- the calls


def _evaluate(call: StepCall) -> dict:
    """Density, overall and per-group accuracy of the model on the report split (the history)."""
    view = call.settings
    result = stages.report(
        model=call.model(call.files["model"]),
        data=call.data(view["report.split"], min_group_size=view["report.min_group_size"]),
        loading=call.loading(view["report.batch_size"]),
        bootstrap=Bootstrap(resamples=0),  # the history keeps no intervals
        precision=view["precision"],
        progress=call.progress,
    ).report
    entry = HistoryEntry(result.density, result.overall.accuracy, {row.group: row.accuracy for row in result.groups})
    return entry.to_dict()


def _score(call: StepCall) -> Any:
    view = call.settings
    return stages.score(
        model=call.model(call.files["model"]),
        data=call.data(view["score.split"], min_group_size=view["score.min_group_size"]),
        output=call.outputs["importance"],
        masks=call.files["masks"],
        loading=call.loading(view["score.batch_size"]),
        max_batches=view["score.max_batches"],
        samples_per_group=view["score.samples_per_group"],
        include=view["include"],
        exclude=view["exclude"],
        dtype=view["score.dtype"],
        seed=view["seed"],
        progress=call.progress,
    )


def _prune(call: StepCall) -> Any:
    view = call.settings
    return stages.prune(
        rate=call.values["rate"],
        model=call.model(call.files["model"]),
        importance=call.files["importance"],
        method=view["method"],
        scope=view["prune.scope"],
        min_layer_density=view["prune.min_layer_density"],
        granularity=view["prune.granularity"],
        masks=call.files["masks"],
        output=call.outputs["masks"],
        model_output=call.outputs["model"],
        include=view["include"],
        exclude=view["exclude"],
        seed=view["seed"],
        progress=call.progress,
    )


def _finetune_call(section: str) -> Callable[[StepCall], Any]:
    """The call of a fine-tuning section (``finetune`` each iteration, ``final_finetune``)."""

    def call(run: StepCall) -> Any:
        view = run.settings
        option = lambda name: view[f"{section}.{name}"]  # noqa: E731 - read as the section's
        teacher = run.files.get("teacher")
        return stages.finetune(
            model=run.model(run.files["model"]), data=run.data(option("split")), masks=run.files["masks"],
            output=run.outputs["model"], loading=run.loading(option("batch_size")), epochs=option("epochs"),
            lr=option("lr"), lr_milestones=option("lr_milestones"), lr_gamma=option("lr_gamma"),
            val_split=option("val_split"), augment=option("augment"), objective=option("objective"),
            # every field of ObjectiveOptions is a key of the section: a new lever is one of each
            objective_options=ObjectiveOptions(**{item.name: option(item.name) for item in fields(ObjectiveOptions)}),
            teacher=run.model(teacher) if teacher else None,
            distillation=Distillation(option("distill_weight"), option("distill_temperature")),
            kept_epoch=KeptEpoch(option("keep_epoch"), option("keep_within")),
            seed=view["seed"], precision=view["precision"], progress=run.progress,
        )  # fmt: skip

    return call


def run_model(config: RunConfig, path: Path | None) -> stages.ModelSource:
    """A model of the run, read with the config's ``arch``, ``arch_args`` and ``trust_checkpoint``."""
    from ..io.architectures import check_arch_args

    settings = config.settings
    arch_args = settings["arch_args"]
    if arch_args is not None:
        arch_args = check_arch_args(arch_args, source=config.origin("arch_args"))
    return stages.ModelSource(path, settings["arch"], settings["trust_checkpoint"], arch_args=arch_args)


def check_given_teachers(config: RunConfig) -> None:
    """Refuse a ``teacher`` the config gives that predicts other classes (or attributes) than
    the run's starting model, before any stage runs: fine-tuning would refuse it only after the
    run evaluated and pruned. (The default teacher is the starting model itself.)"""
    given = sorted({config.sections[section]["teacher"] for section in FINETUNE_SECTIONS} - {None, ""})
    if not Path(config.settings["model"]).exists():
        return  # the run says so, naming the config's key
    for path in given:
        stages.refuse_unfit_teacher(
            model=run_model(config, Path(config.settings["model"])), teacher=run_model(config, Path(path)),
            what=f"{config.path}: teacher {path}",
        )


def _teacher_of(section: str) -> Callable[[SettingsView, RunConfig], Path | None]:
    """The dense model a fine-tuning section learns from or compares with, when it uses one:
    its ``teacher``, else the run's starting model."""

    def teacher(view: SettingsView, config: RunConfig) -> Path | None:
        if not uses_teacher(objective=view[f"{section}.objective"], distill_weight=view[f"{section}.distill_weight"]):
            return None
        path = Path(view[f"{section}.teacher"] or config.settings["model"])
        if not path.exists():  # a checkpoint file, or a Hugging Face model folder
            raise InputError(f"{config.path}: teacher {path} does not exist")
        return path

    return teacher


def _quantize(call: StepCall) -> dict:
    """The final model as a static int8 ONNX file, gated per group (the ``quantize`` section)."""
    view = call.settings
    option = lambda name: view[f"quantize.{name}"]  # noqa: E731 - read as the section's
    summary = stages.quantize(
        model=call.model(call.files["model"]),
        data=call.data(option("split"), min_group_size=option("min_group_size")),
        output=call.outputs["quantized"],
        max_group_drop=option("max_group_drop"),
        calibration=option("calibration"),
        calibration_split=option("calibration_split"),
        calibration_size=option("calibration_size"),
        loading=stages.Loading(view["image_size"], option("batch_size"), "cpu", view["workers"]),
        seed=view["seed"],
        progress=call.progress,
    )
    return summary.to_dict()


def _copy(call: StepCall) -> None:
    """No final fine-tune: the last model is the final one."""
    from ..io.checkpoints import copy_checkpoint

    copy_checkpoint(call.files["model"], call.outputs["model"])


def _report(call: StepCall) -> None:
    """The final model against the starting one, with the run's history and schedule."""
    view = call.settings
    reported = stages.report(
        model=call.model(call.files["model"]),
        data=call.data(view["report.split"], min_group_size=view["report.min_group_size"]),
        baseline=call.model(call.files["start"]),
        loading=call.loading(view["report.batch_size"]),
        bootstrap=Bootstrap(resamples=view["report.bootstrap"], seed=view["seed"], method=view["report.intervals"]),
        precision=view["precision"],
        progress=call.progress,
    )
    result = reported.report
    result.history = [HistoryEntry.from_dict(entry) for entry in call.values["history"]]
    schedule = call.values["schedule"]
    result.run = RunInfo(
        config=str(call.config.path), method=view["method"], rate=view["rate"], keep_per_iter=view["keep_per_iter"],
        iterations=len(schedule), schedule=schedule, seed=view["seed"],
    )  # fmt: skip
    with call.runtime.together():
        if call.runtime.is_main:
            stages.save_report(result, json_output=call.outputs["report"], html_output=call.outputs.get("html"))
            if reported.guessing:  # the final model's (each iteration's evaluation says nothing)
                log.warning("%s", reported.guessing)


# ------------------------------------------------------------------------- the declarations

_MEASURES = ("data", "target", "groups", "image_size", "arch", "arch_args", "precision")  # what images are read, and how

EVALUATE = Step(
    "evaluate", _evaluate, files=("model",), result=True,
    # an evaluation's numbers depend on the split and the groups kept, not on the batch size, the
    # HTML page nor the bootstrap (only the report has intervals): changing those does not
    # re-evaluate every iteration's model (which keep_artifacts: last may have deleted)
    settings=(*_MEASURES, "report.split", "report.min_group_size"), runs_with=("report.batch_size",),
    legacy=("seed", "include", "exclude"),
)  # fmt: skip
SCORE = Step(
    "score", _score, files=("model", "masks"), settings=("data", "score.*", *COMMON),
    writes=lambda view: {"importance": "importance.safetensors"},
    when=lambda config: _needs_scores(config),
)  # fmt: skip
PRUNE = Step(
    "prune", _prune, files=("model", "importance", "masks"), values=("rate",),
    settings=("method", "prune.*", "include", "exclude", "seed", "arch", "arch_args"), legacy=("target", "groups", "image_size"),
    writes=lambda view: {"masks": "masks.safetensors", "model": "pruned.pt"},
    every_rank=False,  # selection reads no images: rank 0 prunes, the others wait
)  # fmt: skip


def _finetune_step(section: str, name: str, output: str) -> Step:
    """Fine-tuning with ``section``'s settings, when it has epochs to run."""
    return Step(
        name, _finetune_call(section), files=("model", "masks", "teacher?"),
        settings=(*_MEASURES, f"{section}.*", "seed"), legacy=("include", "exclude"),
        writes=lambda view: {"model": output}, when=lambda config: config.sections[section]["epochs"] > 0,
        teacher=_teacher_of(section),
    )  # fmt: skip


FINETUNE = _finetune_step("finetune", "finetune", "finetuned.pt")
FINAL_FINETUNE = _finetune_step("final_finetune", "final_finetune", "final.pt")
FINAL_COPY = Step(
    "final_finetune", _copy, files=("model",), values=("copy",), writes=lambda view: {"model": "final.pt"},
    every_rank=False, when=lambda config: config.sections["final_finetune"]["epochs"] == 0,
)  # fmt: skip
REPORT = Step(
    "report", _report, files=("model",), present=("start", "masks"),  # the report names the final model's masks
    settings=(*_MEASURES, "report.*", "seed", "method", "rate", "keep_per_iter"), legacy=("include", "exclude"),
    values=("baseline", "history", "schedule"),
    writes=lambda view: {"report": "report.json", **({"html": "report.html"} if view["report.html"] else {})},
)  # fmt: skip

ITERATION_STEPS = (SCORE, PRUNE, FINETUNE)  # each iteration, in iter-NN/, then its evaluation
FINAL_STEPS = (FINAL_FINETUNE, FINAL_COPY)  # after the last iteration, then evaluate-final and REPORT
QUANTIZE = Step(
    "quantize", _quantize, files=("model",), result=True,  # the per-group accuracies it reached
    settings=("data", "target", "groups", "image_size", "arch", "arch_args", "seed", "quantize.*"),
    writes=lambda view: {"quantized": view["quantize.output"]},
    every_rank=False,  # onnxruntime on the CPU, not sharded: rank 0 quantizes, the others wait
    when=lambda config: "quantize" in config.asked,
)  # fmt: skip
# optional stages after the report (their ``when`` says whether the config asks for them): what
# they read is the final model, never the report, so changing them reruns them alone
AFTER_REPORT: tuple[Step, ...] = (QUANTIZE,)


def _needs_scores(config: RunConfig) -> bool:
    from ..method.selection import CRITERIA

    return CRITERIA.choose(config.settings["method"]).needs_importance


@dataclass
class Planned:
    """One stage of the schedule: its name, step, output files and planned values."""

    name: str
    step: Step
    outputs: dict[str, Path]
    values: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] | None = None  # an evaluation: the history entry's label
    supersedes: int | None = None  # the iteration whose files are no longer needed once this ran


def plan(config: RunConfig, rates: list[float], directory: Path) -> list[Planned]:
    """Every stage of the schedule, in order."""

    def planned(step: Step, name: str, folder: Path, **extra: Any) -> Planned:
        writes = step.writes(step.view(config))
        return Planned(name, step, {role: folder / file for role, file in writes.items()}, **extra)

    stages_ = [planned(EVALUATE, "evaluate-00", directory, history={"iteration": 0, "stage": "dense"})]
    for index, rate in enumerate(rates, start=1):
        folder = directory / f"iter-{index:02d}"
        stages_ += [
            planned(step, f"iter-{index:02d}/{step.name}", folder, values={"rate": rate})
            for step in ITERATION_STEPS if step.when(config)
        ]  # fmt: skip
        label = {"iteration": index, "stage": "iteration", "rate": rate}
        stages_.append(planned(EVALUATE, f"evaluate-{index:02d}", directory, history=label,
                               supersedes=index - 1 if index > 1 else None))  # fmt: skip
    final = [step for step in FINAL_STEPS if step.when(config)]
    stages_ += [planned(step, step.name, directory, values={"copy": True}) for step in final]
    label = {"iteration": len(rates), "stage": "final", "rate": rates[-1]}
    stages_.append(planned(EVALUATE, "evaluate-final", directory, history=label))
    stages_.append(planned(REPORT, "report", directory, values={"schedule": rates}))
    stages_ += [planned(step, step.name, directory) for step in AFTER_REPORT if step.when(config)]
    return stages_

"""``fairgrape run config.yaml``: the iterative score -> prune -> fine-tune schedule, resumable.

Iteration i prunes to ``min(1 - keep_per_iter**i, rate)`` on a freshly scored model, then
fine-tunes it; a final fine-tune and a report (against the starting model) follow. Every stage is
one of the library stages in ``fairgrape_cli.stages``, run only when its *fingerprint* (its settings and
the sha256 of its inputs) differs from the one recorded when it last finished, so re-running a
config resumes after the last finished stage and a changed setting reruns from the first stage
it affects. Outputs are written atomically, so a run killed mid-stage resumes cleanly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import stages
from .._progress import NoProgress, ProgressSink
from ..errors import InputError
from ..io.data import DataSpec
from ..io.files import atomic_output, sha256_file, write_text_atomically
from ..io.layouts import read_layout

log = logging.getLogger("fairgrape")

STATE_FILE = "run-state.json"
_FLOAT_SLACK = 1e-9  # 1 - r**i computed in floating point may fall a hair short of the rate


# ---------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Option:
    kind: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | None = None


_FINETUNE_OPTIONS = {
    "split": Option(str),
    "val_split": Option(str),
    "batch_size": Option(int, 64),
    "epochs": Option(int, 3),
    "lr": Option(float, 1e-4),
    "lr_milestones": Option(list, []),
    "lr_gamma": Option(float, 0.1),
    "augment": Option(bool, True),
}

# section -> option -> definition; "" is the top level
SCHEMA: dict[str, dict[str, Option]] = {
    "": {
        "model": Option(str, required=True),
        "arch": Option(str),
        "trust_checkpoint": Option(bool, False),
        "data": Option(str, required=True),
        "labels": Option(str),
        "target": Option(str),
        "groups": Option((str, list), required=True),
        "image_size": Option(int),
        "method": Option(str, "fairgrape", choices=("fairgrape", "taylor", "magnitude", "random")),
        "rate": Option(float, required=True),
        "keep_per_iter": Option(float),
        "iterations": Option(int),
        "seed": Option(int, 0),
        "output": Option(str),
        "device": Option(str, "auto", choices=("auto", "cpu", "cuda", "mps")),
        "workers": Option(int),
        "include": Option(list, []),
        "exclude": Option(list, []),
    },
    "score": {
        "split": Option(str),
        "batch_size": Option(int, 64),
        "max_batches": Option(int),
        "samples_per_group": Option(int),
        "min_group_size": Option(int, 1),
        "dtype": Option(str, "float32", choices=("float32", "float16", "bfloat16")),
        "skip_bad_images": Option(bool, False),
    },
    "prune": {
        "scope": Option(str, "layer", choices=("layer", "global")),
        "min_layer_density": Option(float, 0.01),
    },
    "finetune": _FINETUNE_OPTIONS,
    "final_finetune": _FINETUNE_OPTIONS,
    "report": {
        "split": Option(str),
        "batch_size": Option(int, 64),
        "min_group_size": Option(int, 1),
        "html": Option(bool, False),
    },
}


@dataclass
class RunConfig:
    path: Path
    settings: dict[str, Any]  # top-level options, defaults filled in, paths resolved
    sections: dict[str, dict[str, Any]]  # section -> options, defaults filled in

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    @property
    def output(self) -> Path:
        return Path(self.settings["output"])


def load_config(path: str | Path, *, overrides: Sequence[str] = ()) -> RunConfig:
    """Read and validate a run config; relative paths are relative to the config file.

    ``overrides`` are ``KEY=VALUE`` settings applied on top (``method=magnitude``,
    ``finetune.epochs=5``), values read as YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config {path} does not exist")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from error
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of settings at the top level")
    for override in overrides:
        _apply_override(raw, override)

    sections = {}
    settings = _validated(raw, SCHEMA[""], path, prefix="", allowed_sections=set(SCHEMA) - {""})
    for name in SCHEMA:
        if not name:
            continue
        value = raw.get(name) or {}
        if not isinstance(value, dict):
            raise InputError(f"{path}: '{name}' must be a mapping of {name} options")
        sections[name] = _validated(value, SCHEMA[name], path, prefix=f"{name}.")

    if isinstance(settings["groups"], list):
        settings["groups"] = ",".join(str(column) for column in settings["groups"])
    base = path.resolve().parent
    for key in ("model", "data", "labels"):
        if settings.get(key):
            settings[key] = str(base / settings[key])
    settings["output"] = str(base / (settings.get("output") or f"runs/{path.stem}"))
    _check_schedule(settings, path)
    return RunConfig(path=path, settings=settings, sections=sections)


def _apply_override(raw: dict, override: str) -> None:
    import yaml

    key, separator, text = override.partition("=")
    if not separator or not key.strip():
        raise InputError(f"--set {override!r}: expected KEY=VALUE, e.g. method=magnitude")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    section, _, option = key.strip().rpartition(".")
    if not section:
        raw[option] = value
        return
    if section not in SCHEMA:
        raise InputError(f"--set {override!r}: unknown section '{section}'")
    if not isinstance(raw.get(section), dict):
        raw[section] = {}
    raw[section][option] = value


def _validated(
    values: dict, schema: dict[str, Option], path: Path, *, prefix: str, allowed_sections=frozenset()
) -> dict[str, Any]:
    result = {}
    for key in values:
        if key not in schema and key not in allowed_sections:
            import difflib

            close = difflib.get_close_matches(str(key), list(schema) + list(allowed_sections), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise InputError(f"{path}: unknown key '{prefix}{key}'{hint}")
    for key, option in schema.items():
        if key not in values or values[key] is None:
            if option.required:
                raise InputError(f"{path}: missing required key '{prefix}{key}'")
            result[key] = list(option.default) if isinstance(option.default, list) else option.default
            continue
        result[key] = _typed(values[key], option, f"{prefix}{key}", path)
    return result


def _typed(value: Any, option: Option, key: str, path: Path) -> Any:
    kinds = option.kind if isinstance(option.kind, tuple) else (option.kind,)
    if float in kinds and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    is_bool = isinstance(value, bool)
    if not isinstance(value, kinds) or (is_bool and bool not in kinds):
        names = " or ".join(kind.__name__ for kind in kinds).replace("str", "text").replace("float", "number")
        raise InputError(f"{path}: '{key}' must be {names}, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise InputError(f"{path}: '{key}' must be one of {', '.join(option.choices)}, got {value!r}")
    return value


def _check_schedule(settings: dict, path: Path) -> None:
    rate, keep, iterations = settings["rate"], settings["keep_per_iter"], settings["iterations"]
    if not 0.0 < rate < 1.0:
        raise InputError(f"{path}: 'rate' must be in (0, 1), got {rate}")
    if keep is not None and iterations is not None:
        raise InputError(f"{path}: set 'keep_per_iter' or 'iterations', not both")
    if keep is not None and not 0.0 < keep < 1.0:
        raise InputError(f"{path}: 'keep_per_iter' must be in (0, 1), got {keep}")
    if iterations is not None and iterations < 1:
        raise InputError(f"{path}: 'iterations' must be at least 1, got {iterations}")


def schedule(rate: float, *, keep_per_iter: float | None = None, iterations: int | None = None) -> list[float]:
    """Cumulative pruning rate of each iteration: ``min(1 - keep**i, rate)`` until ``rate``.

    With ``iterations`` instead of ``keep_per_iter`` the keep fraction is the one that reaches
    ``rate`` in that many equal steps; with neither, one step.
    """
    if keep_per_iter is None:
        steps = iterations or 1
        keep_per_iter = (1.0 - rate) ** (1.0 / steps)
    rates = []
    while not rates or rates[-1] < rate:
        pruned = 1.0 - keep_per_iter ** (len(rates) + 1)
        rates.append(rate if pruned >= rate - _FLOAT_SLACK else pruned)
    return rates


# ----------------------------------------------------------------------------------------- state


@dataclass
class StageRecord:
    fingerprint: str
    outputs: dict[str, dict[str, Any]]  # relative path -> {"sha256", "size", "mtime_ns"}
    result: Any = None  # small JSON data a later stage needs (an evaluation's accuracies)


class RunState:
    """What finished, with which fingerprint, producing which files: OUTPUT/run-state.json."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / STATE_FILE
        self.records: dict[str, StageRecord] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.records = {key: StageRecord(**value) for key, value in data["stages"].items()}
            except (ValueError, KeyError, TypeError):
                log.warning("%s is unreadable; rerunning every stage", self.path)

    def save(self) -> None:
        data = {"stages": {key: record.__dict__ for key, record in self.records.items()}}
        write_text_atomically(self.path, json.dumps(data, indent=1) + "\n")

    def up_to_date(self, stage: str, fingerprint: str) -> StageRecord | None:
        record = self.records.get(stage)
        if record is None or record.fingerprint != fingerprint:
            return None
        for relative, stamp in record.outputs.items():
            if not self._unchanged(self.directory / relative, stamp):
                return None
        return record

    def finish(self, stage: str, fingerprint: str, outputs: list[Path], result: Any = None) -> StageRecord:
        stamps = {}
        for output in outputs:
            stat = output.stat()
            stamps[output.relative_to(self.directory).as_posix()] = {
                "sha256": sha256_file(output), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            }  # fmt: skip
        record = StageRecord(fingerprint, stamps, result)
        self.records[stage] = record
        self.save()
        return record

    @staticmethod
    def _unchanged(path: Path, stamp: dict[str, Any]) -> bool:
        if not path.is_file():
            return False
        stat = path.stat()
        if stat.st_size == stamp["size"] and stat.st_mtime_ns == stamp["mtime_ns"]:
            return True  # cheap check first; hash only when the file was touched
        return stat.st_size == stamp["size"] and sha256_file(path) == stamp["sha256"]


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------------- run


@dataclass
class RunResult:
    output: Path
    report: dict
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Runner:
    """Runs one stage at a time against the recorded state; knows the config's shared options."""

    def __init__(self, config: RunConfig, progress: ProgressSink, on_stage: Callable[[str, bool], None] | None):
        self.config = config
        self.directory = config.output
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state = RunState(self.directory)
        self.progress = progress
        self.on_stage = on_stage
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def stage(
        self,
        name: str,
        parts: dict[str, Any],
        outputs: list[Path],
        action: Callable[[], Any],
        *,
        keep_result: bool = False,
    ) -> StageRecord:
        """Run ``action`` unless the outputs of the same fingerprint are already there.

        ``keep_result`` records what ``action`` returns (small JSON data) for later runs.
        """
        fingerprint = _fingerprint(parts)
        record = self.state.up_to_date(name, fingerprint)
        if record is not None:
            self.skipped.append(name)
            if self.on_stage is not None:
                self.on_stage(name, False)
            return record
        if self.on_stage is not None:
            self.on_stage(name, True)
        result = action()
        self.ran.append(name)
        return self.state.finish(name, fingerprint, outputs, result if keep_result else None)

    def sha(self, record: StageRecord, path: Path) -> str:
        return record.outputs[path.relative_to(self.directory).as_posix()]["sha256"]

    def model(self, path: Path) -> stages.ModelSource:
        return stages.ModelSource(path, self.config["arch"], self.config["trust_checkpoint"])

    def data(self, split: str | None, **overrides: Any) -> DataSpec:
        settings = self.config.settings
        return DataSpec(
            root=Path(settings["data"]),
            target=settings["target"],
            groups=settings["groups"],
            split=split,
            labels=Path(settings["labels"]) if settings["labels"] else None,
            **overrides,
        )

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

    ``on_stage(name, runs)`` is told about each stage before it runs or is skipped.
    """
    from ..method.selection import get_criterion

    runner = _Runner(config, progress or NoProgress(), on_stage)
    settings, sections = config.settings, config.sections
    directory = runner.directory
    start = Path(settings["model"])
    if not start.is_file():
        raise InputError(f"{config.path}: model {start} does not exist")
    data_identity = _data_identity(runner.data(None))
    needs_scores = get_criterion(settings["method"]).needs_importance
    rates = schedule(settings["rate"], keep_per_iter=settings["keep_per_iter"], iterations=settings["iterations"])
    common = {
        key: settings[key]
        for key in ("target", "groups", "image_size", "seed", "include", "exclude", "arch")
    }

    model_path, model_sha = start, sha256_file(start)
    masks_path, masks_sha = None, None
    history = [runner.stage(
        "evaluate-00",
        {"model": model_sha, "data": data_identity, "report": sections["report"], **common},
        [],
        lambda: _evaluate(runner, start),
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
                    data=runner.data(sections["score"]["split"], skip_bad_images=sections["score"]["skip_bad_images"],
                                     min_group_size=sections["score"]["min_group_size"]),
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
                masks=masks_path,
                output=masks,
                model_output=pruned,
                include=settings["include"],
                exclude=settings["exclude"],
                seed=settings["seed"],
                progress=runner.progress,
            ),
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
            {"model": model_sha, "data": data_identity, "report": sections["report"], **common},
            [],
            lambda: _evaluate(runner, model_path),
            keep_result=True,
        ).result
        history.append({**entry, "iteration": index, "stage": "iteration", "rate": rate})

    final = directory / "final.pt"
    if sections["final_finetune"]["epochs"] > 0:
        model_path, model_sha = _finetune(
            runner, "final_finetune", "final_finetune", model_path, model_sha,
            masks_path, masks_sha, final, data_identity, common,
        )  # fmt: skip
    else:
        runner.stage("final_finetune", {"model": model_sha, "copy": True}, [final],
                     lambda: _copy_atomically(model_path, final))
        model_sha = sha256_file(final)
    final_entry = runner.stage(
        "evaluate-final",
        {"model": model_sha, "data": data_identity, "report": sections["report"], **common},
        [],
        lambda: _evaluate(runner, final),
        keep_result=True,
    ).result
    history.append({**final_entry, "iteration": len(rates), "stage": "final", "rate": rates[-1]})

    report_path = directory / "report.json"
    outputs = [report_path] + ([directory / "report.html"] if sections["report"]["html"] else [])
    runner.stage(
        "report",
        {"model": model_sha, "baseline": history[0], "history": history, "data": data_identity,
         "report": sections["report"], **common},
        outputs,
        lambda: _write_report(runner, final, start, history, rates, outputs),
    )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return RunResult(directory, report, runner.ran, runner.skipped)


def _finetune(runner, name, section, model_path, model_sha, masks_path, masks_sha, output, data_identity, common):
    options = runner.config.sections[section]
    record = runner.stage(
        name,
        {"model": model_sha, "masks": masks_sha, "data": data_identity, section: options, **common},
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
            seed=runner.config["seed"],
            progress=runner.progress,
        ),
    )
    return output, runner.sha(record, output)


def _evaluate(runner: _Runner, model: Path) -> dict:
    """Density, overall and per-group accuracy of ``model`` on the report split (for the history)."""
    options = runner.config.sections["report"]
    result = stages.report(
        model=runner.model(model),
        data=runner.data(options["split"], min_group_size=options["min_group_size"]),
        loading=runner.loading(options["batch_size"]),
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
    stages.save_report(result, json_output=outputs[0], html_output=outputs[1] if len(outputs) > 1 else None)


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

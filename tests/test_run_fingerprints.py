"""Every setting of a run config reaches exactly the stages that depend on it.

For each key of flows/config.py's SCHEMA in turn (top level and every section), a finished run
is changed by that key alone and resumed. The stages that ran must be exactly those whose call
changed (the arguments a stage is called with, or the contents of the files it reads), found by
running the changed config from scratch; a stage is allowed to rerun without its call changing
only where its declaration (flows/steps.py) names the key (``legacy``: fingerprinted for runs
recorded before the declarations). So no setting can change what a stage does while the stage is
skipped, and nothing before the first stage it reaches reruns.

The stages are replaced by fakes that write files whose bytes are a hash of their call and of the
files they read (so changes travel down the schedule as real outputs would): the whole table runs
in seconds. test_changed_setting_reruns_from_first_affected_stage (test_pipeline.py) and the slow
test at the end here do the same on the real stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from fairgrape_cli import stages
from fairgrape_cli.flows import pipeline, steps
from fairgrape_cli.flows.config import SCHEMA, load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.io import checkpoints
from fairgrape_cli.io.reports import Disparity, GroupRow, Overall, Report

from tiny_runs import TINY

# Settings that change how a stage runs, never what it computes: no stage's call is compared on them.
EXECUTION = {"device", "workers", "trust_checkpoint"}
# Values a key cannot take by rule (see _mutation); the second key keeps the config valid.
SPECIAL = {
    "model": {"model": "model2.pt"},
    "data": {"data": "data2"},
    "labels": {"labels": "labels2.csv"},
    "target": {"target": "group"},
    "groups": {"groups": "label"},
    "arch": {"arch": "tinycnn"},
    "arch_args": {"arch_args": {"width": 16}},  # TinyCNN's own default: the same model, named
    "include": {"include": ["conv*"]},
    "exclude": {"exclude": ["fc*"]},
    "keep_per_iter": {"keep_per_iter": 0.8},
    "iterations": {"iterations": 2},
    "rate": {"rate": 0.6},
    "keep_artifacts": {"keep_artifacts": "last"},
    "finetune.lr_milestones": {"finetune.lr_milestones": [1], "finetune.epochs": 2},
    "final_finetune.lr_milestones": {"final_finetune.lr_milestones": [1], "final_finetune.epochs": 2},
    "finetune.teacher": {"finetune.teacher": "model2.pt", "finetune.distill_weight": 0.5},
    "final_finetune.teacher": {"final_finetune.teacher": "model2.pt", "final_finetune.distill_weight": 0.5},
    "quantize.output": {"quantize.output": "other.int8.onnx"},
}
# the optional final stage, asked for in both runs below so that its settings are in the table
QUANTIZE = {"quantize.max_group_drop": 0.02, "quantize.calibration_size": 16}


def _every_key() -> list[str]:
    return [f"{section}.{key}" if section else key for section, options in SCHEMA.items() for key in options]


def _mutation(key: str, config: dict) -> dict:
    """``key`` changed (with what its validity needs): by rule from its Option, else SPECIAL."""
    if key in SPECIAL:
        return SPECIAL[key]
    section, _, name = key.rpartition(".")
    option = SCHEMA[section][name]
    value = (config.get(section) or {}).get(name) if section else config.get(name)
    value = option.default if value is None else value
    if option.choices:
        return {key: next(choice for choice in option.choices if choice != value)}
    if option.kind is bool:
        return {key: not value}
    if option.kind is int:
        return {key: (value or option.minimum or 1) + 1}
    if option.kind is float:
        return {key: value / 2 if value else 0.5}
    if option.kind is str:
        return {key: {"split": "train", "val_split": "val"}.get(name, "test")}
    raise AssertionError(f"say in SPECIAL how to change {key!r}")


def _apply(config: Path, changes: dict) -> None:
    settings = yaml.safe_load(config.read_text())
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (settings.setdefault(section, {}) if section else settings)[name] = value
    config.write_text(yaml.safe_dump(settings))


# ------------------------------------------------------------------------------------ fakes


class _Fakes:
    """Stand-ins for the stages: each records its call (paths relative to the run's folder,
    execution settings left out, the sha256 of every file it reads) under the stage's name and
    writes outputs whose bytes are that record's hash."""

    def __init__(self, folder: Path):
        self.folder, self.calls, self.stage = folder, {}, None

    def announce(self, name: str, runs: bool) -> None:
        self.stage = name

    def _normal(self, value):
        if isinstance(value, Path):
            text = str(value)
            return text.replace(str(self.folder), "F") + (f"#{_sha(value)}" if value.is_file() else "")
        if isinstance(value, stages.ModelSource):
            return {"path": self._normal(value.path), "arch": value.arch}
        if isinstance(value, stages.Loading):
            return {"image_size": value.image_size, "batch_size": value.batch_size}
        if dataclasses.is_dataclass(value):
            return {key: self._normal(item) for key, item in dataclasses.asdict(value).items()}
        if isinstance(value, (list, tuple)):
            return [self._normal(item) for item in value]
        if isinstance(value, dict):
            return {key: self._normal(item) for key, item in value.items()}
        return value

    def record(self, kind: str, kwargs: dict) -> str:
        kwargs = {key: value for key, value in kwargs.items() if key != "progress"}
        if kind == "report" and kwargs.get("baseline") is None:  # an evaluation: its batch size does not count
            kwargs["loading"] = {"image_size": kwargs["loading"].image_size}
        normal = {"kind": kind, **{key: self._normal(value) for key, value in kwargs.items()}}
        self.calls[self.stage] = normal
        return hashlib.sha256(json.dumps(normal, sort_keys=True, default=str).encode()).hexdigest()

    def write(self, *paths: Path, content: str) -> None:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def score(self, **kwargs):
        self.write(kwargs["output"], content=self.record("score", kwargs))

    def prune(self, **kwargs):
        self.write(kwargs["output"], kwargs["model_output"], content=self.record("prune", kwargs))

    def finetune(self, **kwargs):
        self.write(kwargs["output"], content=self.record("finetune", kwargs))

    def copy(self, source: Path, target: Path) -> None:
        self.write(target, content=self.record("copy", {"model": source}))

    def quantize(self, **kwargs):
        self.write(kwargs["output"], content=self.record("quantize", kwargs))
        return stages.QuantizeSummary(
            output=kwargs["output"], bytes=1, float_bytes=4, groups=["majority", "minority"], float_accuracy=[0.9, 0.8],
            accuracy=[0.9, 0.79], drops=[0.0, 0.01], control_split="val", layers=["conv"], float_layers=[],
            max_group_drop=kwargs["max_group_drop"], within=True, evaluations=1,
        )  # fmt: skip

    def report(self, **kwargs):
        digest = self.record("report", kwargs)
        value = int(digest[:6], 16) / 0xFFFFFF
        rows = [GroupRow(name, 10, value / (k + 1), absent=frozenset()) for k, name in enumerate(("majority", "minority"))]
        report = Report("m", "d", "test", "label", "group", value, Overall(20, value), rows,
                        Disparity({"accuracy_gap": value, "worst_group_accuracy": value / 2}))  # fmt: skip
        return stages.ReportResult(report, [])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, biased_data):
    """A run's folder: the tiny config (fairgrape, one iteration, both fine-tunes, every file
    kept), a placeholder model, the data and a second data folder, another labels file."""
    folder = tmp_path_factory.mktemp("fingerprints")
    shutil.copy(TINY, folder / "config.yaml")
    _apply(folder / "config.yaml", {"rate": 0.5, "keep_per_iter": None, "keep_artifacts": "all", **QUANTIZE})
    (folder / "model.pt").write_bytes(b"a placeholder: the fake stages never load it")
    (folder / "model2.pt").write_bytes(b"another model")
    (folder / "data").symlink_to(biased_data, target_is_directory=True)
    shutil.copytree(biased_data, folder / "other-data")
    (folder / "data2").symlink_to(folder / "other-data", target_is_directory=True)
    shutil.copy(biased_data / "labels.csv", folder / "labels2.csv")
    return folder


def _run(folder: Path, monkeypatch) -> tuple[dict, list[str], list[str]]:
    fakes = _Fakes(folder)
    for name in ("score", "prune", "finetune", "report", "quantize"):
        monkeypatch.setattr(stages, name, getattr(fakes, name))
    monkeypatch.setattr(checkpoints, "copy_checkpoint", fakes.copy)
    monkeypatch.setattr(pipeline, "check_precision", lambda *args, **kwargs: None)  # bf16 needs no GPU here
    monkeypatch.setattr(pipeline, "check_given_teachers", lambda config: None)  # placeholder models: none loads
    result = run_schedule(load_config(folder / "config.yaml"), on_stage=fakes.announce)
    return fakes.calls, result.ran, result.skipped


@pytest.fixture(scope="module")
def finished(workspace):
    """The base run, finished, and a copy of its folder to start each change from."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls, ran, _ = _run(workspace, monkeypatch)
    assert {"iter-01/score", "iter-01/prune", "iter-01/finetune", "final_finetune", "report", "quantize"} <= set(ran)
    shutil.copytree(workspace / "run", workspace.parent / "finished-run", symlinks=True)
    return calls


def _declared_readers(key: str, config_path: Path) -> set[str]:
    """The stages whose declaration names ``key`` (or its section whole, or the data), or what
    it decides: the starting model (``model``), the schedule's rates (``rate``, ``keep_per_iter``,
    ``iterations``); ``score.skip_bad_images`` is the top-level key's older spelling."""
    config = load_config(config_path)
    key = "skip_bad_images" if key == "score.skip_bad_images" else key
    section, _, name = key.rpartition(".")
    names = {key, f"{section}.*"} if section else {key}
    readers = set()
    for planned in steps.plan(config, [0.5], config.output):
        step = planned.step
        declared = {*step.settings, *step.legacy}
        if names & declared or ("data" in declared and key in steps.DATA):
            readers.add(planned.name)
        if key == "model" and "model" in step.files:
            readers.add(planned.name)
        if key in ("rate", "keep_per_iter", "iterations") and {"rate", "schedule"} & set(step.values):
            readers.add(planned.name)
    return readers


@pytest.mark.parametrize("key", _every_key())
def test_a_changed_setting_reruns_what_depends_on_it_and_nothing_else(key, workspace, finished, monkeypatch):
    config = workspace / "config.yaml"
    base = config.read_text()
    changes = _mutation(key, yaml.safe_load(base))
    try:
        shutil.rmtree(workspace / "run")
        shutil.copytree(workspace.parent / "finished-run", workspace / "run", symlinks=True)
        _apply(config, changes)
        _, ran, _ = _run(workspace, monkeypatch)  # resumed after the change
        if key == "output":  # a new folder: everything runs there
            assert "evaluate-00" in ran and "report" in ran
            return
        shutil.rmtree(workspace / "run")
        fresh, _, _ = _run(workspace, monkeypatch)  # the changed config from scratch: every call
    finally:
        config.write_text(base)
        shutil.rmtree(workspace / "run", ignore_errors=True)
        shutil.copytree(workspace.parent / "finished-run", workspace / "run", symlinks=True)
    changed = {name for name, call in fresh.items() if finished.get(name) != call}
    assert changed <= set(ran), f"{key}: stages whose call changed but were skipped: {sorted(changed - set(ran))}"
    unexplained = set(ran) - changed - _declared_readers(key, config)
    assert not unexplained, f"{key}: reran without reason: {sorted(unexplained)}"
    if key in EXECUTION or key == "keep_artifacts":
        assert ran == [], f"{key} changes how stages run, not what they compute: {ran}"


def test_a_step_reads_only_the_settings_it_declares():
    config = load_config(TINY)
    view = steps.PRUNE.view(config)
    assert view["prune.scope"] == "layer" and view["method"] == "fairgrape" and view["device"] == "auto"
    with pytest.raises(steps.UndeclaredSetting, match="step 'prune' reads 'score.batch_size'"):
        view["score.batch_size"]
    with pytest.raises(steps.UndeclaredSetting):
        steps.EVALUATE.view(config)["report.bootstrap"]  # the evaluations keep no intervals


def test_runs_recorded_before_the_declarations_stay_up_to_date():
    """Each step's fingerprint is the one fairgrape 0.2's pipeline assembled by hand (its
    formulas, written out here), so a run it recorded resumes; only the report, which now also
    fingerprints the schedule it writes down, runs again."""
    from fairgrape_cli.flows.run_state import fingerprint

    config = load_config(TINY)
    settings, sections = config.settings, config.sections
    data = {"root": "/data", "labels": {"/data/labels.csv": "ab"}, "rows": 96}
    shas = {"model": "m", "masks": "k", "importance": "i"}
    common = {key: settings[key] for key in ("target", "groups", "image_size", "seed", "include", "exclude", "arch")}
    before = {
        steps.EVALUATE: {"model": "m", "data": data, "report": {key: sections["report"][key] for key in ("split", "min_group_size")}, **common},
        steps.SCORE: {"model": "m", "masks": "k", "data": data, "score": sections["score"], **common},
        steps.PRUNE: {"rate": 0.5, "method": settings["method"], "prune": sections["prune"], "model": "m",
                      "importance": "i", "masks": "k", **common},
        steps.FINETUNE: {"model": "m", "masks": "k", "data": data, "finetune": {
            key: value for key, value in sections["finetune"].items()
            if key not in ("constraint_bound", "constraint_metric", "constraint_form", "multiplier_lr", "distill_weight",
                           "distill_temperature", "teacher", "keep_epoch", "keep_within")}, **common},
        steps.FINAL_COPY: {"model": "m", "copy": True},
    }  # fmt: skip
    for step, parts in before.items():
        now = steps.fingerprint_parts(step, config, shas, {"rate": 0.5, "copy": True}, data)
        assert fingerprint(now) == fingerprint(parts), step.name


# ---------------------------------------------------------------------- on the real stages

REAL = {
    "target": {"target": "label"},  # the default column, named: the model's classes are its values
    "arch": {"arch": "fairgrape_cli.flows.synthetic:TinyCNN"},
    "include": {"include": ["features.*"]},
    "exclude": {"exclude": ["classifier.*"]},
    "image_size": {"image_size": 16},
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, biased_data, tiny_model_path):
    """The tiny schedule on the real stages (one iteration, one epoch each, few resamples), done."""
    import torch

    from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN

    from conftest import save_native

    folder = tmp_path_factory.mktemp("real-fingerprints")
    shutil.copy(TINY, folder / "config.yaml")
    _apply(folder / "config.yaml", {"rate": 0.5, "keep_per_iter": None, "keep_artifacts": "all", "target": None,
                                     "score.max_batches": 1, "report.bootstrap": 20, **QUANTIZE})  # fmt: skip
    shutil.copy(tiny_model_path, folder / "model.pt")
    torch.manual_seed(5)
    save_native(folder / "model2.pt", TinyCNN(2), TINY_ARCH)
    (folder / "data").symlink_to(biased_data, target_is_directory=True)
    shutil.copytree(biased_data, folder / "other-data")
    (folder / "data2").symlink_to(folder / "other-data", target_is_directory=True)
    shutil.copy(biased_data / "labels.csv", folder / "labels2.csv")
    run_schedule(load_config(folder / "config.yaml"))
    shutil.copytree(folder / "run", folder.parent / "real-finished", symlinks=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("key", _every_key())
def test_on_the_real_stages_a_changed_setting_reruns_its_first_stage_and_nothing_before(key, real_run):
    import torch

    if key == "precision" and not torch.cuda.is_available():
        pytest.skip("bf16 runs on CUDA only")
    config = real_run / "config.yaml"
    base = config.read_text()
    changes = REAL.get(key) or _mutation(key, yaml.safe_load(base))
    order = [planned.name for planned in steps.plan(load_config(config), [0.5], real_run / "run")]
    readers = [name for name in order if name in _declared_readers(key, config)]
    try:
        shutil.rmtree(real_run / "run")
        shutil.copytree(real_run.parent / "real-finished", real_run / "run", symlinks=True)
        _apply(config, changes)
        ran = run_schedule(load_config(config)).ran
    finally:
        config.write_text(base)
    if key in EXECUTION or key == "keep_artifacts":
        assert ran == [], f"{key}: {ran}"
    elif key != "output":
        assert readers and readers[0] in ran, f"{key}: its first stage {readers[:1]} did not rerun: {ran}"
        before = order[: order.index(readers[0])]
        assert not set(before) & set(ran), f"{key}: stages before {readers[0]} reran: {sorted(set(before) & set(ran))}"


def test_a_run_with_nothing_changed_redoes_nothing_and_says_where_the_int8_file_is(workspace, finished, monkeypatch):
    _, ran, skipped = _run(workspace, monkeypatch)
    assert ran == [] and "quantize" in skipped
    result = run_schedule(load_config(workspace / "config.yaml"))  # (the fakes are gone: nothing may run)
    assert result.ran == [] and result.quantized.output == workspace / "run" / "final.int8.onnx"
    assert result.quantized.accuracy == [0.9, 0.79] and result.quantized.groups == ["majority", "minority"]


def test_the_quantize_section_is_optional_and_its_output_stays_in_the_run_folder(tmp_path):
    config = tmp_path / "config.yaml"
    shutil.copy(TINY, config)
    plain = load_config(config)
    assert "quantize" not in plain.asked
    assert "quantize" not in [planned.name for planned in steps.plan(plain, [0.5], tmp_path)]
    for value in ({}, None, True):
        _apply(config, {"quantize": value}) if value is not None else config.write_text(config.read_text() + "quantize:\n")
        asked = load_config(config)
        assert "quantize" in asked.asked and asked.sections["quantize"]["output"] == "final.int8.onnx"
        assert [planned.name for planned in steps.plan(asked, [0.5], tmp_path)][-2:] == ["report", "quantize"]
        shutil.copy(TINY, config)
    assert "quantize" not in load_config(config, overrides=["quantize=false"]).asked
    assert "quantize" in load_config(config, overrides=["quantize.max_group_drop=0.01"]).asked
    from fairgrape_cli.errors import InputError

    for bad, message in (("quantize.output=../out.onnx", "inside the run's output folder"),
                         ("quantize.output=final.pt", "inside the run's output folder"),
                         ("quantize.max_group_drop=2", "must be in [0, 1]")):  # fmt: skip
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_config(config, overrides=[bad])

"""fairgrape run: the schedule, config validation, and resuming after a stop or a change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.flows.config import load_config, schedule
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.io.artifacts import read_masks

from tiny_runs import QUICK, edit_config, run_folder

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"


@pytest.fixture
def tiny_run(tmp_path, tiny_model_path, biased_data) -> Path:
    """A copy of sample_configs/tiny.yaml beside a model and data, as the config expects."""
    shutil.copy(SAMPLES / "tiny.yaml", tmp_path / "tiny.yaml")
    shutil.copy(tiny_model_path, tmp_path / "model.pt")
    (tmp_path / "data").symlink_to(biased_data, target_is_directory=True)
    return tmp_path / "tiny.yaml"


def test_schedule_follows_keep_per_iter_and_stops_at_rate():
    assert schedule(0.9, keep_per_iter=0.5) == [0.5, 0.75, 0.875, 0.9]
    assert schedule(0.5, keep_per_iter=0.9)[-1] == 0.5 and len(schedule(0.5, keep_per_iter=0.9)) == 7
    steps = schedule(0.99, iterations=3)
    assert len(steps) == 3 and steps[-1] == 0.99
    assert schedule(0.9) == [0.9]
    assert len(schedule(0.9, keep_per_iter=0.975)) == 91  # the paper's UTKFace schedule


def test_tiny_config_runs_resumes_and_keeps_masks_identical(tiny_run):
    edit_config(tiny_run, keep_artifacts="all")  # every iteration's files stay (the default keeps the last's)
    config = load_config(tiny_run)
    first = run_schedule(config)
    out = config.output
    densities = [float(read_masks(out / f"iter-0{i}/masks.safetensors").metadata["density"]) for i in range(1, 5)]
    assert densities == pytest.approx([0.5, 0.25, 0.125, 0.1], abs=2e-3)
    for i in range(1, 5):
        assert {p.name for p in (out / f"iter-0{i}").iterdir()} == {
            "importance.safetensors", "masks.safetensors", "pruned.pt", "finetuned.pt",
        }  # fmt: skip
    assert (out / "final.pt").exists()
    report = json.loads((out / "report.json").read_text())
    assert report == first.report.to_dict()
    assert report["baseline"] is not None and report["density"] == pytest.approx(0.1, abs=2e-3)
    assert [entry["stage"] for entry in report["history"]] == ["dense"] + ["iteration"] * 4 + ["final"]
    assert [entry["iteration"] for entry in report["history"]] == [0, 1, 2, 3, 4, 4]
    assert set(report["history"][1]["groups"]) == {"majority", "minority"}
    assert report["run"]["schedule"] == [0.5, 0.75, 0.875, 0.9]

    masks_bytes = {p: p.read_bytes() for p in out.glob("iter-*/masks.safetensors")}
    again = run_schedule(load_config(tiny_run))
    assert again.ran == [] and len(again.skipped) == len(first.ran)
    assert {p: p.read_bytes() for p in out.glob("iter-*/masks.safetensors")} == masks_bytes
    assert again.report == first.report


def test_changed_setting_reruns_from_first_affected_stage(tiny_run):
    edit_config(tiny_run, keep_artifacts="all")  # with last, iter-01's deleted files are remade first
    run_schedule(load_config(tiny_run))
    edit_config(tiny_run, finetune__lr=0.001)
    changed = run_schedule(load_config(tiny_run))
    assert changed.ran[0] == "iter-01/finetune"
    assert "iter-01/score" in changed.skipped and "iter-01/prune" in changed.skipped
    assert "iter-02/score" in changed.ran  # the next iteration scores the new model

    edit_config(tiny_run, report__batch_size=8)
    evaluation_only = run_schedule(load_config(tiny_run))
    assert all(name.startswith("evaluate") or name == "report" for name in evaluation_only.ran)
    assert evaluation_only.ran


def test_a_run_stopped_mid_stage_resumes_cleanly(tiny_run, monkeypatch):
    real_finetune = stages.finetune
    calls = {"n": 0}

    def interrupted(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # iteration 2's fine-tune: stop as Ctrl-C would
            raise KeyboardInterrupt
        return real_finetune(**kwargs)

    monkeypatch.setattr(stages, "finetune", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_schedule(load_config(tiny_run))
    out = load_config(tiny_run).output
    assert not list(out.rglob("*.tmp")) and not (out / "iter-02" / "finetuned.pt").exists()
    monkeypatch.setattr(stages, "finetune", real_finetune)
    resumed = run_schedule(load_config(tiny_run))
    assert resumed.ran[0] == "iter-02/finetune"
    assert "iter-01/finetune" in resumed.skipped and "iter-02/prune" in resumed.skipped


def test_baseline_methods_skip_scoring(tiny_run):
    edit_config(tiny_run, method="magnitude", rate=0.75)
    result = run_schedule(load_config(tiny_run))
    out = load_config(tiny_run).output
    assert not list(out.glob("iter-*/importance.safetensors"))
    assert read_masks(out / "iter-02/masks.safetensors").metadata["method"] == "magnitude"
    assert result.report.density == pytest.approx(0.25, abs=2e-3)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"finetune__epoch": 2}, "unknown key 'finetune.epoch' (did you mean 'finetune.epochs'?)"),
        ({"rate": "high"}, "'rate' must be number, got 'high'"),
        ({"finetune__epochs": 1.5}, "'finetune.epochs' must be int"),
        ({"method": "best"}, "'method' must be one of fairgrape"),
        ({"iterations": 3}, "set 'keep_per_iter' or 'iterations', not both"),
        ({"rate": 1.0}, "'rate' must be in (0, 1)"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"finetune__epochs": -2}, "'finetune.epochs' must be at least 0, got -2"),
        ({"score__max_batches": 0}, "'score.max_batches' must be at least 1, got 0"),
        ({"final_finetune__lr": 0}, "'final_finetune.lr' must be positive, got 0.0"),
        ({"finetune__dro_step": -0.1}, "'finetune.dro_step' must be positive"),
        ({"prune__min_layer_density": 1.5}, "'prune.min_layer_density' must be in [0, 1], got 1.5"),
        ({"report__bootstrap": -1}, "'report.bootstrap' must be at least 0"),
        ({"finetune__lr_milestones": ["a"]}, "'finetune.lr_milestones[0]' must be int, got 'a'"),
        ({"finetune__lr_milestones": [0]}, "'finetune.lr_milestones[0]' must be at least 1, got 0"),
        ({"finetune__lr_milestones": [1, 5]}, "'finetune.lr_milestones' must be increasing epochs below 'finetune.epochs' (1)"),
        ({"exclude": [3]}, "'exclude[0]' must be text, got 3"),
    ],
)
def test_bad_configs_name_the_key(tiny_run, change, message):
    edit_config(tiny_run, **change)
    with pytest.raises(InputError) as error:
        load_config(tiny_run)
    assert message in str(error.value) and str(tiny_run) in str(error.value)


def test_out_of_range_override_names_the_set_not_a_flag(tiny_run, cli):
    with pytest.raises(InputError) as error:
        load_config(tiny_run, overrides=["score.batch_size=0"])
    assert str(error.value) == "--set score.batch_size=0: 'score.batch_size' must be at least 1, got 0"
    result = cli("run", tiny_run, "--set", "finetune.epochs=-2")
    assert result.code == 2 and "'finetune.epochs' must be at least 0" in result.err and "Traceback" not in result.err


def test_missing_key_and_broken_yaml(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: m.pt\ndata: d\nrate: 0.5\n")
    with pytest.raises(InputError, match="missing required key 'groups'"):
        load_config(config)
    config.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match="line 2: not valid YAML"):
        load_config(config)


def test_numbers_written_like_1e_4_are_numbers(tiny_run):
    tiny_run.write_text(tiny_run.read_text().replace("finetune:\n  epochs: 1", "finetune:\n  lr: 1e-4\n  epochs: 1"))
    assert load_config(tiny_run).sections["finetune"]["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_sample_configs_are_valid(sample):
    config = load_config(sample)
    assert config.settings["rate"] > 0 and config.output.is_absolute()


def test_run_command(tiny_run, cli):
    result = cli("run", tiny_run, "--quiet", "--keep-artifacts", "all")
    assert result.code == 0, result
    out = load_config(tiny_run).output
    assert (out / "iter-01" / "finetuned.pt").is_file()  # the flag beat the default (last)
    tidy = cli("run", tiny_run)  # the same run with the default: nothing runs, files go
    assert tidy.code == 0 and "0 stage(s) ran" in tidy.err, tidy
    assert not (out / "iter-01").exists() and (out / "iter-04" / "finetuned.pt").is_file()
    assert "majority" in result.out and "drop_gap" in result.out
    bad = cli("run", tiny_run.with_name("missing.yaml"))
    assert bad.code == 2 and "does not exist" in bad.err and "Traceback" not in bad.err


@pytest.mark.parametrize("setting", [{"skip_bad_images": True}, {"score__skip_bad_images": True}])
def test_skip_bad_images_applies_to_every_stage(tmp_path, tiny_model_path, biased_data, setting):
    """A broken training image skipped while scoring is skipped by fine-tuning and the report too
    (the top-level key, and score.skip_bad_images as older configs spell it)."""
    data = tmp_path / "data"
    shutil.copytree(biased_data, data)
    rows = (data / "labels.csv").read_text().splitlines()
    for split in ("train", "test"):
        broken = next(line for line in rows[1:] if line.endswith(f",{split}")).split(",")[0]
        (data / broken).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    shutil.copy(tiny_model_path, tmp_path / "model.pt")
    shutil.copy(SAMPLES / "tiny.yaml", tmp_path / "tiny.yaml")
    config = tmp_path / "tiny.yaml"
    edit_config(config, keep_per_iter=None, rate=0.5, final_finetune__epochs=0, **setting)
    result = run_schedule(load_config(config))
    assert "iter-01/finetune" in result.ran and result.report.density == pytest.approx(0.5, abs=2e-3)
    edit_config(config, skip_bad_images=False, score__skip_bad_images=False)
    with pytest.raises(InputError, match="cannot read image"):
        run_schedule(load_config(config))


def test_report_bootstrap_and_seed_reach_the_report_alone(tmp_path, tiny_model_path, biased_data):
    """report.bootstrap and the config's seed set the report's intervals; changing the bootstrap
    makes the report again, not the fine-tunes nor the evaluations."""
    config = run_folder(tmp_path, "run", tiny_model_path, biased_data,
                        **{**QUICK, "seed": 3, "report__bootstrap": 50, "report__intervals": "bootstrap"})  # fmt: skip
    first = run_schedule(load_config(config))
    assert (first.report.bootstrap.resamples, first.report.bootstrap.seed) == (50, 3)
    edit_config(config, report__bootstrap=0)
    again = run_schedule(load_config(config))
    assert again.ran == ["report"] and again.report.bootstrap is None and "bootstrap" not in again.report.to_dict()


def test_final_model_copied_without_fine_tuning_still_names_its_masks(tmp_path, tiny_model_path, biased_data):
    """final.pt copied from iter-NN/pruned.pt records its masks relative to where it now lies, so
    the report shows the pruning settings (before, the copy named run/masks.safetensors)."""
    from fairgrape_cli.io.checkpoints import load_checkpoint, named_masks

    config = run_folder(tmp_path, "run", tiny_model_path, biased_data, **QUICK)
    result = run_schedule(load_config(config))
    out = load_config(config).output
    assert named_masks(load_checkpoint(out / "final.pt")) == out / "iter-01" / "masks.safetensors"
    assert result.report.pruning.method == "magnitude" and result.report.pruning.rate == 0.5

"""run --keep-artifacts last|all: superseded iterations are deleted only once recorded, a resumed
run needs none of them, and a run that does need one makes it again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.flows.run_state import RunState

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
ITERATION_FILES = {"importance.safetensors", "masks.safetensors", "pruned.pt", "finetuned.pt"}


@pytest.fixture
def two_iterations(tmp_path, tiny_model_path, biased_data) -> Path:
    """tiny.yaml cut to two iterations (0.5, 0.75) and one scoring batch per group."""
    settings = yaml.safe_load((SAMPLES / "tiny.yaml").read_text())
    settings["rate"] = 0.75
    settings["score"]["max_batches"] = 1
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(settings))
    shutil.copy(tiny_model_path, tmp_path / "model.pt")
    (tmp_path / "data").symlink_to(biased_data, target_is_directory=True)
    return tmp_path / "tiny.yaml"


def test_last_keeps_the_last_iteration_resumes_and_remakes_what_a_change_needs(two_iterations):
    config = load_config(two_iterations)
    assert config["keep_artifacts"] == "last"  # the default
    first = run_schedule(config)
    out = config.output
    assert not (out / "iter-01").exists()
    assert {p.name for p in (out / "iter-02").iterdir()} == ITERATION_FILES
    assert (out / "final.pt").is_file()
    history = first.report.history
    assert [entry.stage for entry in history] == ["dense", "iteration", "iteration", "final"]
    assert first.report.pruning.rate == 0.75  # the final model's masks are still there to read
    state = json.loads((out / "run-state.json").read_text())["stages"]
    assert all(stamp["discarded"] for stamp in state["iter-01/prune"]["outputs"].values())
    assert not any(stamp.get("discarded") for stamp in state["iter-02/prune"]["outputs"].values())

    again = run_schedule(load_config(two_iterations))  # nothing to do, though iter-01 is gone
    assert again.ran == [] and again.report == first.report

    changed = run_schedule(load_config(two_iterations, overrides=["finetune.lr=0.002"]))
    # iter-01's fine-tune must run on iter-01/pruned.pt: its prune (and the importance that needs)
    # run again first; the dense evaluation does not
    assert changed.ran[:3] == ["iter-01/score", "iter-01/prune", "iter-01/finetune"]
    assert "evaluate-00" in changed.skipped
    assert not (out / "iter-01").exists() and {p.name for p in (out / "iter-02").iterdir()} == ITERATION_FILES
    assert [entry.stage for entry in changed.report.history] == ["dense", "iteration", "iteration", "final"]


def test_a_stop_between_recording_and_deleting_leaves_a_consistent_state(tmp_path):
    (tmp_path / "iter-01").mkdir()
    made = tmp_path / "iter-01" / "masks.safetensors"
    made.write_bytes(b"masks")
    state = RunState(tmp_path)
    state.finish("iter-01/prune", "abc", [made])
    assert state.producer_of_discarded(made) is None  # not discarded yet
    assert state.discard("iter-01/prune") == [made] and not made.exists()
    reread = RunState(tmp_path)
    assert reread.up_to_date("iter-01/prune", "abc") is not None  # deleted on purpose: still done
    assert reread.up_to_date("iter-01/prune", "changed") is None
    assert reread.producer_of_discarded(made) == "iter-01/prune"
    reread.forget("iter-01/prune")
    assert RunState(tmp_path).up_to_date("iter-01/prune", "abc") is None


def test_a_file_missing_without_being_discarded_still_reruns_its_stage(tmp_path):
    made = tmp_path / "pruned.pt"
    made.write_bytes(b"model")
    state = RunState(tmp_path)
    state.finish("iter-01/prune", "abc", [made])
    made.unlink()  # deleted by hand, not by keep_artifacts
    assert state.up_to_date("iter-01/prune", "abc") is None
    assert state.producer_of_discarded(made) is None

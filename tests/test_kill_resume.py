"""Kill anywhere: ``fairgrape run`` SIGKILLed inside a stage, mid-write or between stages resumes
to the very files an uninterrupted run writes, and leaves no temporary file behind.

The kills come from tests/kill_hooks/sitecustomize.py, put on the PYTHONPATH of the ``run``
subprocess: it kills at a named point (a progress step, a rename), so where a run dies does not
depend on timing, and the product carries no test-only code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.io.files import sha256_file

from tiny_runs import QUICK, run_folder

ROOT = Path(__file__).resolve().parent.parent
HOOKS = Path(__file__).resolve().parent / "kill_hooks"


def _run_killed_at(config: Path, point: str) -> subprocess.CompletedProcess:
    """``fairgrape run config`` in a subprocess that SIGKILLs itself at ``point``."""
    env = dict(os.environ, FAIRGRAPE_TEST_KILL_AT=point, COLUMNS="100")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOKS), str(ROOT), env.get("PYTHONPATH")]))
    # not --quiet: the progress bars' steps are kill points
    return subprocess.run(
        [sys.executable, "-m", "fairgrape_cli", "run", str(config)],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _assert_killed(result: subprocess.CompletedProcess, point: str) -> None:
    assert result.returncode == -signal.SIGKILL, (point, result.returncode, result.stderr[-2000:])


def _assert_state_is_whole(output: Path) -> None:
    """After a kill, every output the state file records is there with the recorded bytes."""
    state = json.loads((output / "run-state.json").read_text())
    for record in state["stages"].values():
        for relative, stamp in record["outputs"].items():
            if not stamp.get("discarded"):  # (keep_artifacts: last deletes superseded files on purpose)
                assert sha256_file(output / relative) == stamp["sha256"], relative


def _masks(output: Path) -> dict[str, bytes]:
    return {p.relative_to(output).as_posix(): p.read_bytes() for p in sorted(output.glob("iter-*/masks.safetensors"))}


def _leftovers(output: Path) -> list[Path]:
    return [p for p in output.rglob("*") if p.name.endswith(".tmp") or p.name == "run.lock"]


def test_killed_mid_write_resumes_to_the_same_masks(tmp_path, tiny_model_path, biased_data, cli):
    """The quick case: one iteration, killed with the masks complete in their temporary file."""
    changes = QUICK
    reference = run_folder(tmp_path, "reference", tiny_model_path, biased_data, **changes)
    killed = run_folder(tmp_path, "killed", tiny_model_path, biased_data, **changes)
    run_schedule(load_config(reference))

    result = _run_killed_at(killed, "replace:masks.safetensors:1")
    _assert_killed(result, "masks")
    output = killed.parent / "run"
    assert [p.name for p in output.rglob("*.tmp")] and (output / "run.lock").exists()  # the kill's litter
    assert not (output / "iter-01" / "masks.safetensors").exists()

    resumed = cli("run", killed)
    assert resumed.code == 0, resumed
    assert "run.lock was left by pid" in resumed.err and "which is gone" in resumed.err
    assert _masks(output) == _masks(reference.parent / "run") and _masks(output)
    assert (output / "final.pt").read_bytes() == (reference.parent / "run" / "final.pt").read_bytes()
    assert not _leftovers(output)


KILL_POINTS = [
    "progress:scoring:1",  # inside iteration 1's score, after its first batch
    "replace:importance.safetensors:1",  # its importance complete, not yet renamed
    "progress:selecting:2",  # inside the prune, between two layers
    "replaced:masks.safetensors:1",  # masks written, the pruned checkpoint not yet
    "progress:fine-tuning:3",  # inside the fine-tune
    "replaced:run-state.json:2",  # between stages: two stages recorded, the next not begun
    "progress:scoring:1",  # inside iteration 2's score
    "replace:finetuned.pt:1",  # iteration 2's fine-tuned model complete, not yet renamed
    "progress:fine-tuning:1",  # inside the final fine-tune
    "replace:report.json:1",  # the report complete, not yet renamed
]


@pytest.mark.slow
def test_killed_anywhere_resumes_to_an_uninterrupted_runs_files(tmp_path, tiny_model_path, biased_data):
    changes = dict(rate=0.75, score__max_batches=2, keep_artifacts="all")  # two iterations: 0.5, 0.75
    reference = run_folder(tmp_path, "reference", tiny_model_path, biased_data, **changes)
    killed = run_folder(tmp_path, "killed", tiny_model_path, biased_data, **changes)
    run_schedule(load_config(reference))
    output = killed.parent / "run"

    for point in KILL_POINTS:
        _assert_killed(_run_killed_at(killed, point), point)
        _assert_state_is_whole(output)
    finished = subprocess.run(
        [sys.executable, "-m", "fairgrape_cli", "run", str(killed), "--quiet"],
        cwd=killed.parent, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))),
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]

    expected = reference.parent / "run"
    assert _masks(output) == _masks(expected) and len(_masks(output)) == 2
    for name in ("final.pt", "iter-02/finetuned.pt", "iter-02/importance.safetensors"):
        assert (output / name).read_bytes() == (expected / name).read_bytes(), name
    assert json.loads((output / "report.json").read_text())["history"] == json.loads(
        (expected / "report.json").read_text()
    )["history"]
    assert not _leftovers(output)

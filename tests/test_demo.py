"""fairgrape demo, on a smaller dataset and model than the real one so the test stays quick."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from fairgrape_cli.flows import experiment
from fairgrape_cli.flows.synthetic import TINY_ARCH, SyntheticSpec

SMALL_DEMO = replace(
    experiment.DEMO_SPEC,
    data=SyntheticSpec(classes=("c0", "c1", "c2"), per_split=(("train", 48), ("val", 16), ("test", 32))),
    arch=TINY_ARCH,
    dense_epochs=1,
    dense_lr_milestones=(),
    final_epochs=1,
    batch_size=16,
    rate=0.75,
)


def test_demo_compares_fairgrape_with_magnitude_and_explains(tmp_path, cli, monkeypatch):
    monkeypatch.setattr(experiment, "DEMO_SPEC", SMALL_DEMO)
    result = cli("demo", "--output", tmp_path / "demo", "--device", "cpu")
    assert result.code == 0, result
    out = result.out
    assert "fairgrape" in out and "magnitude" in out and "drop_gap" in out
    assert "What to look at: both models keep 25% of their weights" in out
    for method in ("fairgrape", "magnitude"):
        report = json.loads((tmp_path / f"demo/runs/{method}-0.75/report.json").read_text())
        assert report["density"] == pytest.approx(0.25, abs=2e-3)
        assert {row["group"] for row in report["groups"]} == {"majority", "minority"}
        config = yaml.safe_load((tmp_path / f"demo/{method}-0.75.yaml").read_text())
        assert config["method"] == method and config["rate"] == 0.75
    html = (tmp_path / "demo/comparison.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html


def test_demo_reuses_what_it_already_built(tmp_path, cli, monkeypatch):
    monkeypatch.setattr(experiment, "DEMO_SPEC", SMALL_DEMO)
    assert cli("demo", "-o", tmp_path, "--device", "cpu", "-q").code == 0
    model = tmp_path / "model.pt"
    before = model.stat().st_mtime_ns
    second = cli("demo", "-o", tmp_path, "--device", "cpu", "-q")
    assert second.code == 0 and model.stat().st_mtime_ns == before
    assert "drop_gap" in second.out



def test_demo_refuses_a_folder_made_with_other_settings_and_a_file(tmp_path, cli, monkeypatch):
    monkeypatch.setattr(experiment, "DEMO_SPEC", SMALL_DEMO)
    assert cli("demo", "-o", tmp_path / "demo", "--device", "cpu", "-q").code == 0
    monkeypatch.setattr(experiment, "DEMO_SPEC", replace(SMALL_DEMO, seed=1))
    stale = cli("demo", "-o", tmp_path / "demo", "--device", "cpu", "-q")
    assert stale.code == 2 and "made with other settings" in stale.err and len(stale.err.strip().splitlines()) == 1
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    refused = cli("demo", "-o", afile, "-q")
    assert refused.code == 2 and "is a file" in refused.err and afile.read_text() == "mine"


def test_the_real_demo_spec_is_consistent():
    spec = experiment.DEMO_SPEC
    assert all(0 < milestone < spec.dense_epochs for milestone in spec.dense_lr_milestones)
    assert 0 < spec.rate < 1 and 0 < spec.keep_per_iter < 1 and len(spec.data.classes) <= 4

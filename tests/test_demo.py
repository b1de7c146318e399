"""fairgrape demo, on a smaller dataset and model than the real one so the test stays quick."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fairgrape_cli.flows import experiment, synthetic
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
# the demo's own recipes (keep 0.1: one step to rate 0.75)
SMALL_RECIPES = experiment.DEMO_RECIPES


def _small_demo(monkeypatch, **changes) -> None:
    monkeypatch.setattr(experiment, "DEMO_SPEC", replace(SMALL_DEMO, **changes))
    monkeypatch.setattr(experiment, "DEMO_RECIPES", SMALL_RECIPES)


def test_demo_compares_magnitude_fairgrape_and_the_recipe_and_explains(tmp_path, cli, monkeypatch):
    _small_demo(monkeypatch)
    result = cli("demo", "--output", tmp_path / "demo", "--device", "cpu")
    assert result.code == 0, result
    out = result.out
    assert "fairgrape" in out and "magnitude" in out and "recommended" in out and "drop_gap" in out
    assert "What to look at: every model keeps 25% of its weights" in out
    reports = {}
    for label, recipe in SMALL_RECIPES.items():
        reports[label] = json.loads((tmp_path / f"demo/runs/{label}-0.75/report.json").read_text())
        assert reports[label]["density"] == pytest.approx(0.25, abs=2e-3)
        assert {row["group"] for row in reports[label]["groups"]} == {"majority", "minority"}
        config = yaml.safe_load((tmp_path / f"demo/{label}-0.75.yaml").read_text())
        assert config["method"] == recipe.method and config["rate"] == 0.75
        assert config["final_finetune"]["objective"] == recipe.objective
        assert config["final_finetune"]["balance_by"] == recipe.balance_by
    # the explanation is worded from the numbers it prints
    plain, recipe = reports["magnitude"]["disparity"]["drop_gap"], reports["recommended"]["disparity"]["drop_gap"]
    assert f"({100 * recipe:.1f} points against {100 * plain:.1f} points)" in out
    assert ("recipe cut the gap" in out) == (recipe < plain)
    html = (tmp_path / "demo/comparison.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html


def test_demo_reuses_what_it_already_built(tmp_path, cli, monkeypatch):
    _small_demo(monkeypatch)
    assert cli("demo", "-o", tmp_path, "--device", "cpu", "-q").code == 0
    model = tmp_path / "model.pt"
    before = model.stat().st_mtime_ns
    second = cli("demo", "-o", tmp_path, "--device", "cpu", "-q")
    assert second.code == 0 and model.stat().st_mtime_ns == before
    assert "drop_gap" in second.out



def test_a_dataset_stopped_while_writing_its_labels_leaves_none(tmp_path, monkeypatch):
    """The demo reuses a folder whose labels.csv exists: a stop mid-write must not leave half of one."""
    real_writer = csv.writer

    class Interrupted:
        def __init__(self, handle):
            self.inner = real_writer(handle)

        def writerow(self, row):
            self.inner.writerow(row)

        def writerows(self, rows):
            self.inner.writerows(list(rows)[:5])
            raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.csv, "writer", Interrupted)
    spec = SyntheticSpec(per_split=(("train", 8), ("test", 4)))
    with pytest.raises(KeyboardInterrupt):
        synthetic.make_biased_dataset(tmp_path / "data", spec)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["images"]  # no labels.csv, no temporary
    monkeypatch.setattr(synthetic.csv, "writer", real_writer)
    synthetic.make_biased_dataset(tmp_path / "data", spec)
    assert len((tmp_path / "data/labels.csv").read_text().splitlines()) == 13


def test_demo_refuses_a_folder_made_with_other_settings_and_a_file(tmp_path, cli, monkeypatch):
    _small_demo(monkeypatch)
    assert cli("demo", "-o", tmp_path / "demo", "--device", "cpu", "-q").code == 0
    _small_demo(monkeypatch, seed=SMALL_DEMO.seed + 1)
    stale = cli("demo", "-o", tmp_path / "demo", "--device", "cpu", "-q")
    assert stale.code == 2 and "made with other settings" in stale.err and len(stale.err.strip().splitlines()) == 1
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    refused = cli("demo", "-o", afile, "-q")
    assert refused.code == 2 and "is a file" in refused.err and afile.read_text() == "mine"


def test_the_real_demo_spec_is_consistent():
    spec = experiment.DEMO_SPEC
    assert all(0 < milestone < spec.dense_epochs for milestone in spec.dense_lr_milestones)
    assert 0 < spec.rate < 1 and len(spec.data.classes) <= 4
    assert list(experiment.DEMO_RECIPES) == ["magnitude", "fairgrape", "recommended"]
    assert experiment.DEMO_RECIPES["recommended"] == experiment.RECOMMENDED


def test_the_recommended_config_names_the_recommended_recipe():
    config = yaml.safe_load((Path(__file__).parent.parent / "sample_configs/recommended.yaml").read_text())
    recipe = experiment.RECOMMENDED
    assert config["method"] == recipe.method
    assert config.get("keep_per_iter") == recipe.keep_per_iter
    for section in ("finetune", "final_finetune"):  # the whole recipe, every lever spelled out
        assert {key: config[section][key] for key in recipe.finetune_options()} == recipe.finetune_options()

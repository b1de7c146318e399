"""Experiment tracking (``run --track mlflow``): what a run logs reads back with MLflow's own
client, offline, from a file store in tmp_path; without MLflow, one line names the extra."""

from __future__ import annotations

import json
import sys

import pytest

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.tracking import flat_params, metric_name, open_tracker


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store on request
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri


def test_names_and_params_are_ones_mlflow_accepts():
    assert metric_name("accuracy", "dark|skin (F)") == "accuracy/dark_skin _F_"
    assert flat_params({"rate": 0.9, "finetune": {"epochs": 3, "lr": None}}) == {"rate": "0.9", "finetune.epochs": "3"}


def test_a_tracked_run_reads_back_with_mlflows_client(mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    report = tmp_path / "report.json"
    report.write_text('{"overall": {}}\n', encoding="utf-8")
    tracker = open_tracker("mlflow", run_name="run-a", params={"rate": 0.5, "finetune": {"epochs": 2}},
                           tags={"fairgrape.config": "config.yaml"})  # fmt: skip
    tracker.log_step(0, {"density": 1.0, "accuracy/dark": 0.9, "nothing": None})
    tracker.log_step(1, {"density": 0.5, "accuracy/dark": 0.8})
    tracker.finish(metrics={"drop_gap": 0.05}, files=[report])
    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run-a"
    assert run.data.params == {"rate": "0.5", "finetune.epochs": "2"}
    assert run.data.tags["fairgrape.config"] == "config.yaml"
    assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "density")] == [(0, 1.0), (1, 0.5)]
    assert run.data.metrics["drop_gap"] == 0.05 and "nothing" not in run.data.metrics
    assert [item.path for item in client.list_artifacts(tracker.run_id)] == ["report.json"]
    assert client.get_experiment(run.info.experiment_id).name == "fairgrape"

    again = open_tracker("mlflow", run_name="run-a", params={}, tags={}, resume=tracker.run_id)
    assert again.run_id == tracker.run_id  # a resumed run continues its MLflow run
    again.fail("KILLED")
    assert client.get_run(tracker.run_id).info.status == "KILLED"


def test_without_mlflow_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(InputError, match=r"pip install 'fairgrape\[mlflow\]'") as error:
        open_tracker("mlflow", run_name="x", params={}, tags={})
    assert "\n" not in str(error.value)


def test_run_track_mlflow_logs_settings_iterations_and_the_report(mlflow_store, tmp_path, cli, tiny_model_path, biased_data):
    """`fairgrape run --track mlflow`: the run reads back with MLflow's client; a rerun (all up to
    date) continues the same MLflow run without logging its iterations twice."""
    from mlflow.tracking import MlflowClient

    from tiny_runs import QUICK, run_folder

    config = run_folder(tmp_path, "tracked", tiny_model_path, biased_data, **{**QUICK, "keep_per_iter": 0.7})
    result = cli("run", config, "--track", "mlflow", "--quiet")
    assert result.code == 0, result
    output = config.parent / "run"
    run_id = json.loads((output / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(run_id)
    report = json.loads((output / "report.json").read_text())
    assert run.info.status == "FINISHED" and run.data.params["rate"] == "0.5" and run.data.params["method"] == "magnitude"
    densities = client.get_metric_history(run_id, "density")
    assert [(m.step, m.value) for m in densities] == [(i, entry["density"]) for i, entry in enumerate(report["history"])]
    for name in [row["group"] for row in report["groups"]]:
        history = client.get_metric_history(run_id, f"group_accuracy/{name}")
        assert [m.value for m in history] == [entry["groups"][name] for entry in report["history"]]
    assert run.data.metrics["final/drop_gap"] == pytest.approx(report["disparity"]["drop_gap"])
    assert "report.json" in [item.path for item in client.list_artifacts(run_id)]

    again = cli("run", config, "--track", "mlflow", "--quiet")
    assert again.code == 0, again
    assert json.loads((output / "tracking.json").read_text())["mlflow"] == run_id
    assert len(client.get_metric_history(run_id, "density")) == len(densities)

"""Report numbers against a hand count; JSON shape; --fail-if as a CI gate."""

from __future__ import annotations

import csv
import json
import statistics

import numpy as np
import pytest
import torch

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.checkpoints import load_checkpoint
from fairgrape_cli.io.images import read_image
from fairgrape_cli.method.metrics import parse_condition

from conftest import save_native
from tiny_runs import QUICK, run_folder


def _hand_accuracies(model_path, data_root, split="test"):
    checkpoint = load_checkpoint(model_path)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    counts = {}
    with open(data_root / "labels.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] != split:
                continue
            x = ((read_image(data_root / row["path"], 32).float() / 255 - mean) / std).unsqueeze(0)
            with torch.no_grad():
                predicted = int(checkpoint.model(x).argmax(1))
            n, correct = counts.get(row["group"], (0, 0))
            counts[row["group"]] = (n + 1, correct + (predicted == checkpoint.classes.index(row["label"])))
    return counts


def test_report_matches_hand_count(tmp_path, cli, tiny_model_path, resnet_path, biased_data):
    out = tmp_path / "report.json"
    result = cli(
        "report", tiny_model_path, biased_data, "--groups", "group", "--baseline", resnet_path,
        "--json", out, "--workers", "0",
    )  # fmt: skip
    assert result.code == 0, result
    report = json.loads(out.read_text())
    assert list(report)[:9] == [
        "model", "data", "split", "target", "attribute", "density", "overall", "groups", "disparity",
    ]  # fmt: skip
    assert report["split"] == "test" and report["attribute"] == "group" and report["target"] == "label"
    mine = _hand_accuracies(tiny_model_path, biased_data)
    base = _hand_accuracies(resnet_path, biased_data)
    drops = []
    for row in report["groups"]:
        n, correct = mine[row["group"]]
        assert row["n"] == n and row["accuracy"] == correct / n
        assert row["baseline_accuracy"] == base[row["group"]][1] / n
        assert row["drop"] == pytest.approx(row["baseline_accuracy"] - row["accuracy"])
        drops.append(row["drop"])
    accuracies = [row["accuracy"] for row in report["groups"]]
    assert report["overall"]["n"] == 32
    assert report["overall"]["accuracy"] == sum(c for _, c in mine.values()) / 32
    d = report["disparity"]
    assert d["accuracy_gap"] == pytest.approx(max(accuracies) - min(accuracies))
    assert d["worst_group_accuracy"] == min(accuracies)
    assert d["drop_std"] == pytest.approx(statistics.pstdev(drops))
    assert d["drop_gap"] == pytest.approx(max(drops) - min(drops))
    assert report["density"] == pytest.approx(1.0)
    assert "majority" in result.out and "drop_gap" in result.out


def test_without_baseline_the_baseline_fields_are_null(tmp_path, cli, tiny_model_path, biased_data):
    out = tmp_path / "r.json"
    assert cli("report", tiny_model_path, biased_data, "-g", "group", "--json", out, "--workers", "0").code == 0
    report = json.loads(out.read_text())
    assert report["overall"]["baseline_accuracy"] is None
    assert all(row["baseline_accuracy"] is None and row["drop"] is None for row in report["groups"])
    assert report["disparity"]["drop_std"] is None and report["disparity"]["drop_gap"] is None
    assert report["disparity"]["accuracy_gap"] is not None


def test_fail_if_exits_1_after_printing(cli, tiny_model_path, resnet_path, biased_data):
    failing = cli(
        "report", tiny_model_path, biased_data, "-g", "group", "--baseline", resnet_path,
        "--fail-if", "drop_gap>=0", "--fail-if", "accuracy>1", "--workers", "0",
    )  # fmt: skip
    assert failing.code == 1, failing
    assert "FAIL  drop_gap>=0" in failing.out and "ok    accuracy>1" in failing.out
    assert "overall" in failing.out  # the table came first
    passing = cli("report", tiny_model_path, biased_data, "-g", "group", "--fail-if", "worst_group_accuracy<0", "--workers", "0")
    assert passing.code == 0


@pytest.mark.parametrize(
    "condition,message",
    [("drop_gap=0.1", "expected METRIC>VALUE"), ("unfairness>0.1", "unknown metric"), ("drop_gap>0.1", "needs --baseline")],
)
def test_bad_conditions_are_usage_errors(cli, tiny_model_path, biased_data, condition, message):
    result = cli("report", tiny_model_path, biased_data, "-g", "group", "--fail-if", condition)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_condition_parsing():
    condition = parse_condition("worst_group_accuracy <= 0.8", has_baseline=False)
    assert (condition.metric, condition.comparison, condition.threshold) == ("worst_group_accuracy", "<=", 0.8)
    with pytest.raises(InputError):
        parse_condition("drop_std>0.1", has_baseline=False)


def test_a_model_no_better_than_guessing_is_called_so():
    from fairgrape_cli.method.metrics import no_better_than_guessing

    targets = np.array([0, 1, 1, 1, 2, 1, 0, 1])  # class 1: 5 of 8 rows
    assert no_better_than_guessing(0.625, targets) == (1, 0.625)  # always answering 1
    assert no_better_than_guessing(0.40, targets) == (1, 0.625)  # worse than that
    assert no_better_than_guessing(0.64, targets) is None  # more than a point better
    assert no_better_than_guessing(0.9, np.array([], dtype=int)) is None
    rare = np.array([0] * 995 + [1] * 5)  # one class 99.5% of the rows: a model above it is no guess
    assert no_better_than_guessing(1.0, rare) is None and no_better_than_guessing(0.998, rare) is None
    assert no_better_than_guessing(0.996, rare) == (0, 0.995)


def test_report_warns_when_the_model_always_answers_one_class(tmp_path, cli, biased_data):
    from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN

    model = TinyCNN(num_classes=2)
    with torch.no_grad():  # every image: class "no"
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0, -5.0]))
    constant = save_native(tmp_path / "constant.pt", model, TINY_ARCH)
    result = cli("report", constant, biased_data, "--groups", "group", "--bootstrap", "0")
    assert result.code == 0
    assert "is no better than always answering" in result.err and "say nothing about fairness" in result.err
    # a run says it of its final model, once (not of every iteration's evaluation)
    config = run_folder(tmp_path, "r", constant, biased_data, **QUICK)
    ran = cli("run", config, "-q")
    assert ran.code == 0 and ran.err.count("is no better than always answering") == 1
    assert "final.pt" in ran.err

"""Several binary attributes in one head (a face-attribute model): targets, loss, the chain, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fairgrape_cli.errors import InputError
from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN
from fairgrape_cli.io.checkpoints import load_checkpoint
from fairgrape_cli.io.data import DataSpec, load_table, resolve_classes
from fairgrape_cli.io.images import read_image
from fairgrape_cli.method.heads import HEADS, head_for

from conftest import ATTRIBUTES
from test_layouts import make_celeba


def _model(path, outputs: int, **fields):
    torch.manual_seed(0)
    torch.save({"arch": TINY_ARCH, "num_classes": outputs, "state_dict": TinyCNN(outputs).state_dict(),
                "image_size": 32, **fields}, path)  # fmt: skip
    return path


def test_several_targets_are_binary_attributes_read_as_0_1(attribute_data):
    table = load_table(DataSpec(root=attribute_data, target="all", groups="group"), default_split=("train",))
    assert table.multi_label and table.attributes == list(ATTRIBUTES) and table.target == "Red,Green,Blue"
    assert set(np.unique(table.attribute_values)) <= {0.0, 1.0}
    names, targets = resolve_classes(table, num_classes=3, checkpoint_classes=None, model_name="m.pt")
    assert names == list(ATTRIBUTES) and targets.shape == (len(table), 3) and head_for(targets).name == "multi-label"
    # the model's own order wins; its outputs must be one per attribute
    names, reordered = resolve_classes(table, num_classes=3, checkpoint_classes=["Blue", "Red", "Green"], model_name="m.pt")
    assert names == ["Blue", "Red", "Green"] and torch.equal(reordered, targets[:, [2, 0, 1]])
    with pytest.raises(InputError, match="has 2 outputs, but --target names 3 attributes"):
        resolve_classes(table, num_classes=2, checkpoint_classes=None, model_name="m.pt")
    with pytest.raises(InputError, match="lacks Yellow"):
        resolve_classes(table, num_classes=3, checkpoint_classes=["Red", "Green", "Yellow"], model_name="m.pt")


def test_a_target_that_is_not_binary_is_refused_naming_the_row(attribute_data):
    with pytest.raises(InputError, match=r"labels.csv row \d+: group is 'm\w+ority', but several targets must be binary"):
        load_table(DataSpec(root=attribute_data, target="Red,group"))


def test_the_loss_is_the_mean_binary_cross_entropy_over_attributes():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 0.3, 1.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    head = HEADS["multi-label"]
    by_hand = -(targets * torch.log(torch.sigmoid(logits)) + (1 - targets) * torch.log(1 - torch.sigmoid(logits)))
    assert torch.allclose(head.loss(logits, targets, "none"), by_hand.mean(1))
    assert torch.allclose(head.loss(logits, targets, "mean"), by_hand.mean())
    assert head.right(head.predict(logits), targets).tolist() == [[True, True, False], [False, True, True]]
    single = HEADS["single-label"]
    labels = torch.tensor([0, 2])
    assert torch.equal(single.loss(logits, labels, "mean"), F.cross_entropy(logits, labels))


def _hand_count(model_path, data_root, split="test"):
    """Per group and attribute, images right, by reading the manifest and running the model here."""
    import csv

    model = load_checkpoint(model_path).model
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    counts: dict[str, list] = {}
    with open(data_root / "labels.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] != split:
                continue
            x = ((read_image(data_root / row["path"], 32).float() / 255 - mean) / std).unsqueeze(0)
            with torch.no_grad():
                present = (model(x)[0] > 0).tolist()
            truth = [row[name] == "1" for name in ATTRIBUTES]
            n, right = counts.get(row["group"], (0, np.zeros(3)))
            counts[row["group"]] = (n + 1, right + np.array([p == t for p, t in zip(present, truth)]))
    return counts


def test_chain_and_report_match_an_independent_count(tmp_path, cli, attribute_data):
    model = _model(tmp_path / "model.pt", 3)
    assert cli("score", model, attribute_data, "--target", "all", "--groups", "group", "-q", "--workers", "0",
               cwd=tmp_path).code == 0  # fmt: skip
    assert cli("prune", "--rate", "0.5", "-q").code == 0
    tuned = cli("finetune", "--epochs", "2", "--lr", "0.01", "--objective", "balanced", "-q", "--workers", "0")
    assert tuned.code == 0, tuned
    saved = torch.load(tmp_path / "finetuned.pt", weights_only=True)
    assert saved["attributes"] == list(ATTRIBUTES) and "classes" not in saved
    # the fine-tuned model names its attributes: report needs no --target
    out = tmp_path / "report.json"
    result = cli("report", "finetuned.pt", attribute_data, "--groups", "group", "--baseline", model, "--json", out,
                 "--workers", "0", "--fail-if", "worst_group_accuracy<0")  # fmt: skip
    assert result.code == 0, result
    report = json.loads(out.read_text())
    mine, base = _hand_count(tmp_path / "finetuned.pt", attribute_data), _hand_count(model, attribute_data)
    for row in report["groups"]:
        n, right = mine[row["group"]]
        assert row["n"] == n and row["accuracy"] == pytest.approx(right.sum() / (3 * n), abs=1e-12)
        assert row["baseline_accuracy"] == pytest.approx(base[row["group"]][1].sum() / (3 * n), abs=1e-12)
    for section in report["attributes"]:
        position = ATTRIBUTES.index(section["attribute"])
        for row in section["groups"]:
            n, right = mine[row["group"]]
            assert row["accuracy"] == pytest.approx(right[position] / n, abs=1e-12)
            assert row["drop"] == pytest.approx((base[row["group"]][1][position] - right[position]) / n, abs=1e-12)
        drops = [row["drop"] for row in section["groups"]]
        assert section["disparity"]["drop_gap"] == pytest.approx(max(drops) - min(drops))
    accuracies = [row["accuracy"] for row in report["groups"]]
    assert report["disparity"]["accuracy_gap"] == pytest.approx(max(accuracies) - min(accuracies))
    assert "attributes, worst first" in result.out and "ok    worst_group_accuracy<0" in result.out


def test_a_model_with_other_outputs_is_refused(tmp_path, cli, attribute_data):
    model = _model(tmp_path / "two.pt", 2)
    result = cli("score", model, attribute_data, "--target", "Red,Green,Blue", "--groups", "group", "-q")
    assert result.code == 2 and "has 2 outputs, but --target names 3 attributes" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_celeba_as_downloaded_with_target_all(tmp_path, cli):
    root = make_celeba(tmp_path / "celeba", count=10)
    model = _model(tmp_path / "celeba.pt", 39)
    common = ["--groups", "Male", "--image-size", "32", "--workers", "0", "-q"]
    assert cli("score", model, root, "--target", "all", *common, cwd=tmp_path).code == 0
    metadata = load_table(DataSpec(root=root, target="all", groups="Male"))
    assert len(metadata.attributes) == 39 and "Male" not in metadata.attributes
    assert cli("prune", "--rate", "0.5", "-q").code == 0
    assert cli("finetune", "--epochs", "1", "--workers", "0", "-q").code == 0
    result = cli("report", "finetuned.pt", root, "--split", "train", "--json", "r.json", "--all", *common)
    assert result.code == 0, result
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["attributes"]) == 39 and report["target"].count(",") == 38
    assert "more attribute(s)" not in result.out  # --all lists every one

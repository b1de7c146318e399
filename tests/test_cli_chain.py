"""The four stages chained through the current directory, as the README shows them."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from fairgrape_cli.io.artifacts import read_masks
from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters

from greedy_reference import reference_keep


def test_score_prune_finetune_report_in_an_empty_directory(tmp_path, cli, resnet_path, biased_data):
    work = tmp_path / "work"
    work.mkdir()
    common = ("--workers", "0", "--quiet")
    assert cli("score", resnet_path, biased_data, "--groups", "group", "--target", "label", *common, cwd=work).code == 0
    pruned = cli("prune", "--rate", "0.9", cwd=work)
    assert pruned.code == 0, pruned
    assert cli("finetune", "--epochs", "1", *common, cwd=work).code == 0
    reported = cli(
        "report", "finetuned.pt", biased_data, "--groups", "group", "--target", "label",
        "--baseline", resnet_path, "--json", "report.json", *common, cwd=work,
    )  # fmt: skip
    assert reported.code == 0, reported
    assert {p.name for p in work.iterdir()} == {
        "importance.safetensors", "masks.safetensors", "pruned.pt", "finetuned.pt", "report.json",
    }  # fmt: skip

    masks = read_masks(work / "masks.safetensors")
    assert masks.metadata["method"] == "fairgrape" and masks.metadata["rate"] == "0.9"
    assert masks.metadata["scope"] == "layer"
    importance = {}
    with safe_open(str(work / "importance.safetensors"), framework="pt") as handle:
        for key in handle.keys():
            importance[key] = handle.get_tensor(key)
    weights = prunable_parameters(load_checkpoint(resnet_path).model)
    finetuned = prunable_parameters(load_checkpoint(work / "finetuned.pt").model)
    for name, mask in masks.tensors.items():
        assert int(mask.sum()) == round(0.1 * mask.numel()), name
        assert (finetuned[name][~mask] == 0).all(), name
    # the greedy agrees with the plain specification on small layers
    for name in ("conv1.weight", "fc.weight"):
        expected = reference_keep(
            importance[name].reshape(2, -1).tolist(), [True] * weights[name].numel(),
            round(0.1 * weights[name].numel()), weights[name].reshape(-1).tolist(),
        )  # fmt: skip
        assert masks.tensors[name].reshape(-1).tolist() == expected, name

    report = json.loads((work / "report.json").read_text())
    assert abs(report["density"] - 0.1) < 1e-3
    assert [g["group"] for g in report["groups"]] == ["majority", "minority"]


def test_prune_refuses_importance_for_another_model(tmp_path, cli, resnet_path, tiny_model_path, biased_data):
    assert cli("score", tiny_model_path, biased_data, "-g", "group", "--workers", "0", "-q", "--max-batches", "1", cwd=tmp_path).code == 0
    result = cli("prune", resnet_path, "--rate", "0.5", cwd=tmp_path)
    assert result.code == 2 and "does not fit" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "masks.safetensors").exists()


def test_prune_warns_when_model_differs_from_the_scored_one(tmp_path, cli, tiny_model_path, biased_data):
    assert cli("score", tiny_model_path, biased_data, "-g", "group", "--workers", "0", "-q", "--max-batches", "1", cwd=tmp_path).code == 0
    other = tmp_path / "other.pt"
    checkpoint = torch.load(tiny_model_path, weights_only=True)
    checkpoint["state_dict"]["classifier.bias"] += 1
    torch.save(checkpoint, other)
    result = cli("prune", other, "--rate", "0.5", cwd=tmp_path)
    assert result.code == 0 and "warning" in result.err and "made from" in result.err

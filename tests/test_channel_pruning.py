"""Structured pruning (``prune --granularity channel``): coupled channel groups, the slim checkpoint,
the greedy over units, and every command on a slim model."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml

from fairgrape_cli.flows.synthetic import TinyCNN
from fairgrape_cli.io.artifacts import read_masks
from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters, save_checkpoint
from fairgrape_cli.method.channel_groups import ChannelGraph
from fairgrape_cli.method.units import select_units, unit_importance, unit_norms

from greedy_reference import reference_keep

EXAMPLE = torch.zeros(1, 3, 32, 32)


def _graph(model: torch.nn.Module) -> ChannelGraph:
    return ChannelGraph(model, weights=prunable_parameters(model), example_input=EXAMPLE)


def _group(graph: ChannelGraph, name: str):
    return next(group for group in graph.groups if group.name == name)


def _slices(group) -> set[tuple[str, int]]:
    return {(piece.weight, piece.dim) for piece in group.slices}


def _all_kept_but(graph: ChannelGraph, removed: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    kept = {group.name: torch.ones(group.size, dtype=torch.bool) for group in graph.groups}
    for name, units in removed.items():
        kept[name][units] = False
    return kept


STEM, INNER = [3, 10, 40], [0, 7, 100, 127]  # channels removed from two groups of resnet18


@pytest.fixture(scope="module")
def slimmed(resnet_path):
    """resnet18 (random BatchNorm statistics): the dense checkpoint, and a copy with channels
    STEM removed from the stem's group and INNER from layer2.0.conv1's, and its graph."""
    dense = load_checkpoint(resnet_path)
    slim = load_checkpoint(resnet_path)
    graph = _graph(slim.model)
    masks = graph.remove(
        _all_kept_but(graph, {"conv1": STEM, "layer2.0.conv1": INNER}),
        {"layer1.0.conv1.weight": torch.ones(64, 64, 3, 3, dtype=torch.bool)},
    )  # fmt: skip
    return dense, slim, graph, masks


def test_residual_channels_are_removed_together_and_the_classes_never(slimmed):
    dense, slim, graph, masks = slimmed
    stem = _group(graph, "conv1")  # the stem's channels run through every residual addition of layer1
    assert stem.size == 64
    assert _slices(stem) == {
        ("conv1.weight", 0), ("layer1.0.conv2.weight", 0), ("layer1.1.conv2.weight", 0),
        ("layer1.0.conv1.weight", 1), ("layer1.1.conv1.weight", 1),
        ("layer2.0.conv1.weight", 1), ("layer2.0.downsample.0.weight", 1),
    }  # fmt: skip
    assert ("layer2.0.conv1.weight", 0) in _slices(_group(graph, "layer2.0.conv1"))
    assert not any(piece.weight == "fc.weight" and piece.dim == 0 for g in graph.groups for piece in g.slices)

    model, keep = slim.model, [i for i in range(64) if i not in STEM]
    assert model.conv1.out_channels == model.bn1.num_features == 61
    for block in model.layer1:
        assert block.conv2.out_channels == block.bn2.num_features == block.conv1.in_channels == 61
    assert model.layer2[0].downsample[0].in_channels == 61 and model.layer2[0].conv1.out_channels == 124
    assert model.fc.out_features == 2 and model.layer1[0].conv1.out_channels == 64
    assert torch.equal(model.conv1.weight, dense.model.conv1.weight[keep])
    assert torch.equal(model.layer1[1].conv1.weight, dense.model.layer1[1].conv1.weight[:, keep])
    assert masks["layer1.0.conv1.weight"].shape == (64, 61, 3, 3)  # masks are cut with the weights


def _zero_channels(model: torch.nn.Module, layers: list[str], channels: list[int]) -> None:
    """Zero output channels of convolutions and BatchNorms, *including* BatchNorm's shift: a
    channel whose conv weights alone are zero still outputs BN's ``beta - gamma * mean / std``."""
    with torch.no_grad():
        for name in layers:
            module = model.get_submodule(name)
            module.weight[channels] = 0
            if module.bias is not None:
                module.bias[channels] = 0


def test_slim_checkpoint_round_trips_without_pickle_and_equals_the_zeroed_dense_model(tmp_path, slimmed, resnet_path):
    """The slim model computes exactly what the dense model computes once every removed channel
    is zero wherever it is produced: its conv filters and its BatchNorm's scale and shift, in every
    layer of the coupled group (the residual branches too). Such channels contribute nothing to
    the layers that read them, so removing them cannot change the output: that is the
    equivalence channel removal must keep, and the one tested (masking conv weights alone would
    leave BatchNorm's shift flowing on, which the slim model does not have)."""
    dense, checkpoint, _, _ = slimmed
    zeroed = dense.model  # (the last test to use it)
    _zero_channels(zeroed, ["conv1", "bn1"] + [f"layer1.{i}.{m}" for i in (0, 1) for m in ("conv2", "bn2")], STEM)
    _zero_channels(zeroed, ["layer2.0.conv1", "layer2.0.bn1"], INNER)

    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected, slim = zeroed(images), checkpoint.model(images)
    assert torch.allclose(slim, expected, atol=1e-5)

    for name in ("slim.pt", "slim.safetensors"):
        save_checkpoint(tmp_path / name, checkpoint.model, like=checkpoint, classes=None, provenance={})
        loaded = load_checkpoint(tmp_path / name)
        assert loaded.model.conv1.out_channels == 61 and loaded.model.layer2[0].conv1.out_channels == 124
        with torch.no_grad():
            assert torch.equal(loaded.model(images), slim)
    raw = torch.load(tmp_path / "slim.pt", weights_only=True)  # plain tensors, strings and numbers
    assert raw["structure"]["modules"]["conv1"] == {"out_channels": 61}
    assert (tmp_path / "slim.pt").stat().st_size < resnet_path.stat().st_size


def test_unit_scores_are_the_sums_of_the_weights_they_remove_and_the_greedy_is_the_reference():
    torch.manual_seed(0)
    model = TinyCNN(num_classes=2).eval()
    weights = prunable_parameters(model)
    importance = {name: torch.rand(3, *weight.shape) for name, weight in weights.items()}
    graph = _graph(model)
    assert [group.name for group in graph.groups] == ["features.0", "features.4", "features.8", "features.12"]
    scores, norms = unit_importance(graph.groups, importance), unit_norms(graph.groups, weights)
    # unit 5 of the first layer: its filter and the next layer's input slice
    expected = importance["features.0.weight"][:, 5].sum((1, 2, 3)) + importance["features.4.weight"][:, :, 5].sum((1, 2, 3))
    assert torch.allclose(scores["features.0"][:, 5], expected.double())
    last = weights["features.12.weight"][7].square().sum() + weights["classifier.weight"][:, 7].square().sum()
    assert torch.allclose(norms["features.12"][7], last.sqrt().double())

    sizes = {group.name: group.size for group in graph.groups}
    kept = select_units(norms=norms, importance=scores, dense_sizes=sizes, method="fairgrape", rate=0.6)
    for name, mask in kept.items():
        reference = reference_keep(scores[name].tolist(), [True] * sizes[name], round(0.4 * sizes[name]), norms[name].tolist())
        assert mask.tolist() == reference, name
    # cumulative: a group already narrowed to 10 of 16 channels keeps round(0.4 * 16) = 6 more
    narrowed = select_units(
        norms={"features.0": norms["features.0"][:10]}, importance={"features.0": scores["features.0"][:, :10]},
        dense_sizes={"features.0": 16}, method="fairgrape", rate=0.6,
    )  # fmt: skip
    assert int(narrowed["features.0"].sum()) == 6
    # magnitude: the units of largest L2 norm
    by_norm = select_units(norms=norms, importance=None, dense_sizes=sizes, method="magnitude", rate=0.5)
    top = set(norms["features.8"].topk(16).indices.tolist())
    assert set(by_norm["features.8"].nonzero().flatten().tolist()) == top
    pooled = select_units(
        norms=norms, importance=scores, dense_sizes=sizes, method="fairgrape", rate=0.85,
        scope="global", min_layer_density=0.1,
    )  # fmt: skip
    assert sum(int(m.sum()) for m in pooled.values()) == round(0.15 * sum(sizes.values()))
    assert all(int(pooled[name].sum()) >= math.ceil(0.1 * sizes[name]) for name in sizes)


def test_every_command_works_on_a_slim_checkpoint(tmp_path, cli, tiny_model_path, biased_data):
    common = ("--workers", "0", "--quiet")
    data = (biased_data, "--groups", "group")
    assert cli("score", tiny_model_path, *data, "--max-batches", "2", *common, cwd=tmp_path).code == 0
    pruned = cli("prune", "--rate", "0.5", "--granularity", "channel", cwd=tmp_path)
    assert pruned.code == 0, pruned
    assert "of 96 channels" in pruned.err and "FLOPs" in pruned.err

    masks = read_masks(tmp_path / "masks.safetensors")
    assert masks.metadata["granularity"] == "channel"
    assert masks.metadata["channels"]["features.0"] == [8, 16]
    slim = load_checkpoint(tmp_path / "pruned.pt")
    assert slim.model.features[0].out_channels == 8 and slim.model.classifier.in_features == 16
    weights = prunable_parameters(slim.model)
    assert {name: tuple(mask.shape) for name, mask in masks.tensors.items()} == {
        name: tuple(weight.shape) for name, weight in weights.items()
    }
    # the slim model ships through export: TorchScript and the sparse file give its outputs
    for name in ("pruned.torchscript", "pruned.sparse.safetensors"):
        assert cli("export", "pruned.pt", "-o", name, "--quiet", cwd=tmp_path).code == 0
    images = torch.randn(2, 3, 32, 32)
    for name in ("pruned.torchscript", "pruned.sparse.safetensors"):
        shipped = load_checkpoint(tmp_path / name)
        with torch.no_grad():
            assert torch.allclose(shipped.model(images), slim.model(images), atol=1e-6), name

    assert cli("finetune", "--epochs", "1", *common, cwd=tmp_path).code == 0  # the slim model, from masks
    finetuned = load_checkpoint(tmp_path / "finetuned.pt")
    assert finetuned.model.features[0].out_channels == 8
    reported = cli("report", "finetuned.pt", *data, "--baseline", tiny_model_path, "--json", "r.json", *common, cwd=tmp_path)
    assert reported.code == 0, reported
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["params"] < 0.4 * report["dense_params"] and report["flops"] < 0.4 * report["dense_flops"]
    assert report["density"] == pytest.approx(report["params"] / report["dense_params"], abs=0.01)
    assert report["pruning"]["granularity"] == "channel" and "drop_gap" in report["disparity"]

    # again, on the slim model: weights, then channels (cumulative against the dense widths,
    # the weights masked before staying masked)
    assert cli("score", "finetuned.pt", *data, "-o", "slim.safetensors", "--max-batches", "2", *common, cwd=tmp_path).code == 0
    by_weight = cli("prune", "-i", "slim.safetensors", "--rate", "0.5", "-o", "w.safetensors", "--model-output", "w.pt", cwd=tmp_path)
    assert by_weight.code == 0, by_weight
    twice = cli("prune", "w.pt", "--method", "magnitude", "--rate", "0.75", "--granularity", "channel",
                "-o", "c.safetensors", "--model-output", "c.pt", cwd=tmp_path)  # fmt: skip
    assert twice.code == 0, twice
    narrow = load_checkpoint(tmp_path / "c.pt").model
    assert narrow.features[0].out_channels == 4  # 25% of the dense 16
    carried = read_masks(tmp_path / "c.safetensors").tensors
    for name, weight in prunable_parameters(narrow).items():
        assert carried[name].shape == weight.shape and (weight[~carried[name]] == 0).all()
    density = float(read_masks(tmp_path / "c.safetensors").metadata["density"])  # of the dense weights
    assert 0.02 < density < 1 / 16 + 0.01  # within a quarter of the channels, about half the weights


def test_run_iterates_on_slim_models(tmp_path, tiny_model_path, biased_data):
    from fairgrape_cli.flows.config import load_config
    from fairgrape_cli.flows.pipeline import run_schedule

    shutil.copy(tiny_model_path, tmp_path / "model.pt")
    (tmp_path / "data").symlink_to(biased_data, target_is_directory=True)
    config = dict(
        model="model.pt", data="data", groups="group", image_size=32, rate=0.75, keep_per_iter=0.5,
        workers=0, output="run", keep_artifacts="all", score={"batch_size": 16, "max_batches": 1},
        prune={"granularity": "channel"}, finetune={"epochs": 1, "batch_size": 16},
        final_finetune={"epochs": 0},
    )  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = run_schedule(load_config(tmp_path / "run.yaml"))
    widths = [load_checkpoint(tmp_path / f"run/iter-0{i}/finetuned.pt").model.features[0].out_channels for i in (1, 2)]
    assert widths == [8, 4]
    assert result.report.size.params < 0.15 * result.report.size.dense_params
    densities = [entry.density for entry in result.report.history]
    assert densities[:3] == pytest.approx([1.0, 0.25, 0.0625], abs=0.02)  # the RGB input is never cut


def test_channel_granularity_refuses_what_it_cannot_do(tmp_path, cli, tiny_model_path):
    wrong = cli("prune", tiny_model_path, "--rate", "0.5", "--method", "magnitude", "--granularity", "filters", cwd=tmp_path)
    assert wrong.code == 2 and "--granularity filters" in wrong.err
    scripted = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.script(load_checkpoint(tiny_model_path).model), str(scripted))
    refused = cli("prune", scripted, "--rate", "0.5", "--method", "magnitude", "--granularity", "channel", cwd=tmp_path)
    assert refused.code == 2 and "TorchScript" in refused.err and "Traceback" not in refused.err

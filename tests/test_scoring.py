"""Importance as docs/design.md defines it, against a hand computation; the model is left unchanged."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from fairgrape_cli import stages
from fairgrape_cli.io.artifacts import read_importance
from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.io.images import read_image

from conftest import assert_close_to_scale


def _rows(data_root, split="train"):
    with open(data_root / "labels.csv", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def _hand_importance(model_path, data_root, batch_size):
    """(w * dL_b/dw)^2 averaged over group-pure batches in CSV order; eval mode; ImageNet norm."""
    checkpoint = load_checkpoint(model_path)
    model = checkpoint.model.eval()
    classes = checkpoint.classes
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rows = _rows(data_root)
    result = {}
    for group in sorted({row["group"] for row in rows}):
        members = [row for row in rows if row["group"] == group]
        batches = [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
        totals = {}
        for batch in batches:
            x = torch.stack([read_image(data_root / row["path"], 32) for row in batch]).float() / 255
            x = (x - mean) / std
            y = torch.tensor([classes.index(row["label"]) for row in batch])
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            for name, weight in prunable_parameters(model).items():
                value = (weight.detach() * weight.grad) ** 2
                totals[name] = totals.get(name, 0) + value
        result[group] = {name: total / len(batches) for name, total in totals.items()}
    return result


def test_importance_matches_hand_computation(tmp_path, tiny_model_path, biased_data):
    output = tmp_path / "importance.safetensors"
    stages.score(
        model=stages.ModelSource(tiny_model_path),
        data=DataSpec(root=biased_data, groups="group"),
        output=output,
        loading=stages.Loading(batch_size=5, workers=0),
    )
    expected = _hand_importance(tiny_model_path, biased_data, batch_size=5)
    with safe_open(str(output), framework="pt") as handle:
        metadata = handle.metadata()
        groups = __import__("json").loads(metadata["groups"])
        assert groups == ["majority", "minority"]
        for name in expected["majority"]:
            stored = handle.get_tensor(name)
            assert stored.dtype == torch.float32
            for g, group in enumerate(groups):
                assert_close_to_scale(stored[g], expected[group][name], rtol=1e-4)


def test_importance_metadata(tmp_path, tiny_model_path, biased_data):
    output = tmp_path / "out" / "importance.safetensors"
    summary = stages.score(
        model=stages.ModelSource(tiny_model_path),
        data=DataSpec(root=biased_data, groups="group"),
        output=output,
        loading=stages.Loading(batch_size=8, workers=0),
    )
    with safe_open(str(output), framework="pt") as handle:
        meta = handle.metadata()
        keys = list(handle.keys())
    import json

    assert meta["format"] == "fairgrape.importance.v1"
    assert json.loads(meta["groups"]) == ["majority", "minority"]
    assert meta["attribute"] == "group" and meta["target"] == "label" and meta["split"] == "train"
    counts = json.loads(meta["samples_per_group"])
    train = _rows(biased_data)
    assert counts == {g: sum(r["group"] == g for r in train) for g in ("majority", "minority")}
    assert summary.samples_per_group == [counts["majority"], counts["minority"]]
    assert meta["model_sha256"] == __import__("hashlib").sha256(tiny_model_path.read_bytes()).hexdigest()
    # recorded paths are relative to the importance file
    assert (output.parent / meta["model"]).resolve() == tiny_model_path.resolve()
    assert (output.parent / meta["data"]).resolve() == biased_data.resolve()
    assert meta["criterion"]
    assert set(keys) == set(prunable_parameters(load_checkpoint(tiny_model_path).model))


def _score_in_process(model, data_root, weights=None):
    """compute_importance on the train split in batches of 8, without the stage around it."""
    from fairgrape_cli.io.data import load_table, resolve_classes
    from fairgrape_cli.io.images import ImageLoader, Normalizer
    from fairgrape_cli.method.batches import group_pure_batches
    from fairgrape_cli.method.scoring import compute_importance

    table = load_table(DataSpec(root=data_root, groups="group"), default_split=("train",))
    _, targets = resolve_classes(table, num_classes=2, checkpoint_classes=["no", "yes"], model_name="m")
    batches = [rows for _, rows in group_pure_batches(table.group_index, 2, batch_size=8)]
    result = compute_importance(
        model=model,
        weights=weights if weights is not None else prunable_parameters(model),
        batches=ImageLoader(table, 32, batches),
        prepare=Normalizer((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu")),
        targets=targets,
        group_index=table.group_index,
        group_names=table.group_names,
    )
    return result, len(batches)


def test_scoring_leaves_model_unchanged(tiny_model_path, biased_data):
    model = load_checkpoint(tiny_model_path).model
    model.train()  # scoring must switch to eval itself and restore the mode afterwards
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _score_in_process(model, biased_data)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BatchNorm statistics
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_max_batches_and_masked_weights_get_zero(tmp_path, tiny_model_path, biased_data):
    from fairgrape_cli.io.artifacts import write_artifact

    checkpoint = load_checkpoint(tiny_model_path)
    weights = prunable_parameters(checkpoint.model)
    masks = {name: torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) < 0.5 for name, w in weights.items()}
    masks_path = write_artifact(tmp_path / "m.safetensors", masks, {"format": "fairgrape.masks.v1"}) and tmp_path / "m.safetensors"
    summary = stages.score(
        model=stages.ModelSource(tiny_model_path),
        data=DataSpec(root=biased_data, groups="group"),
        output=tmp_path / "imp.safetensors",
        masks=masks_path,
        max_batches=1,
        loading=stages.Loading(batch_size=4, workers=0),
    )
    assert summary.batches_per_group == [1, 1] and summary.samples_per_group == [4, 4]
    with safe_open(str(tmp_path / "imp.safetensors"), framework="pt") as handle:
        assert handle.metadata()["masks"] == "m.safetensors"
        for name, mask in masks.items():
            values = handle.get_tensor(name)
            assert (values[:, ~mask] == 0).all()
            assert (values[:, mask] > 0).any()


def test_score_requires_groups(tmp_path, tiny_model_path, biased_data, cli):
    result = cli("score", tiny_model_path, biased_data, "-o", tmp_path / "i.safetensors")
    assert result.code == 2 and "--groups" in result.err
    assert not (tmp_path / "i.safetensors").exists()


def test_leftover_gradients_neither_leak_in_nor_get_lost(tiny_model_path, biased_data):
    model = load_checkpoint(tiny_model_path).model
    clean = _score_in_process(model, biased_data)[0].importance
    leftovers = {name: torch.full_like(p, 3.0) for name, p in model.named_parameters()}
    for name, param in model.named_parameters():
        param.grad = leftovers[name]
    for name, values in _score_in_process(model, biased_data)[0].importance.items():
        torch.testing.assert_close(values, clean[name])
    for name, param in model.named_parameters():
        assert param.grad is leftovers[name], name


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_stored_dtype_keeps_the_float32_scores_to_its_precision(tmp_path, tiny_model_path, biased_data, dtype):
    def run(name, stored):
        stages.score(
            model=stages.ModelSource(tiny_model_path),
            data=DataSpec(root=biased_data, groups="group"),
            output=tmp_path / name,
            loading=stages.Loading(batch_size=8, workers=0),
            dtype=stored,
        )
        with safe_open(str(tmp_path / name), framework="pt") as handle:
            raw = {key: handle.get_tensor(key) for key in handle.keys()}
        return raw, read_importance(tmp_path / name).tensors

    (full, _), (raw, small) = run("full.safetensors", "float32"), run("small.safetensors", dtype)
    for name, stored in raw.items():
        assert stored.dtype == getattr(torch, dtype)
        exact = full[name]
        values = small[name].float()
        # squared gradient products are far below float16's range: the stored scale must keep them
        nonzero = exact > 0
        assert (values[nonzero] > 0).float().mean() > 0.99, name
        relative = 2**-8 if dtype == "float16" else 2**-7
        torch.testing.assert_close(values, exact, rtol=relative, atol=exact.max().item() * 2**-10)


def test_unknown_dtype_is_refused(tmp_path, tiny_model_path, biased_data, cli):
    result = cli("score", tiny_model_path, biased_data, "-g", "group", "--dtype", "int8", "-o", tmp_path / "i.safetensors")
    assert result.code == 2 and "--dtype int8" in result.err


def test_one_layer_gradient_alive_at_a_time(tiny_model_path, biased_data):
    """Peak memory is model + G x prunable weights + one batch: each layer's gradient is folded
    into the sums as soon as the backward pass produces it, never all of them at once."""
    model = load_checkpoint(tiny_model_path).model
    weights = prunable_parameters(model)
    alive_counts = []
    for weight in weights.values():  # registered first, so it runs before scoring's own hook
        weight.register_post_accumulate_grad_hook(
            lambda _: alive_counts.append(sum(w.grad is not None for w in weights.values()))
        )
    _, num_batches = _score_in_process(model, biased_data, weights)
    assert len(alive_counts) == len(weights) * num_batches
    assert max(alive_counts) == 1


def test_float16_importance_prunes_like_float32_in_a_global_pool(tmp_path, tiny_model_path, biased_data):
    """Global scope compares layers, so each layer's stored scale must be divided out on reading."""
    kept = {}
    for dtype in ("float32", "float16"):
        importance = tmp_path / f"{dtype}.safetensors"
        stages.score(
            model=stages.ModelSource(tiny_model_path),
            data=DataSpec(root=biased_data, groups="group"),
            output=importance,
            loading=stages.Loading(batch_size=8, workers=0),
            dtype=dtype,
        )
        masks = tmp_path / f"masks-{dtype}.safetensors"
        stages.prune(rate=0.8, importance=importance, scope="global", output=masks)
        with safe_open(str(masks), framework="pt") as handle:
            kept[dtype] = torch.cat([handle.get_tensor(key).flatten() for key in sorted(handle.keys())])
    agreement = (kept["float32"] == kept["float16"]).float().mean().item()
    assert agreement > 0.97


def test_float16_scaling_is_exact_bounded_and_read_back_without_side_effects():
    from fairgrape_cli.io.artifacts import UnscaledTensors, float16_scaled

    values = torch.tensor([3e-12, 1e-13, 0.0])
    stored, scale = float16_scaled(values)
    assert math.log2(scale).is_integer() and stored.max() >= 2**14
    torch.testing.assert_close(stored.float() / scale, values, rtol=2**-10, atol=0)
    tiny, tiny_scale = float16_scaled(torch.tensor([1e-40, 0.0]))  # below what any float32 factor lifts
    assert math.isfinite(tiny_scale) and torch.isfinite(tiny.float() / tiny_scale).all()
    plain = {"layer": torch.tensor([[0.5]])}  # float32 values: reading must not divide them in place
    reader = UnscaledTensors(plain, {"layer": 2.0})
    assert [reader["layer"].item() for _ in range(3)] == [0.25, 0.25, 0.25]

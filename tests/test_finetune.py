"""Masked fine-tuning: masked weights stay exactly zero; the output loads into plain torchvision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from fairgrape_cli import stages
from fairgrape_cli.io.artifacts import read_masks
from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters
from fairgrape_cli.io.data import DataSpec


@pytest.fixture
def pruned_run(tmp_path, resnet_path, biased_data):
    stages.prune(
        model=stages.ModelSource(resnet_path),
        method="magnitude",
        rate=0.8,
        output=tmp_path / "masks.safetensors",
    )
    return tmp_path


def test_masks_enforced_and_checkpoint_loads_into_torchvision(pruned_run, resnet_path, biased_data):
    masks = read_masks(pruned_run / "masks.safetensors").tensors
    summary = stages.finetune(
        model=stages.ModelSource(pruned_run / "pruned.pt"),
        data=DataSpec(root=biased_data),
        masks=pruned_run / "masks.safetensors",
        output=pruned_run / "finetuned.pt",
        loading=stages.Loading(batch_size=16, workers=0),
        epochs=2,
        lr=1e-2,  # large enough that unmasked weights visibly move
    )
    assert len(summary.history) == 2 and summary.val_split == "val"
    assert summary.best_epoch in (1, 2)
    saved = torch.load(pruned_run / "finetuned.pt", weights_only=True)
    plain = torchvision.models.resnet18(num_classes=2)
    plain.load_state_dict(saved["state_dict"])
    before = prunable_parameters(load_checkpoint(resnet_path).model)
    moved = 0
    for name, weight in prunable_parameters(plain).items():
        assert (weight[~masks[name]] == 0).all(), name
        moved += int((weight[masks[name]] != before[name][masks[name]]).sum())
    assert moved > 0
    assert saved["fairgrape"]["masks"] == "masks.safetensors"
    assert saved["classes"] == ["no", "yes"] and saved["image_size"] == 32


def test_finetune_defaults_come_from_the_masks_file(pruned_run, biased_data, monkeypatch, resnet_path):
    # masks made from an importance file that records the data
    stages.score(
        model=stages.ModelSource(resnet_path),
        data=DataSpec(root=biased_data, groups="group"),
        output=pruned_run / "importance.safetensors",
        loading=stages.Loading(batch_size=16, workers=0),
        max_batches=1,
    )
    monkeypatch.chdir(pruned_run)  # the library takes nothing from here: each file is named
    stages.prune(rate=0.5, importance=Path("importance.safetensors"), output=Path("masks.safetensors"))
    summary = stages.finetune(
        masks=Path("masks.safetensors"), output=Path("finetuned.pt"), epochs=1,
        loading=stages.Loading(batch_size=16, workers=0),
    )  # fmt: skip
    assert summary.output.exists() and summary.train_split == "train"
    assert abs(summary.density - 0.5) < 1e-3


def test_finetune_without_masks_file_is_a_clear_error(tmp_path, cli):
    result = cli("finetune", cwd=tmp_path)  # the command line's default: masks.safetensors here
    assert result.code == 2 and "masks.safetensors not found" in result.err and "Traceback" not in result.err

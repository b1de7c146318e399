"""Each stage resolves its inputs into a small dataclass before any model is loaded: tested here
with artifact files holding a few tensors and placeholder model files, never a model. Defaults
that name files in the current folder belong to the command line; the library takes nothing
from where it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.io.artifacts import IMPORTANCE_FORMAT, MASKS_FORMAT, write_artifact
from fairgrape_cli.io.data import DataSpec

LAYER = {"conv.weight": torch.ones(2, 3, dtype=torch.bool)}


def _masks(path: Path, **metadata) -> Path:
    write_artifact(path, LAYER, {"format": MASKS_FORMAT, "method": "magnitude", **metadata})
    return path


def _importance(path: Path, **metadata) -> Path:
    write_artifact(path, {"conv.weight": torch.rand(2, 2, 3)}, {"format": IMPORTANCE_FORMAT, "groups": ["a", "b"], **metadata})
    return path


def _placeholder(path: Path) -> Path:
    path.write_bytes(b"not read by any resolve step")
    return path


def test_finetune_takes_model_data_groups_and_teacher_from_the_masks(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _placeholder(tmp_path / "model.pt")
    _placeholder(tmp_path / "pruned.pt")
    masks = _masks(tmp_path / "masks.safetensors", model="model.pt", checkpoint="pruned.pt", data="data",
                   target="label", attribute="race", arch="resnet18")  # fmt: skip
    inputs = stages.resolve_finetune(output=tmp_path / "out.pt", masks=masks, objective="balanced")
    assert inputs.model.path == tmp_path / "model.pt" and inputs.model.default_arch == "resnet18"
    assert (inputs.data.root, inputs.data.target, inputs.data.groups) == (data, "label", "race")
    assert inputs.masks.path == masks and inputs.objective.name == "balanced"
    from fairgrape_cli.method.distillation import Distillation

    taught = stages.resolve_finetune(output=tmp_path / "out.pt", masks=masks, distillation=Distillation(0.5))
    assert taught.teacher.path == tmp_path / "model.pt"  # the model the masks were pruned from
    channel = _masks(tmp_path / "channel.safetensors", model="model.pt", checkpoint="pruned.pt", data="data",
                     granularity="channel")  # fmt: skip
    assert stages.resolve_finetune(output=tmp_path / "o.pt", masks=channel).model.path == tmp_path / "pruned.pt"
    given = stages.resolve_finetune(output=tmp_path / "o.pt", masks=masks, data=DataSpec(root=data, groups="sex"))
    assert given.data.groups == "sex"  # a flag beats the record


def test_finetune_refuses_what_cannot_work_before_loading_anything(tmp_path):
    model = _placeholder(tmp_path / "model.pt")
    masks = _masks(tmp_path / "masks.safetensors", data="data")
    with pytest.raises(InputError, match="dense training needs MODEL and no --masks"):
        stages.resolve_finetune(output=tmp_path / "o.pt", model=stages.ModelSource(model), masks=masks, dense=True)
    with pytest.raises(InputError, match="does not record its model"):
        stages.resolve_finetune(output=tmp_path / "o.pt", masks=masks)
    with pytest.raises(InputError, match="no masks and no model"):
        stages.resolve_finetune(output=tmp_path / "o.pt")
    with pytest.raises(InputError, match="--epochs 0"):
        stages.resolve_finetune(output=tmp_path / "o.pt", masks=masks, epochs=0)
    with pytest.raises(InputError, match="would overwrite the input"):
        stages.resolve_finetune(output=model, model=stages.ModelSource(model), masks=masks, data=DataSpec(tmp_path))


def test_nothing_is_taken_from_the_current_folder(tmp_path, monkeypatch):
    """masks.safetensors and importance.safetensors lying where the library runs are not used:
    only the command line reads them by default."""
    here = tmp_path / "here"
    here.mkdir()
    _masks(here / "masks.safetensors", data="data")
    _importance(here / "importance.safetensors", model="model.pt")
    model = _placeholder(tmp_path / "model.pt")
    monkeypatch.chdir(here)
    dense = stages.resolve_finetune(output=tmp_path / "o.pt", model=stages.ModelSource(model), data=DataSpec(tmp_path))
    assert dense.masks is None  # trained densely (with a warning), not under ./masks.safetensors
    with pytest.raises(InputError, match="needs an importance file"):
        stages.resolve_prune(rate=0.5, output=tmp_path / "m.safetensors", model=stages.ModelSource(model))
    fallback = stages.resolve_finetune(
        output=tmp_path / "o.pt", model=stages.ModelSource(model), fallback_masks=here / "masks.safetensors"
    )
    assert fallback.masks.path == here / "masks.safetensors" and fallback.data.root == here / "data"


def test_prune_takes_its_model_from_the_importance_and_writes_beside_the_masks(tmp_path):
    _placeholder(tmp_path / "model.pt")
    importance = _importance(tmp_path / "importance.safetensors", model="model.pt", arch="resnet18")
    inputs = stages.resolve_prune(rate=0.9, importance=importance, output=tmp_path / "out" / "masks.safetensors")
    assert inputs.model.path == tmp_path / "model.pt" and inputs.model.default_arch == "resnet18"
    assert inputs.model_output == tmp_path / "out" / "pruned.pt" and inputs.previous_masks is None
    gone = _importance(tmp_path / "scored.safetensors", model="model.pt", masks="old-masks.safetensors")
    with pytest.raises(InputError, match="scored under masks .*old-masks.safetensors, which no longer exist"):
        stages.resolve_prune(rate=0.9, importance=gone, output=tmp_path / "m.safetensors")
    _masks(tmp_path / "old-masks.safetensors")
    assert stages.resolve_prune(rate=0.9, importance=gone, output=tmp_path / "m.safetensors").previous_masks.name == (
        "old-masks.safetensors"
    )
    with pytest.raises(InputError, match="not found: run `fairgrape score"):
        stages.resolve_prune(rate=0.9, importance=tmp_path / "none.safetensors", output=tmp_path / "m.safetensors")
    with pytest.raises(InputError, match="--rate 1.5"):
        stages.resolve_prune(rate=1.5, importance=importance, output=tmp_path / "m.safetensors")


def test_score_report_export_and_data_prune_check_their_flags(tmp_path):
    model = stages.ModelSource(_placeholder(tmp_path / "model.pt"))
    spec = DataSpec(root=tmp_path, groups="group")
    score = stages.resolve_score(model=model, data=spec, output=tmp_path / "i.safetensors", dtype="float16")
    assert score.dtype == "float16" and score.masks is None
    with pytest.raises(InputError, match="--dtype float8"):
        stages.resolve_score(model=model, data=spec, output=tmp_path / "i.safetensors", dtype="float8")
    report = stages.resolve_report(model=model, data=spec, baseline=model, fail_if=["drop_gap>5pp"])
    assert report.conditions[0].threshold == pytest.approx(0.05)
    with pytest.raises(InputError, match="needs --baseline"):
        stages.resolve_report(model=model, data=spec, fail_if=["drop_gap>5pp"])
    export = stages.resolve_export(model=model, output=tmp_path / "m.onnx")
    assert export.format == "onnx"
    from fairgrape_cli.stages.export import default_output

    assert default_output(Path("runs/pruned.pt"), None) == Path("pruned.sparse.safetensors")
    (tmp_path / "labels.csv").write_text("path,label,group,split\na.png,x,g,train\nb.png,y,g,val\n")
    plan = stages.resolve_data_prune(model=model, data=spec, keep=0.5)
    assert plan.output == tmp_path / "labels-pruned.csv" and (plan.pool_split, plan.val_split) == ("train", "val")

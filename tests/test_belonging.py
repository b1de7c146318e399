"""Artifacts that do not belong to the model are refused before any work: another architecture,
a file covering only some of the model's layers when no --include/--exclude says so, and
importance no squared gradient can give (negative, NaN, infinite), each named in one line.
And what does belong is not refused: a plain state dict with --arch, a renamed architecture,
TorchScript, a subset of layers meant with --include/--exclude.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN
from fairgrape_cli.io.artifacts import IMPORTANCE_FORMAT, read_importance, read_masks, write_artifact
from fairgrape_cli.io.checkpoints import prunable_parameters

TINY_LAYERS = {name: weight.shape for name, weight in prunable_parameters(TinyCNN(2)).items()}


def _one_line_error(result, *fragments: str) -> str:
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _importance(path: Path, layers: dict, *, arch: str | None = TINY_ARCH, fill=None, **metadata) -> Path:
    """An importance file as `score` writes one (two groups), for ``layers`` (name -> shape)."""
    generator = torch.Generator().manual_seed(0)
    tensors = {name: torch.rand((2, *shape), generator=generator) for name, shape in layers.items()}
    for name, (index, value) in (fill or {}).items():
        tensors[name].view(-1)[index] = value
    write_artifact(path, tensors, {
        "format": IMPORTANCE_FORMAT, "groups": ["a", "b"], "attribute": "group", "arch": arch, **metadata,
    })  # fmt: skip
    return path


def _nothing_written(folder: Path) -> None:
    assert not (folder / "masks.safetensors").exists() and not (folder / "pruned.pt").exists()
    assert not list(folder.glob(".*.tmp"))


def test_importance_of_a_resnet18_is_refused_for_a_resnet34(tmp_path, cli):
    """The issue's case: resnet18's layer names and shapes are a subset of resnet34's."""
    resnet34 = tmp_path / "resnet34.pt"
    torch.save({"arch": "resnet34", "num_classes": 2, "state_dict": torchvision.models.resnet34(num_classes=2).state_dict()}, resnet34)
    resnet18_layers = {name: w.shape for name, w in prunable_parameters(torchvision.models.resnet18(num_classes=2)).items()}
    scored = _importance(tmp_path / "importance.safetensors", resnet18_layers, arch="resnet18")
    _one_line_error(cli("prune", resnet34, "--rate", "0.5", cwd=tmp_path), scored.name, str(resnet34), "made for a resnet18 model", "is a resnet34")
    _nothing_written(tmp_path)

    # without a recorded arch (scored on a TorchScript model, say) the missing layers still tell
    _importance(scored, resnet18_layers, arch=None)
    line = _one_line_error(cli("prune", resnet34, "--rate", "0.5", cwd=tmp_path), scored.name, str(resnet34))
    assert "holds 21 of the 37 prunable layers of the model" in line and "layer1.2.conv1.weight" in line
    _nothing_written(tmp_path)


def test_partial_importance_is_refused_unless_the_subset_was_meant(tmp_path, cli, tiny_model_path):
    partial = {name: shape for name, shape in TINY_LAYERS.items() if name != "features.8.weight"}
    _importance(tmp_path / "importance.safetensors", partial)
    line = _one_line_error(cli("prune", tiny_model_path, "--rate", "0.5", cwd=tmp_path), "importance.safetensors", str(tiny_model_path))
    assert "holds 4 of the 5 prunable layers" in line and "features.8.weight" in line and "--include/--exclude" in line
    _nothing_written(tmp_path)

    # a file that does not record its layer patterns (an older one): the user says which layers
    result = cli("prune", tiny_model_path, "--rate", "0.5", "--exclude", "features.8.*", "-q", cwd=tmp_path)
    assert result.code == 0, result
    masks = read_masks(tmp_path / "masks.safetensors")
    assert set(masks.tensors) == set(partial) and masks.metadata["exclude"] == ["features.8.*"]
    # --include asking for a layer the file lacks is refused too
    _one_line_error(
        cli("prune", tiny_model_path, "--rate", "0.5", "--include", "features.*", "-o", tmp_path / "m2.safetensors", cwd=tmp_path),
        "holds 3 of the 4 prunable layers that --include 'features.*' select", "features.8.weight",
    )  # fmt: skip


def test_scored_subset_is_recorded_and_carried_through_prune_and_finetune(tmp_path, cli, tiny_model_path, biased_data):
    scored = cli("score", tiny_model_path, biased_data, "-g", "group", "--include", "features.*", "--exclude", "features.0.*",
                 "--max-batches", "1", "--workers", "0", "-q", cwd=tmp_path)  # fmt: skip
    assert scored.code == 0, scored
    importance = read_importance(tmp_path / "importance.safetensors")
    assert importance.metadata["include"] == ["features.*"] and importance.metadata["exclude"] == ["features.0.*"]
    assert set(importance.headers) == {"features.4.weight", "features.8.weight", "features.12.weight"}

    pruned = cli("prune", "--rate", "0.5", "-q", cwd=tmp_path)  # no flags: the recorded subset is meant
    assert pruned.code == 0, pruned
    masks = read_masks(tmp_path / "masks.safetensors")
    assert set(masks.tensors) == set(importance.headers) and masks.metadata["include"] == ["features.*"]
    tuned = cli("finetune", "--epochs", "1", "--workers", "0", "-q", cwd=tmp_path)
    assert tuned.code == 0, tuned

    # the same masks with one of their layers cut out no longer hold what they say they hold
    cut = {name: tensor for name, tensor in masks.tensors.items() if name != "features.8.weight"}
    write_artifact(tmp_path / "cut.safetensors", cut, masks.metadata)
    _one_line_error(
        cli("finetune", "pruned.pt", "--masks", "cut.safetensors", "--epochs", "1", "-o", "t2.pt", cwd=tmp_path),
        "cut.safetensors", "pruned.pt", "that its recorded --include 'features.*' --exclude 'features.0.*' select", "features.8.weight",
    )  # fmt: skip
    assert not (tmp_path / "t2.pt").exists()


def test_masks_of_another_architecture_are_refused_by_finetune(tmp_path, cli, tiny_model_path, biased_data):
    masks = {name: torch.ones(shape, dtype=torch.bool) for name, shape in TINY_LAYERS.items()}
    write_artifact(tmp_path / "m.safetensors", masks, {"format": "fairgrape.masks.v1", "arch": "resnet18"})
    result = cli("finetune", tiny_model_path, biased_data, "--masks", tmp_path / "m.safetensors", "--epochs", "1", cwd=tmp_path)
    _one_line_error(result, "m.safetensors", str(tiny_model_path), "made for a resnet18 model")
    assert not (tmp_path / "finetuned.pt").exists()


@pytest.mark.parametrize(
    "value,words",
    [(-1e-3, "negative values (lowest -0.001)"), (float("nan"), "NaN or infinite"), (float("inf"), "NaN or infinite")],
)
def test_impossible_importance_is_refused_naming_the_layer(tmp_path, cli, tiny_model_path, value, words):
    _importance(tmp_path / "importance.safetensors", TINY_LAYERS, fill={"features.8.weight": (17, value)})
    result = cli("prune", tiny_model_path, "--rate", "0.5", "-q", cwd=tmp_path)  # (read lazily: checked as read)
    line = _one_line_error(result, "importance.safetensors", "features.8.weight", words)
    assert "features.4.weight" not in line
    _nothing_written(tmp_path)


def test_what_belongs_is_not_refused(tmp_path, cli, tiny_model_path, biased_data):
    """A plain state dict with --arch, the demo model's old module name, TorchScript."""
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(tiny_model_path, weights_only=True)["state_dict"], plain)
    scored = cli("score", plain, biased_data, "-g", "group", "--arch", TINY_ARCH, "--max-batches", "1", "--workers", "0", "-q", cwd=tmp_path)
    assert scored.code == 0, scored
    assert cli("prune", plain, "--arch", TINY_ARCH, "--rate", "0.5", "-q", cwd=tmp_path).code == 0
    assert cli("prune", plain, "--rate", "0.5", "-q", "-o", "m2.safetensors", cwd=tmp_path).code == 0  # recorded arch

    renamed = _importance(tmp_path / "old.safetensors", TINY_LAYERS, arch="fairgrape_cli.synthetic:TinyCNN")
    result = cli("prune", tiny_model_path, "--importance", renamed, "--rate", "0.5", "-q", "-o", "m3.safetensors", cwd=tmp_path)
    assert result.code == 0, result

    scripted = tmp_path / "scripted.pt"
    model = TinyCNN(2)
    model.load_state_dict(torch.load(tiny_model_path, weights_only=True)["state_dict"])
    torch.jit.save(torch.jit.script(model.eval()), str(scripted))
    result = cli("prune", scripted, "--importance", renamed, "--rate", "0.5", "-q", "-o", "m4.safetensors", cwd=tmp_path)
    assert result.code == 0, result


def test_the_masks_a_checkpoint_names_follow_one_policy(tmp_path, tiny_model_path, caplog):
    """Present: that file, for every stage. Gone: one warning naming both files, then each stage
    goes on as for a checkpoint that names none (score scores unmasked, prune removes nothing
    earlier, report shows no pruning settings, export records none)."""
    import logging

    from fairgrape_cli import stages
    from fairgrape_cli.io.checkpoints import load_checkpoint, masks_named_in, named_masks

    stages.prune(rate=0.5, model=stages.ModelSource(tiny_model_path), method="magnitude",
                 output=tmp_path / "masks.safetensors")  # fmt: skip
    pruned = tmp_path / "pruned.pt"
    assert named_masks(load_checkpoint(pruned)) == masks_named_in(pruned) == tmp_path / "masks.safetensors"
    assert masks_named_in(tiny_model_path) is None and masks_named_in(tmp_path / "absent.pt") is None
    (tmp_path / "masks.safetensors").unlink()
    logger = logging.getLogger("fairgrape")
    logger.addHandler(caplog.handler)  # (the CLI's logging set-up stops it propagating)
    try:
        assert named_masks(load_checkpoint(pruned)) is None and masks_named_in(pruned) is None
    finally:
        logger.removeHandler(caplog.handler)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("pruned.pt names masks" in w and "no longer exist" in w for w in warnings)
    summary = stages.prune(rate=0.7, model=stages.ModelSource(pruned), method="magnitude",
                           output=tmp_path / "again.safetensors", model_output=tmp_path / "again.pt")  # fmt: skip
    assert summary.density == pytest.approx(0.3, abs=0.01)  # nothing stayed removed: no masks were found

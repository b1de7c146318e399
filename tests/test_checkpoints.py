"""Checkpoint formats in and out; code in a checkpoint never runs without --trust-checkpoint."""

from __future__ import annotations

import os

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from fairgrape_cli.errors import InputError
from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN
from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters, save_checkpoint


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_native_checkpoint(resnet_path):
    checkpoint = load_checkpoint(resnet_path)
    assert checkpoint.kind == "native" and checkpoint.arch == "resnet18"
    assert checkpoint.classes == ["no", "yes"] and checkpoint.num_classes == 2 and checkpoint.image_size == 32
    assert not checkpoint.model.training


def test_plain_state_dict_needs_arch_and_reads_class_count_from_head(tmp_path):
    model = torchvision.models.resnet18(num_classes=3)
    path = tmp_path / "plain.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(InputError, match="--arch"):
        load_checkpoint(path)
    checkpoint = load_checkpoint(path, arch="resnet18")
    assert checkpoint.num_classes == 3 and checkpoint.classes is None
    assert _same_weights(checkpoint.model, model)


def test_data_parallel_prefix_and_safetensors_state_dict(tmp_path):
    model = TinyCNN(num_classes=4)
    path = tmp_path / "plain.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path))
    checkpoint = load_checkpoint(path, arch=TINY_ARCH)
    assert checkpoint.num_classes == 4 and _same_weights(checkpoint.model, model)


def test_wrong_arch_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(TinyCNN().state_dict(), path)
    with pytest.raises(InputError, match="does not fit architecture resnet18"):
        load_checkpoint(path, arch="resnet18")
    with pytest.raises(InputError, match="unknown architecture"):
        load_checkpoint(path, arch="resnet_does_not_exist")


def test_torchscript(tmp_path):
    model = TinyCNN(num_classes=2).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    checkpoint = load_checkpoint(path)
    assert checkpoint.kind == "torchscript" and checkpoint.num_classes == 2
    names = list(prunable_parameters(checkpoint.model))
    assert names == list(prunable_parameters(model))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(checkpoint.model(x), model(x))
    # written back as TorchScript, with our metadata alongside
    out = tmp_path / "out.pt"
    save_checkpoint(out, checkpoint.model, like=checkpoint, classes=["a", "b"], provenance={"stage": "prune"})
    again = load_checkpoint(out)
    assert again.kind == "torchscript" and again.classes == ["a", "b"] and again.provenance == {"stage": "prune"}


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['FAIRGRAPE_TEST_MARKER']}",))


def test_malicious_pickle_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("FAIRGRAPE_TEST_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "arch": _Payload()}, path)
    with pytest.raises(InputError, match="pickled Python object.*--trust-checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickled_module_only_with_trust(tmp_path):
    model = TinyCNN(num_classes=2)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(InputError, match="TinyCNN.*--trust-checkpoint.*state_dict"):
        load_checkpoint(path)
    checkpoint = load_checkpoint(path, trust_checkpoint=True)
    assert checkpoint.kind == "module" and _same_weights(checkpoint.model, model)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_files_are_named(tmp_path, suffix):
    model = TinyCNN()
    path = tmp_path / f"model{suffix}"
    if suffix == ".pt":
        torch.save({"arch": TINY_ARCH, "state_dict": model.state_dict()}, path)
    else:
        save_file(model.state_dict(), str(path), metadata={"arch": TINY_ARCH})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=f"cannot read {path}"):
        load_checkpoint(path)


def test_written_checkpoint_loads_into_plain_torchvision_model(tmp_path, resnet_path):
    checkpoint = load_checkpoint(resnet_path)
    for suffix in (".pt", ".safetensors"):
        out = tmp_path / f"copy{suffix}"
        save_checkpoint(out, checkpoint.model, like=checkpoint, classes=None, provenance={"stage": "x"})
        plain = torchvision.models.resnet18(num_classes=2)
        if suffix == ".pt":
            state = torch.load(out, weights_only=True)["state_dict"]
        else:
            from safetensors.torch import load_file

            state = load_file(str(out))
        plain.load_state_dict(state)
        assert _same_weights(plain, checkpoint.model)
        again = load_checkpoint(out)
        assert again.arch == "resnet18" and again.classes == ["no", "yes"] and again.image_size == 32


def test_prunable_layers_and_globs():
    model = torchvision.models.resnet18(num_classes=2)
    names = list(prunable_parameters(model))
    assert names[0] == "conv1.weight" and names[-1] == "fc.weight" and len(names) == 21
    assert "layer1.0.conv1.weight" in names and not any("bn" in n for n in names)
    only = prunable_parameters(model, include=["layer4.*"], exclude=["*downsample*"])
    assert list(only) == [n for n in names if n.startswith("layer4.") and "downsample" not in n]
    with pytest.raises(InputError, match="matches no prunable layer"):
        prunable_parameters(model, include=["nothing.*"])


def test_callable_arch_must_be_a_model_factory(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(TinyCNN().state_dict(), path)
    with pytest.raises(InputError, match="neither an nn.Module class nor a function"):
        load_checkpoint(path, arch="os:system")


def test_checkpoints_naming_the_synthetic_models_old_module_still_load(tmp_path):
    """Before the layout of issue 15 the demo's models lived in fairgrape_cli.synthetic."""
    path = tmp_path / "old.pt"
    torch.save({"arch": "fairgrape_cli.synthetic:TinyCNN", "num_classes": 2, "state_dict": TinyCNN(2).state_dict()}, path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, TinyCNN)
    assert loaded.arch == TINY_ARCH  # written back under the present name

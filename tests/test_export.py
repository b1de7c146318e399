"""fairgrape export: sparse files round-trip exactly and read as checkpoints, TorchScript reloads,
ONNX matches in onnxruntime, failed checks leave nothing behind, bad input exits 2 in one line."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from safetensors import safe_open

from fairgrape_cli import stages
from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters
from fairgrape_cli.io.sparse import MASK_SUFFIX, VALUES_SUFFIX
from fairgrape_cli.stages.export import FORMATS, Check, choose_format

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, tiny_model_path) -> Path:
    """A folder with masks.safetensors and pruned.pt: the tiny CNN pruned 70% by magnitude."""
    folder = tmp_path_factory.mktemp("pruned")
    stages.prune(
        rate=0.7, model=stages.ModelSource(tiny_model_path), method="magnitude",
        output=folder / "masks.safetensors",
    )  # fmt: skip
    return folder


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).model.state_dict()


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().view(torch.int32) if tensor.dtype == torch.float32 else tensor


def _packed_masks(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="pt") as handle:
        layers = json.loads(handle.metadata()["sparse_layers"])
        return {
            name: np.unpackbits(
                handle.get_tensor(name + MASK_SUFFIX).numpy(), count=int(np.prod(layer["shape"]))
            )
            .astype(bool)
            .reshape(layer["shape"])
            for name, layer in layers.items()
        }


def test_sparse_round_trip_is_bit_exact_and_recovers_the_masks(pruned, cli):
    out = pruned / "export" / "model.safetensors"
    result = cli("export", pruned / "pruned.pt", "-o", out)
    assert result.code == 0, result
    assert "bit-exact" in result.err and f"of the input checkpoint {pruned / 'pruned.pt'}" in result.err

    loaded, dense = load_checkpoint(out), load_checkpoint(pruned / "pruned.pt")
    assert loaded.kind == "sparse" and loaded.arch == dense.arch and loaded.classes == dense.classes
    assert loaded.image_size == dense.image_size
    original, decoded = dense.model.state_dict(), loaded.model.state_dict()
    assert decoded.keys() == original.keys()
    for name, tensor in original.items():
        assert decoded[name].dtype == tensor.dtype and decoded[name].shape == tensor.shape
        expected = torch.where(tensor == 0, torch.zeros_like(tensor), tensor)  # -0.0 comes back as +0.0
        assert torch.equal(_bits(decoded[name]), _bits(expected)), name

    masks = load_masks(pruned / "masks.safetensors")
    recovered = _packed_masks(out)
    assert recovered.keys() == masks.keys()  # every pruned layer, and only those, is stored sparse
    for name, mask in masks.items():
        assert np.array_equal(recovered[name], mask.numpy()), name
    # the export still names the masks (re-anchored), so report and prune find them
    provenance = loaded.provenance
    assert provenance["stage"] == "export" and provenance["source_sha256"] == dense.sha256
    assert (out.parent / provenance["masks"]).resolve() == (pruned / "masks.safetensors").resolve()


def load_masks(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def test_float16_values_are_the_weights_rounded_to_float16(pruned, cli):
    exact, half = pruned / "f32.safetensors", pruned / "f16.safetensors"
    assert cli("export", pruned / "pruned.pt", "-o", exact, "--quiet").code == 0
    result = cli("export", pruned / "pruned.pt", "-o", half, "--values", "float16")
    assert result.code == 0, result
    original, decoded = _weights(pruned / "pruned.pt"), _weights(half)
    layers = set(_packed_masks(half))
    for name, tensor in original.items():
        expected = tensor.half().float() if name in layers else tensor
        assert torch.equal(decoded[name], expected), name
    assert any(not torch.equal(decoded[name], original[name]) for name in layers)  # really rounded
    assert half.stat().st_size < exact.stat().st_size


def test_the_readme_snippet_rebuilds_the_state_dict(pruned, cli, tmp_path, monkeypatch):
    """The README's plain-Python reader, run exactly as printed, gives the checkpoint's weights."""
    blocks = re.findall(
        r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL
    )
    (snippet,) = [block for block in blocks if "sparse_layers" in block]
    imported = set(re.findall(r"^(?:from (\S+) import|import (\S+))", snippet, re.MULTILINE))
    assert {name for pair in imported for name in pair if name} == {"json", "torch", "safetensors"}
    assert len(snippet.strip().splitlines()) <= 14
    file_name = re.search(r'safe_open\("([^"]+)"', snippet).group(1)
    assert cli("export", pruned / "pruned.pt", "-o", tmp_path / file_name, "--quiet").code == 0

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    state_dict, original = namespace["state_dict"], _weights(pruned / "pruned.pt")
    assert state_dict.keys() == original.keys()
    for name, tensor in original.items():
        assert tensor.dtype == state_dict[name].dtype and torch.equal(state_dict[name], tensor), name
    model = load_checkpoint(pruned / "pruned.pt").model
    model.load_state_dict(state_dict)  # loads into the plain architecture


def test_report_on_the_sparse_file_gives_the_dense_checkpoints_accuracies(pruned, cli, biased_data, tmp_path):
    sparse = tmp_path / "pruned.sparse.safetensors"
    assert cli("export", pruned / "pruned.pt", "-o", sparse, "--quiet").code == 0
    reports = []
    for model in (pruned / "pruned.pt", sparse):
        json_path = tmp_path / f"{model.name}.json"
        result = cli("report", model, biased_data, "--groups", "group", "--json", json_path, "--quiet",
                     "--bootstrap", "0", "--batch-size", "16")  # fmt: skip
        assert result.code == 0, result
        reports.append(json.loads(json_path.read_text()))
    dense, from_sparse = reports
    assert from_sparse["groups"] == dense["groups"] and from_sparse["overall"] == dense["overall"]
    assert from_sparse["density"] == dense["density"] < 0.5
    assert from_sparse["pruning"] == dense["pruning"] and dense["pruning"]["method"] == "magnitude"


def test_resnet18_at_density_0_1_is_under_15_percent_of_the_dense_file(resnet_path, tmp_path, cli):
    checkpoint = torch.load(resnet_path, weights_only=True)
    model = torchvision.models.resnet18(num_classes=2)
    model.load_state_dict(checkpoint["state_dict"])
    with torch.no_grad():
        for weight in prunable_parameters(model).values():  # keep the largest 10% of each layer
            threshold = weight.abs().flatten().kthvalue(int(0.9 * weight.numel())).values
            weight.mul_(weight.abs() > threshold)
    dense = tmp_path / "pruned.pt"
    torch.save({**checkpoint, "state_dict": model.state_dict()}, dense)
    out = tmp_path / "pruned.safetensors"
    result = cli("export", dense, "-o", out, "--batch-size", "1")
    assert result.code == 0, result
    assert out.stat().st_size <= 0.15 * dense.stat().st_size
    decoded = _weights(out)
    assert all(torch.equal(decoded[name], tensor) for name, tensor in model.state_dict().items())


def test_torchscript_export_reloads_with_its_metadata(pruned, cli, tmp_path):
    out = tmp_path / "model.torchscript"
    result = cli("export", pruned / "pruned.pt", "-o", out)
    assert result.code == 0, result
    assert "TorchScript logits match" in result.err
    loaded, source = load_checkpoint(out), load_checkpoint(pruned / "pruned.pt")
    assert loaded.kind == "torchscript" and loaded.classes == source.classes
    assert loaded.image_size == source.image_size and loaded.provenance["format"] == "torchscript"
    batch = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(batch), source.model(batch), atol=1e-5)


def test_onnx_export_gives_the_checkpoints_logits(pruned, cli, tmp_path, biased_data):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    result = cli("export", pruned / "pruned.pt", "-o", out, "--data", biased_data)
    assert result.code == 0, result
    metadata = {entry.key: entry.value for entry in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["classes"]) == ["no", "yes"] and metadata["image_size"] == "32"
    try:
        import onnxruntime
    except ImportError:  # only this part needs it
        assert "check skipped" in result.err
        return
    assert "onnxruntime logits match" in result.err and f"images of {biased_data}" in result.err
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    batch = torch.randn(3, 3, 32, 32)  # another batch size than the export's: the axis is dynamic
    (logits,) = session.run(["logits"], {"images": batch.numpy()})
    with torch.no_grad():
        expected = load_checkpoint(pruned / "pruned.pt").model(batch)
    assert np.allclose(logits, expected.numpy(), atol=1e-4)


def test_without_onnxruntime_the_onnx_check_is_skipped_and_said(pruned, cli, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    result = cli("export", pruned / "pruned.pt", "-o", tmp_path / "model.onnx")
    assert result.code == 0, result
    assert "check skipped: onnxruntime is not installed" in result.err
    assert (tmp_path / "model.onnx").is_file()


def test_a_failed_check_exits_1_and_leaves_no_file(pruned, cli, tmp_path, monkeypatch):
    broken = replace(FORMATS["torchscript"], check=lambda job, path: Check(False, "logits differ"))
    monkeypatch.setitem(FORMATS, "torchscript", broken)
    result = cli("export", pruned / "pruned.pt", "-o", tmp_path / "model.torchscript")
    assert result.code == 1, result
    assert "not written: logits differ" in result.err
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def _boom(*args, **kwargs):
    raise RuntimeError("cannot handle this model\nsecond line of the tracer's story")


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_exporter_or_onnxruntime_that_fails_exits_1_in_one_line(fmt, pruned, cli, tmp_path, monkeypatch):
    """A model torch.jit.trace cannot trace, a graph onnxruntime rejects: exit 1 naming the cause."""
    if fmt == "torchscript":
        monkeypatch.setattr(torch.jit, "trace", _boom)
        cause = "torch.jit.trace failed (cannot handle this model)"
    else:
        pytest.importorskip("onnx")
        monkeypatch.setitem(sys.modules, "onnxruntime", SimpleNamespace(InferenceSession=_boom))
        cause = "onnxruntime cannot run the exported graph (cannot handle this model)"
    result = cli("export", pruned / "pruned.pt", "-o", tmp_path / f"model.{fmt}")
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and cause in lines[0] and "Traceback" not in result.err, result
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_the_suffix_picks_the_format():
    assert choose_format(None, Path("a.safetensors")) == "sparse"
    assert choose_format(None, Path("a.onnx")) == "onnx"
    assert choose_format(None, Path("a.torchscript")) == "torchscript"
    assert choose_format("torchscript", Path("a.pt")) == "torchscript"
    assert choose_format(None, None) == "sparse"


@pytest.mark.parametrize(
    "case, flag",
    [
        ("not-a-checkpoint", "notes.pt"),
        ("unknown-format", "--format"),
        ("unknown-suffix", "--format"),
        ("ambiguous-suffix", "--format"),
        ("suffix-against-format", "--format"),
        ("unwritable", "cannot write"),
        ("directory", "is a directory"),
        ("over-the-input", "would overwrite"),
        ("values-not-sparse", "--values"),
        ("bad-values", "--values"),
        ("labels-without-data", "pass --data"),
    ],
)
def test_bad_input_exits_2_with_one_line(case, flag, pruned, cli, tmp_path):
    model = pruned / "pruned.pt"
    (tmp_path / "notes.pt").write_text("not a model")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "folder.safetensors").mkdir()
    args = {
        "not-a-checkpoint": [tmp_path / "notes.pt", "-o", tmp_path / "x.safetensors"],
        "unknown-format": [model, "-o", tmp_path / "x.zip", "--format", "zip"],
        "unknown-suffix": [model, "-o", tmp_path / "x.bin"],
        "ambiguous-suffix": [model, "-o", tmp_path / "x.pt"],
        "suffix-against-format": [model, "-o", tmp_path / "x.onnx", "--format", "sparse"],
        "unwritable": [model, "-o", tmp_path / "a-file" / "x.safetensors"],
        "directory": [model, "-o", tmp_path / "folder.safetensors"],
        "over-the-input": [model, "-o", model, "--format", "torchscript"],
        "values-not-sparse": [model, "-o", tmp_path / "x.onnx", "--values", "float16"],
        "bad-values": [model, "-o", tmp_path / "x.safetensors", "--values", "int8"],
        "labels-without-data": [model, "-o", tmp_path / "x.safetensors", "--labels", tmp_path / "a-file"],
    }[case]
    before = sorted(tmp_path.iterdir())
    result = cli("export", *args)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and flag in lines[0], result
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_a_broken_sparse_file_is_refused_with_its_name(pruned, cli, tmp_path, biased_data):
    out = tmp_path / "model.safetensors"
    assert cli("export", pruned / "pruned.pt", "-o", out, "--quiet").code == 0
    with safe_open(str(out), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    name = next(key for key in tensors if key.endswith(VALUES_SUFFIX))
    tensors[name] = tensors[name][:-1]  # one value short of what the mask keeps
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata=metadata)
    result = cli("report", tmp_path / "broken.safetensors", biased_data, "--groups", "group")
    assert result.code == 2 and "broken.safetensors" in result.err and "values are stored" in result.err

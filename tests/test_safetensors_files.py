"""Our safetensors writer: readable by the safetensors library, and the same bytes for the same contents."""

from __future__ import annotations

import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fairgrape_cli.io.files import save_safetensors

WRITE = """
import sys, torch
from fairgrape_cli.io.artifacts import write_artifact
generator = torch.Generator().manual_seed(0)
tensors = {f"layer{i}.weight": torch.rand(3, 4, generator=generator) > 0.5 for i in range(12)}
write_artifact(sys.argv[1], tensors, {f"key{i}": f"value {i}" for i in range(12)} | {"list": [1, 2]})
"""


def test_every_dtype_round_trips(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "bool": torch.rand(2, 5, generator=generator) > 0.5,
        "uint8": torch.arange(7, dtype=torch.uint8),
        "int64": torch.arange(6).reshape(2, 3).t(),  # not contiguous
        "float16": torch.randn(4, generator=generator).half(),
        "bfloat16": torch.randn(3, 3, generator=generator).bfloat16(),
        "float32": torch.randn(2, 2, 2, generator=generator),
        "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 3),
    }
    path = tmp_path / "all.safetensors"
    save_safetensors(tensors, path, {"format": "test", "b": "2"})
    back = load_file(path)
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"format": "test", "b": "2"}
    assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0


def test_the_same_contents_give_the_same_bytes_in_every_process(tmp_path):
    """safetensors' own writer orders its header by hash, so two processes wrote different bytes."""
    paths = [tmp_path / "first.safetensors", tmp_path / "second.safetensors"]
    for path in paths:
        subprocess.run([sys.executable, "-c", WRITE, str(path)], check=True)
    assert paths[0].read_bytes() == paths[1].read_bytes()

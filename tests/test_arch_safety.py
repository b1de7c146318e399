"""Which architectures a file may make fairgrape import (issue 25), and a user's own module next
to their files (issue 28 item 7).

Importing a module runs its code. An ``arch`` read from a checkpoint or an artifact may name a
torchvision model, ``timm:NAME``, ``hf:CLASS`` or fairgrape's own models; a ``module:callable``
is imported only when the user passes it (``--arch``) or vouches for the file
(``--trust-checkpoint``). The proof runs in fresh processes: a module whose import leaves a
marker file is named by a checkpoint, and the marker must not appear.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.artifacts import write_artifact
from fairgrape_cli.io.checkpoints import load_checkpoint

FAIRGRAPE = Path(sys.executable).with_name("fairgrape")  # the console script, as a user runs it

MODULE = """
import pathlib
from torch import nn
pathlib.Path({marker!r}).write_text("imported")

class Net(nn.Module):
    def __init__(self, num_classes=2):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
"""


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path, Path]:
    """(folder holding module sneaky_arch_mod.py, the marker its import writes, a checkpoint
    naming sneaky_arch_mod:Net). The module is importable through PYTHONPATH."""
    modules = tmp_path / "site"
    modules.mkdir()
    marker = tmp_path / "IMPORTED"
    (modules / "sneaky_arch_mod.py").write_text(MODULE.format(marker=str(marker)), encoding="utf-8")
    sys.path.insert(0, str(modules))
    try:
        import sneaky_arch_mod

        state = sneaky_arch_mod.Net().state_dict()
    finally:
        sys.path.remove(str(modules))
        sys.modules.pop("sneaky_arch_mod", None)
    marker.unlink()
    checkpoint = tmp_path / "sent.pt"
    torch.save({"arch": "sneaky_arch_mod:Net", "num_classes": 2, "classes": ["no", "yes"], "image_size": 32,
                "state_dict": state}, checkpoint)  # fmt: skip
    return modules, marker, checkpoint


def _fairgrape(*args, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath) if pythonpath else ""}
    return subprocess.run([str(FAIRGRAPE), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_checkpoint_naming_a_module_is_refused_without_importing_it(planted, biased_data, tmp_path, cli):
    modules, marker, checkpoint = planted
    refused = _fairgrape("score", checkpoint, biased_data, "--groups", "group", cwd=tmp_path, pythonpath=modules)
    assert refused.returncode == 2, refused.stderr
    assert "sneaky_arch_mod:Net" in refused.stderr and "--arch sneaky_arch_mod:Net" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not marker.exists()  # the module's code never ran
    assert not (tmp_path / "importance.safetensors").exists()

    # the same module is importable: passed by the user, it runs (so the refusal above was the
    # rule); in this process, which imports the module for the first time each time
    sys.path.insert(0, str(modules))
    try:
        for vouching in (["--arch", "sneaky_arch_mod:Net"], ["--trust-checkpoint"]):
            sys.modules.pop("sneaky_arch_mod", None)
            ran = cli("report", checkpoint, biased_data, "--groups", "group", "--bootstrap", "0", *vouching, "-q")
            assert ran.code == 0, (vouching, ran.err)
            assert marker.exists(), vouching
            marker.unlink()
    finally:
        sys.path.remove(str(modules))
        sys.modules.pop("sneaky_arch_mod", None)


def test_in_process_the_module_is_never_imported(planted):
    modules, marker, checkpoint = planted
    sys.path.insert(0, str(modules))
    try:
        with pytest.raises(InputError, match="imports a module only when you name it"):
            load_checkpoint(checkpoint)
        assert "sneaky_arch_mod" not in sys.modules and not marker.exists()
    finally:
        sys.path.remove(str(modules))
        sys.modules.pop("sneaky_arch_mod", None)


def test_an_artifact_naming_a_module_is_refused_too(planted, cli, tmp_path):
    """prune reads the model and its architecture from the importance file: the same rule."""
    modules, marker, checkpoint = planted
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["state_dict"], plain)
    weights = torch.load(plain, weights_only=True)
    importance = {name: torch.rand(2, *weights[name].shape) for name in ("conv.weight", "fc.weight")}
    write_artifact(tmp_path / "importance.safetensors", importance, {
        "format": "fairgrape.importance.v1", "groups": ["a", "b"], "attribute": "group", "model": "plain.pt",
        "arch": "sneaky_arch_mod:Net",
    })  # fmt: skip
    sys.path.insert(0, str(modules))
    try:
        result = cli("prune", "--rate", "0.5", cwd=tmp_path)
        assert result.code == 2 and "sneaky_arch_mod:Net" in result.err, result
        assert "sneaky_arch_mod" not in sys.modules and not marker.exists()
    finally:
        sys.path.remove(str(modules))
        sys.modules.pop("sneaky_arch_mod", None)


def test_what_a_file_may_name_loads_without_flags(tmp_path, tiny_model_path):
    """torchvision, timm, Hugging Face and fairgrape's own models need no --arch."""
    import torchvision

    path = tmp_path / "resnet.pt"
    torch.save({"arch": "resnet18", "num_classes": 2, "state_dict": torchvision.models.resnet18(num_classes=2).state_dict()}, path)
    assert load_checkpoint(path).arch == "resnet18"
    assert load_checkpoint(tiny_model_path).arch.startswith("fairgrape_cli.flows.synthetic:")
    pytest.importorskip("timm")
    from zoo_models import timm_model

    path = tmp_path / "timm.pt"
    torch.save({"arch": "timm:test_resnet", "num_classes": 2, "state_dict": timm_model("test_resnet").state_dict()}, path)
    assert load_checkpoint(path).arch == "timm:test_resnet"


@pytest.mark.parametrize(
    "arch, arch_args, message",
    [
        ("hf:BertModel", {"hidden_size": 8}, "not one of transformers' image classifiers"),
        ("timm:test_resnet", {"checkpoint_path": "/etc/passwd"}, "may not set checkpoint_path"),
        ("timm:test_resnet", {"pretrained_cfg_overlay": {"url": "http://example.com"}}, "may not set pretrained_cfg_overlay"),
        ("timm:no_such_model_anywhere", None, "not in timm's registry"),
    ],
)
def test_library_architectures_a_file_names_are_checked(arch, arch_args, message, tmp_path):
    pytest.importorskip("timm")
    pytest.importorskip("transformers")
    path = tmp_path / "model.pt"
    torch.save({"arch": arch, "num_classes": 2, "arch_args": arch_args, "state_dict": {"fc.weight": torch.zeros(2, 4)}}, path)
    with pytest.raises(InputError, match=message):
        load_checkpoint(path)


def test_a_hf_folder_naming_code_shipped_with_it_is_refused(tmp_path):
    pytest.importorskip("transformers")
    import json

    from zoo_models import hf_vit_folder

    folder = hf_vit_folder(tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["MyCustomViT"], auto_map={"AutoModelForImageClassification": "modeling_evil.MyCustomViT"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('shipped code ran')\n")
    with pytest.raises(InputError, match="never runs code shipped with a model"):
        load_checkpoint(folder)


def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, cli, biased_data):
    path = tmp_path / "timm.pt"
    torch.save({"arch": "timm:test_resnet", "num_classes": 2, "state_dict": {"fc.weight": torch.zeros(2, 4)}}, path)
    monkeypatch.setitem(sys.modules, "timm", None)  # import fails as if not installed
    result = cli("report", path, biased_data, "--groups", "group", cwd=tmp_path)
    assert result.code == 2 and "pip install 'fairgrape[timm]'" in result.err and "Traceback" not in result.err
    monkeypatch.setitem(sys.modules, "transformers", None)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder/config.json").write_text('{"architectures": ["ViTForImageClassification"]}')
    result = cli("report", tmp_path / "folder", biased_data, "--groups", "group", cwd=tmp_path)
    assert result.code == 2 and "pip install 'fairgrape[hf]'" in result.err


# ------------------------------------------------------------- issue 28 item 7: the user's module


def test_a_module_next_to_the_users_files_is_found(planted, biased_data, tmp_path, cli):
    """``--arch mynet:Net`` with mynet.py in the current folder works without PYTHONPATH (the
    console script's sys.path starts with its own folder, not the current one)."""
    modules, marker, checkpoint = planted
    work = tmp_path / "work"
    work.mkdir()
    (work / "mynet.py").write_text((modules / "sneaky_arch_mod.py").read_text(), encoding="utf-8")
    plain = work / "model.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["state_dict"], plain)
    result = _fairgrape("score", "model.pt", biased_data, "--groups", "group", "--arch", "mynet:Net", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "importance.safetensors").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = cli("score", plain, biased_data, "--groups", "group", "--arch", "mynet:Net", cwd=elsewhere)
    assert missing.code == 2 and "mynet" not in sys.modules
    assert "No module named 'mynet'" in missing.err and "current folder" in missing.err
    assert "PYTHONPATH" in missing.err

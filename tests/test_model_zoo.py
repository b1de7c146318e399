"""timm and Hugging Face image classifiers through every command (issue 25).

Three models a user would bring, none written by fairgrape: timm's training checkpoint of a
convnet (its train.py's format, no flags needed), a plain state dict of a timm ViT trained at
32 px (``--arch timm:test_vit --arch-args img_size=32``), and a Hugging Face ViT folder saved
with ``save_pretrained``. Each goes through score -> prune -> finetune (every objective) ->
report -> export to ONNX, whose logits must match the library's own forward; and through `run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo_models as zoo
from zoo_models import hf_vit_folder, timm_state_dict_file, timm_training_checkpoint

pytest.importorskip("timm")
pytest.importorskip("transformers")

from fairgrape_cli.io.checkpoints import load_checkpoint  # noqa: E402
from fairgrape_cli.method.objectives import OBJECTIVES  # noqa: E402

VIT_FLAGS = ["--arch", f"timm:{zoo.TIMM_VIT}", "--arch-args", "img_size=32"]


@pytest.fixture(scope="module")
def zoo_models(tmp_path_factory) -> dict[str, tuple[Path, list[str]]]:
    """name -> (MODEL, the flags a user passes with it)."""
    folder = tmp_path_factory.mktemp("zoo")
    return {
        "timm-convnet": (timm_training_checkpoint(folder / "checkpoint-3.pth.tar"), []),
        "timm-vit": (timm_state_dict_file(folder / "vit_state.pt"), VIT_FLAGS),
        "hf-vit": (hf_vit_folder(folder / "hf-vit"), []),
    }


def test_what_each_model_says_about_itself_is_read(zoo_models):
    convnet = load_checkpoint(zoo_models["timm-convnet"][0])
    assert convnet.arch == f"timm:{zoo.TIMM_CONVNET}" and convnet.image_size == 32  # from its args
    assert convnet.mean == (0.5, 0.5, 0.5)  # timm's pretrained config for test_resnet
    vit = load_checkpoint(zoo_models["timm-vit"][0], arch=f"timm:{zoo.TIMM_VIT}", arch_args={"img_size": 32})
    assert vit.arch_args == {"img_size": 32} and vit.image_size == 32
    hf = load_checkpoint(zoo_models["hf-vit"][0])
    assert hf.kind == "hf" and hf.arch == "hf:ViTForImageClassification"
    assert hf.classes == ["no", "yes"] and hf.image_size == 32 and hf.mean == (0.5, 0.5, 0.5)
    assert isinstance(hf.model(torch.zeros(2, 3, 32, 32)), torch.Tensor)  # the logits, not an output object


# every objective on the fastest model in the default suite; on all three with -m slow
EVERY_OBJECTIVE = ("erm", *(name for name in OBJECTIVES if name != "erm"))  # constrained: with its teacher


@pytest.mark.parametrize(
    "name, objectives",
    [
        pytest.param("timm-convnet", ("erm",), id="timm-convnet"),
        pytest.param("timm-vit", ("erm",), id="timm-vit"),
        pytest.param("hf-vit", EVERY_OBJECTIVE, id="hf-vit"),
        pytest.param("timm-convnet", EVERY_OBJECTIVE, id="timm-convnet-objectives", marks=pytest.mark.slow),
        pytest.param("timm-vit", EVERY_OBJECTIVE, id="timm-vit-objectives", marks=pytest.mark.slow),
    ],
)
def test_every_command_on_a_library_model(name, objectives, zoo_models, biased_data, cli, tmp_path):
    pytest.importorskip("onnxruntime")
    model, flags = zoo_models[name]
    hf = name == "hf-vit"

    assert cli("score", model, biased_data, "--groups", "group", "--batch-size", "16", *flags, cwd=tmp_path).code == 0
    result = cli("prune", "--rate", "0.5", cwd=tmp_path)  # the model and its architecture from the importance
    assert result.code == 0, result
    pruned = tmp_path / ("pruned" if hf else "pruned.pt")  # a Hugging Face model stays a folder
    assert pruned.exists() and (not hf or (pruned / "config.json").is_file())

    for objective in objectives[1:]:  # the teacher (constrained, distillation): the model the masks name
        distill = ["--distill-weight", "0.5"] if objective == "balanced" else []
        result = cli("finetune", "--epochs", "1", "--batch-size", "16", "--objective", objective, *distill,
                     "-o", f"ft-{objective}{'' if hf else '.pt'}", cwd=tmp_path)  # fmt: skip
        assert result.code == 0, (objective, result)
        assert (tmp_path / f"ft-{objective}{'' if hf else '.pt'}").exists()
    result = cli("finetune", "--epochs", "1", "--batch-size", "16", "--objective", objectives[0], cwd=tmp_path)
    assert result.code == 0, result
    finetuned = tmp_path / ("finetuned" if hf else "finetuned.pt")
    assert finetuned.exists()
    loaded = load_checkpoint(finetuned)
    weights = dict(loaded.model.named_parameters())
    masks = load_file(str(tmp_path / "masks.safetensors"))
    assert all(bool((weights[key][~mask] == 0).all()) for key, mask in masks.items())  # masks held

    baseline = ["--baseline", str(model)]
    result = cli("report", finetuned, biased_data, "--groups", "group", "--json", "report.json", "--bootstrap", "0",
                 *baseline, *flags, cwd=tmp_path)  # fmt: skip
    assert result.code == 0, result
    report = json.loads((tmp_path / "report.json").read_text())
    assert {group["group"] for group in report["groups"]} == {"majority", "minority"}
    assert 0.4 < report["density"] < 0.6

    result = cli("export", finetuned, "-o", "model.onnx", "--data", biased_data, cwd=tmp_path)
    assert result.code == 0, result
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    exported = _onnx_logits(tmp_path / "model.onnx", images)
    expected = _library_logits(name, finetuned, images)
    torch.testing.assert_close(exported, expected, rtol=1e-4, atol=1e-4)


def _onnx_logits(path: Path, images: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


@torch.no_grad()
def _library_logits(name: str, finetuned: Path, images: torch.Tensor) -> torch.Tensor:
    """The logits of the library's own model class, loaded the library's own way."""
    if name == "hf-vit":
        from transformers import ViTForImageClassification

        model = ViTForImageClassification.from_pretrained(str(finetuned), local_files_only=True).eval()
        return model(pixel_values=images).logits
    import timm

    saved = torch.load(finetuned, weights_only=True)
    model = timm.create_model(saved["arch"].removeprefix("timm:"), pretrained=False, num_classes=2,
                              **saved.get("arch_args", {})).eval()  # fmt: skip
    model.load_state_dict(saved["state_dict"])
    return model(images)


@pytest.mark.parametrize("name", [pytest.param("timm-vit", marks=pytest.mark.slow), "hf-vit"])
def test_run_prunes_heads_of_a_library_model(name, zoo_models, biased_data, cli, tmp_path):
    model, _ = zoo_models[name]
    arch = f"arch: timm:{zoo.TIMM_VIT}\narch_args: {{img_size: 32}}\n" if name == "timm-vit" else ""
    (tmp_path / "run.yaml").write_text(
        f"model: {model}\ndata: {biased_data}\ngroups: group\n{arch}method: fairgrape\nrate: 0.5\nkeep_per_iter: 0.5\n"
        "output: out\nprune: {granularity: channel}\nscore: {batch_size: 16}\n"
        "finetune: {epochs: 1, batch_size: 16}\nfinal_finetune: {epochs: 1, batch_size: 16}\n"
        "report: {bootstrap: 0}\n",
        encoding="utf-8",
    )
    result = cli("run", "run.yaml", "--quiet", cwd=tmp_path)
    assert result.code == 0, result
    final = load_checkpoint(tmp_path / "out/final.pt")  # its architecture recorded: no flags
    heads = [getattr(m, "num_heads", getattr(m, "num_attention_heads", None)) for m in final.model.modules()
             if type(m).__name__ in ("Attention", "ViTAttention")]  # fmt: skip
    dense = 2 if name == "timm-vit" else 4
    assert heads and all(count == dense // 2 for count in heads)
    again = cli("run", "run.yaml", "--quiet", cwd=tmp_path)  # resumes: nothing to redo
    assert again.code == 0, again


def test_a_vit_state_dict_built_at_another_size_says_which_size_to_pass(zoo_models, biased_data, cli, tmp_path):
    """A new user's first try: the architecture without its image size. The position embedding
    does not fit, and the message says the flag that makes it fit."""
    model, _ = zoo_models["timm-vit"]
    result = cli("score", model, biased_data, "--groups", "group", "--arch", f"timm:{zoo.TIMM_VIT}", cwd=tmp_path)
    assert result.code == 2 and "--arch-args img_size=32" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("suffix", [".torchscript", ".sparse.safetensors"])
def test_a_hf_folder_exports_to_the_other_formats_and_reads_back(suffix, zoo_models, biased_data, cli, tmp_path):
    model, _ = zoo_models["hf-vit"]
    result = cli("export", model, "-o", f"hf{suffix}", cwd=tmp_path)
    assert result.code == 0, result
    assert (tmp_path / f"hf{suffix}").is_file()  # a file, as the suffix says, not a folder
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(tmp_path / f"hf{suffix}").model(images),
                                   load_checkpoint(model).model(images), rtol=1e-5, atol=1e-5)  # fmt: skip

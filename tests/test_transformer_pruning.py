"""Structured pruning of transformers (issue 25): whole attention heads and MLP hidden units.

``--granularity channel`` on a ViT (timm's and Hugging Face's) removes heads, keeping the head
dimension, and MLP hidden units; the token width stays. The slim model is written with its
structure record (head counts included) and loads back without tracing. timm's CNNs prune
channels as torchvision's do.
"""

from __future__ import annotations

import pytest
import torch

import zoo_models as zoo
from zoo_models import hf_vit, hf_vit_folder, timm_model, timm_state_dict_file

pytest.importorskip("timm")
pytest.importorskip("transformers")

from fairgrape_cli.io import checkpoints as ckpt  # noqa: E402
from fairgrape_cli.method.channel_groups import ChannelGraph  # noqa: E402


def _graph(model: torch.nn.Module) -> ChannelGraph:
    return ChannelGraph(model, weights=ckpt.prunable_parameters(model), example_input=torch.zeros(1, 3, 32, 32))


def test_a_timm_vit_has_one_unit_per_head_and_per_mlp_hidden_unit():
    model = timm_model(zoo.TIMM_VIT, img_size=32)
    groups = {group.name: group for group in _graph(model).groups}
    assert set(groups) == {f"blocks.{i}.{layer}" for i in range(6) for layer in ("attn.qkv", "mlp.fc1")}
    heads = groups["blocks.0.attn.qkv"]
    assert heads.size == 2 and heads.unit_width == 3 * 32  # q, k and v of one head: 96 output rows
    assert groups["blocks.0.mlp.fc1"].size == 192 and groups["blocks.0.mlp.fc1"].unit_width == 1
    # the token width (patch embedding, position embedding, every residual) is no unit


@torch.no_grad()
def test_removing_a_head_is_exactly_the_model_without_that_head():
    """Removing head 1 of block 0 gives the logits of the dense model whose output projection
    ignores head 1 (its input columns zeroed): nothing else changed."""
    model = timm_model(zoo.TIMM_VIT, img_size=32)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    reference = timm_model(zoo.TIMM_VIT, img_size=32)
    reference.blocks[0].attn.proj.weight[:, 32:64] = 0
    expected = reference(images)

    graph = _graph(model)
    kept = {group.name: torch.ones(group.size, dtype=torch.bool) for group in graph.groups}
    kept["blocks.0.attn.qkv"] = torch.tensor([True, False])
    graph.remove(kept)
    attention = model.blocks[0].attn
    assert (attention.num_heads, attention.head_dim, attention.attn_dim) == (1, 32, 32)
    assert attention.qkv.out_features == 96 and attention.proj.in_features == 32
    assert model.blocks[1].attn.num_heads == 2  # the other blocks keep theirs
    torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["timm", "hf"])
def test_channel_pruning_a_vit_halves_heads_and_mlp_and_loads_back_without_tracing(
    kind, biased_data, cli, tmp_path, monkeypatch
):
    if kind == "timm":
        model, flags = timm_state_dict_file(tmp_path / "vit.pt"), ["--arch", f"timm:{zoo.TIMM_VIT}", "--arch-args", "img_size=32"]
    else:
        model, flags = hf_vit_folder(tmp_path / "hf-vit"), []
    assert cli("score", model, biased_data, "--groups", "group", "--batch-size", "32", *flags, cwd=tmp_path).code == 0
    result = cli("prune", "--rate", "0.5", "--granularity", "channel", cwd=tmp_path)
    assert result.code == 0, result
    slim_path = tmp_path / ("pruned.pt" if kind == "timm" else "pruned")

    import torch_pruning

    def no_tracing(*args, **kwargs):
        raise AssertionError("loading a slim model must not trace it")

    monkeypatch.setattr(torch_pruning.DependencyGraph, "build_dependency", no_tracing)
    slim = ckpt.load_checkpoint(slim_path)
    if kind == "timm":
        blocks = [(b.attn.num_heads, b.attn.head_dim, b.attn.qkv.out_features, b.mlp.fc1.out_features)
                  for b in slim.model.blocks]  # fmt: skip
        assert blocks == [(1, 32, 96, 96)] * 6
        assert slim.model.patch_embed.proj.out_channels == 64 and slim.model.pos_embed.shape[-1] == 64
    else:
        layers = [(layer.attention.num_attention_heads, layer.attention.head_dim, layer.attention.q_proj.out_features,
                   layer.mlp.fc1.out_features) for layer in slim.model.vit.layers]  # fmt: skip
        assert layers == [(2, 8, 16, 32)] * 2
        assert slim.model.config.hidden_size == 32 and slim.model.classifier.in_features == 32
        assert (slim_path / "fairgrape.json").is_file() and (slim_path / "preprocessor_config.json").is_file()
    images = torch.randn(2, 3, 32, 32)
    assert slim.model(images).shape == (2, 2)
    from fairgrape_cli.method.cost import model_cost

    dense = ckpt.dense_reference(slim.arch, 2, arch_args=slim.arch_args)
    # heads and MLP halved; the patch embedding and the token width are not units, and weigh
    # more in these tiny models than in a ViT at 224 px (benchmarks/vit_heads.py: about 50%)
    assert model_cost(slim.model, 32).flops <= 0.7 * model_cost(dense, 32).flops
    monkeypatch.undo()
    # the slim model goes on through the other commands
    assert cli("finetune", "--epochs", "1", "--batch-size", "16", cwd=tmp_path).code == 0
    finetuned = tmp_path / ("finetuned.pt" if kind == "timm" else "finetuned")
    result = cli("report", finetuned, biased_data, "--groups", "group", "--bootstrap", "0", cwd=tmp_path)
    assert result.code == 0, result
    assert "FLOPs" in result.err or "FLOPs" in result.out


@pytest.mark.parametrize("name", ["test_resnet", "test_convnext"])
def test_a_timm_cnn_prunes_channels_and_its_slim_checkpoint_loads_back(name, tmp_path):
    model = timm_model(name)
    path = tmp_path / "cnn.pt"
    torch.save({"arch": f"timm:{name}", "num_classes": 2, "state_dict": model.state_dict()}, path)
    checkpoint = ckpt.load_checkpoint(path)
    graph = _graph(checkpoint.model)
    assert graph.groups and all(group.unit_width == 1 for group in graph.groups)
    kept = {group.name: torch.arange(group.size) % 2 == 0 for group in graph.groups}
    graph.remove(kept)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = checkpoint.model(images)
    ckpt.save_checkpoint(tmp_path / "slim.pt", checkpoint.model, like=checkpoint, classes=None, provenance={})
    slim = ckpt.load_checkpoint(tmp_path / "slim.pt")
    assert sum(p.numel() for p in slim.model.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(slim.model(images), expected)


def test_an_attention_this_cannot_follow_is_refused_in_one_line(biased_data, cli, tmp_path):
    """Swin's patch merging concatenates neighbouring tokens' channels: removing channels there
    breaks the model, which is said instead of writing a broken model."""
    from transformers import SwinConfig, SwinForImageClassification

    config = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=4,
                        num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1})  # fmt: skip
    SwinForImageClassification(config).save_pretrained(str(tmp_path / "swin"))
    result = cli("prune", tmp_path / "swin", "--method", "magnitude", "--rate", "0.5", "--granularity", "channel",
                 cwd=tmp_path)  # fmt: skip
    assert result.code == 2 and "--granularity weight" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "masks.safetensors").exists() and not (tmp_path / "pruned").exists()


def test_a_hf_vit_without_preprocessor_reads_its_size_from_the_config(tmp_path):
    folder = hf_vit_folder(tmp_path / "bare", preprocessor=False)
    checkpoint = ckpt.load_checkpoint(folder)
    assert checkpoint.image_size == 32 and checkpoint.mean is None  # normalisation: ImageNet's default
    assert hf_vit().config.num_attention_heads == 4

"""Tiny timm and Hugging Face models built from configs, for the tests: random weights, no download.

Importing this module turns the Hugging Face hub offline for the whole test session: a test that
tried to download would fail instead of reaching the network.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

TIMM_VIT = "test_vit"  # timm's own test model: 6 blocks of width 64, 2 heads, MLP 192
TIMM_VIT_ARGS = {"img_size": 32}
TIMM_CONVNET = "test_resnet"
CLASSES = ("no", "yes")  # the classes of conftest's biased_data


def timm_model(name: str, **args) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=len(CLASSES), **args).eval()


def timm_state_dict_file(path: Path, name: str = TIMM_VIT, **args) -> Path:
    """A plain state dict, as a user would have one: it needs --arch timm:NAME (and --arch-args)."""
    torch.save(timm_model(name, **(args or TIMM_VIT_ARGS)).state_dict(), path)
    return path


def timm_training_checkpoint(path: Path, name: str = TIMM_CONVNET, image_size: int = 32) -> Path:
    """What timm's train.py saves: arch (timm's name), state_dict and state_dict_ema under a
    ``module.`` prefix (DistributedDataParallel), the argparse.Namespace of its flags, epoch..."""
    model = timm_model(name)
    prefixed = {f"module.{key}": value for key, value in model.state_dict().items()}
    args = argparse.Namespace(model=name, img_size=image_size, num_classes=len(CLASSES), lr=0.1, mean=None)
    torch.save({"epoch": 3, "arch": name, "state_dict": prefixed, "state_dict_ema": dict(prefixed),
                "optimizer": {"state": {}, "param_groups": []}, "version": 2, "args": args, "metric": 0.5}, path)  # fmt: skip
    return path


def hf_vit(*, heads: int = 4, layers: int = 2, size: int = 32, classes=CLASSES) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=size, patch_size=8, hidden_size=32, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=64, num_labels=len(classes), id2label=dict(enumerate(classes)),
        label2id={name: index for index, name in enumerate(classes)},
    )  # fmt: skip
    return ViTForImageClassification(config).eval()


def hf_vit_folder(path: Path, *, preprocessor: bool = True, **options) -> Path:
    """A folder saved with save_pretrained (config.json, model.safetensors) and, by default, the
    image processor's preprocessor_config.json (32 px, mean and std 0.5)."""
    from transformers import ViTImageProcessor
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = hf_vit(**options)
    model.save_pretrained(str(path))
    if preprocessor:
        size = model.config.image_size
        ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(str(path))
    return path

"""Hugging Face ``transformers`` image classifiers: folders saved with ``save_pretrained``.

A MODEL that is a folder holding ``config.json`` and ``model.safetensors`` (optionally
``preprocessor_config.json``) is a Hugging Face model. It is read locally only
(``local_files_only``, never downloading) and never runs code shipped with it
(``trust_remote_code`` stays off: the class must be one of transformers' own image classifiers).
Its classes are the config's ``id2label`` (unless they are transformers' placeholders
``LABEL_0``...), its image size and normalisation the preprocessor config's. fairgrape sees the
logits: a forward hook makes ``model(images)`` return the output's ``logits`` tensor, so every
stage (and the ONNX and TorchScript exports) treats it as any classifier.

fairgrape writes such a model back as a folder of the same kind (``save_pretrained``), with
``fairgrape.json`` beside it: the provenance (which stage, from which files), the classes, image
size and normalisation fairgrape used, and, for a channel-pruned (slim) model, its structure
record. A slim folder's ``model.safetensors`` holds the slim tensors under the model's own
parameter names; transformers' ``from_pretrained`` cannot build the narrower layers, fairgrape
(or the ONNX export) can.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, first_line
from .extras import require_package
from .files import save_safetensors

HF_PREFIX = "hf:"  # an architecture name: hf:ViTForImageClassification

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PREPROCESSOR = "preprocessor_config.json"
FAIRGRAPE_FILE = "fairgrape.json"
FOLDER_FORMAT = "fairgrape.hf.v1"
_PLACEHOLDER_LABEL = re.compile(r"LABEL_\d+")
_quieted = False


@dataclass
class Preprocessing:
    """What a model's preprocessor config says about its images (None: it does not say)."""

    image_size: int | None
    mean: list[float] | None
    std: list[float] | None


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding a Hugging Face ``config.json``."""
    return path.is_dir() and (path / CONFIG).is_file()


def transformers_module():
    """``transformers``, imported, with its progress bars and advice silenced (fairgrape has its own)."""
    global _quieted
    transformers = require_package("transformers", "a Hugging Face model")
    if not _quieted:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        _quieted = True
    return transformers


def classifier_class(name: str) -> type:
    """transformers' image-classification class ``name``; anything else is refused."""
    transformers = transformers_module()
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    known = set()
    for names in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.values():
        known.update([names] if isinstance(names, str) else names)
    if name not in known or not hasattr(transformers, name):
        raise InputError(
            f"{HF_PREFIX}{name} is not one of transformers' image classifiers (such as "
            "ViTForImageClassification); fairgrape never runs code shipped with a model"
        )
    return getattr(transformers, name)


def build_classifier(name: str, num_classes: int, config: Mapping[str, Any]) -> nn.Module:
    """A fresh ``name`` from its ``config`` (a dict, as ``config.json`` holds it), logits out."""
    cls = classifier_class(name)
    if not config:
        raise InputError(
            f"{HF_PREFIX}{name} is built from its config: pass the model's folder (config.json and "
            "model.safetensors) as MODEL"
        )
    settings = {key: value for key, value in config.items() if key not in ("architectures", "transformers_version")}
    try:
        built = cls.config_class.from_dict(settings)
    except Exception as error:  # noqa: BLE001 - a config the class cannot read, in many ways
        raise InputError(f"cannot read the config of {HF_PREFIX}{name}: {first_line(error)}") from error
    if built.num_labels != num_classes:
        built.num_labels = num_classes
    try:
        model = cls(built)
    except Exception as error:  # noqa: BLE001
        raise InputError(f"cannot build {HF_PREFIX}{name} from its config: {first_line(error)}") from error
    return with_logits(model)


def with_logits(model: nn.Module) -> nn.Module:
    """``model`` whose call returns the logits tensor (a forward hook; names and class unchanged)."""
    if not getattr(model, "_fairgrape_logits", False):
        model.register_forward_hook(_logits_of)
        model._fairgrape_logits = True
    return model


def _logits_of(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output[0]


def config_dict(model: nn.Module) -> dict[str, Any]:
    """The config that rebuilds ``model`` (``arch_args`` of an ``hf:`` architecture)."""
    return json.loads(model.config.to_json_string(use_diff=False))


# -------------------------------------------------------------------------------------- reading


def read_folder(path: Path) -> dict[str, Any]:
    """What a Hugging Face model folder holds, as checkpoint fields: ``arch`` (``hf:CLASS``),
    ``arch_args`` (the config), ``num_classes``, ``classes``, ``image_size``, ``mean``, ``std``,
    ``fairgrape`` (provenance), ``preprocessor``; and either ``built`` (the model, loaded by
    transformers) or, for a slim folder, ``state_dict`` and ``structure`` to build it from."""
    config = _read_json(path / CONFIG, path)
    name = _class_name(config, path)
    classifier_class(name)  # refused before any weight is read
    meta = _read_json(path / FAIRGRAPE_FILE, path) if (path / FAIRGRAPE_FILE).is_file() else {}
    if meta and meta.get("format") != FOLDER_FORMAT:
        raise InputError(f"{path / FAIRGRAPE_FILE}: unknown format {meta.get('format')!r}; expected {FOLDER_FORMAT}")
    preprocessor = _read_json(path / PREPROCESSOR, path) if (path / PREPROCESSOR).is_file() else None
    given = preprocessing_of(preprocessor, config)
    num_classes = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    fields: dict[str, Any] = {
        "arch": HF_PREFIX + name,
        "arch_args": _without_labels(config),
        "num_classes": num_classes,
        "classes": meta.get("classes", _labels(config, num_classes)),
        "image_size": meta.get("image_size", given.image_size),
        "mean": meta.get("mean", given.mean),
        "std": meta.get("std", given.std),
        "fairgrape": meta.get("fairgrape") or {},
        "preprocessor": preprocessor,
    }
    if meta.get("attributes") is not None:
        fields.update(attributes=meta["attributes"], classes=None)
    if meta.get("structure"):
        fields.update(structure=meta["structure"], state_dict=_read_weights(path))
        return fields
    if not ((path / WEIGHTS).is_file() or (path / WEIGHTS_INDEX).is_file()):
        raise InputError(
            f"{path} has no {WEIGHTS}: fairgrape reads safetensors weights only (never pickles); convert "
            "the folder once with transformers: Model.from_pretrained(F).save_pretrained(F)"
        )
    try:
        model = classifier_class(name).from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, use_safetensors=True
        )
    except Exception as error:  # noqa: BLE001 - transformers raises many kinds
        raise InputError(f"cannot load the Hugging Face model {path}: {first_line(error)}") from error
    fields["built"] = with_logits(model)
    return fields


def preprocessing_of(preprocessor: Mapping[str, Any] | None, config: Mapping[str, Any]) -> Preprocessing:
    """Image side and normalisation from ``preprocessor_config.json`` (else the config's
    ``image_size``; normalisation then stays fairgrape's default, ImageNet's)."""
    size = config.get("image_size") if isinstance(config.get("image_size"), int) else None
    mean = std = None
    if preprocessor:
        cropped = preprocessor.get("do_center_crop") and preprocessor.get("crop_size")
        size = _side(preprocessor.get("crop_size") if cropped else preprocessor.get("size")) or size
        if preprocessor.get("do_normalize", True):
            mean, std = _triple(preprocessor.get("image_mean")), _triple(preprocessor.get("image_std"))
    return Preprocessing(size, mean, std)


def _side(size: Any) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, Mapping):
        for key in ("height", "shortest_edge", "width"):
            if isinstance(size.get(key), int):
                return size[key]
    return None


def _triple(values: Any) -> list[float] | None:
    if isinstance(values, (int, float)):
        return [float(values)] * 3
    if isinstance(values, list) and len(values) == 3:
        return [float(value) for value in values]
    return None


def _class_name(config: Mapping[str, Any], path: Path) -> str:
    named = config.get("architectures") or []
    if named and isinstance(named[0], str):
        return named[0]
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    by_type = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.get(config.get("model_type"))
    if by_type is None:
        raise InputError(f"{path / CONFIG} names no architecture and no image-classification model_type")
    return by_type if isinstance(by_type, str) else by_type[0]


def _labels(config: Mapping[str, Any], num_classes: int) -> list[str] | None:
    """The class names of ``id2label`` in id order; None for transformers' placeholders."""
    id2label = config.get("id2label") or {}
    try:
        names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None
    if len(names) != num_classes or all(_PLACEHOLDER_LABEL.fullmatch(name) for name in names):
        return None
    return names


def _without_labels(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without what fairgrape records itself (class names) or must not pass on."""
    dropped = ("id2label", "label2id", "_name_or_path", "transformers_version", "auto_map")
    return {key: value for key, value in config.items() if key not in dropped}


def _read_json(file: Path, folder: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {file} of the model folder {folder}: {first_line(error)}") from error
    if not isinstance(value, dict):
        raise InputError(f"{file}: expected a JSON object")
    return value


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    file = path / WEIGHTS
    if not file.is_file():
        raise InputError(f"{path} has no {WEIGHTS}")
    try:
        with safe_open(str(file), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # noqa: BLE001 - the Rust error type is not importable in every version
        raise InputError(f"cannot read {file}: not a valid safetensors file ({first_line(error)})") from error


# -------------------------------------------------------------------------------------- writing


def write_folder(
    folder: Path,
    model: nn.Module,
    *,
    classes: list[str] | None,
    meta: dict[str, Any],
    preprocessor: Mapping[str, Any] | None,
) -> None:
    """Write ``model`` into the empty ``folder``: ``config.json`` and ``model.safetensors`` as
    ``save_pretrained`` writes them (a slim model, ``meta["structure"]``: its own tensors under
    their parameter names), the preprocessor config it came with, and ``fairgrape.json``."""
    if classes is not None and len(classes) == model.config.num_labels:
        model.config.id2label = dict(enumerate(classes))
        model.config.label2id = {name: index for index, name in enumerate(classes)}
    if meta.get("structure"):
        model.config.save_pretrained(str(folder))
        state_dict = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        save_safetensors(state_dict, folder / WEIGHTS, {"format": "pt"})
    else:
        model.save_pretrained(str(folder), safe_serialization=True)
    if preprocessor:
        (folder / PREPROCESSOR).write_text(json.dumps(preprocessor, indent=2) + "\n", encoding="utf-8")
    record = {"format": FOLDER_FORMAT, **{key: value for key, value in meta.items() if value is not None}}
    (folder / FAIRGRAPE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def folder_digest(folder: Path) -> str:
    """sha256 of a model folder: of each regular file's name and sha256, in name order (the
    folder's own name and hidden files do not count)."""
    from .files import sha256_file

    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.is_file() and not file.name.startswith("."):
            digest.update(f"{file.name}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def read_provenance(folder: Path) -> dict[str, Any]:
    """The provenance ``fairgrape.json`` records (empty when there is none), without loading the model."""
    try:
        return dict(json.loads((folder / FAIRGRAPE_FILE).read_text(encoding="utf-8")).get("fairgrape") or {})
    except (OSError, ValueError, AttributeError):
        return {}



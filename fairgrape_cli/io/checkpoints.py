"""Load and save models in the formats docs/design.md lists; name their prunable layers.

Every ``torch.load`` here uses ``weights_only=True`` unless the user passed ``--trust-checkpoint``:
a checkpoint never runs code the user did not vouch for, and an architecture a file names is
imported only if it is one of the families ``architectures`` lets a file name.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, first_line
from . import huggingface, onnx_models, sparse
from .architectures import (
    TIMM_PREFIX,
    build_model,
    check_arch_args,
    check_named_by_file,
    current_arch_name,
    family,
)
from .files import atomic_folder, atomic_output, record_path, resolve_recorded, save_safetensors, sha256_file
from .structure import apply_structure, describe_structure

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint", "build_model", "current_arch_name",
           "dense_reference", "prunable_parameters", "model_digest", "default_model_output"]  # fmt: skip

NATIVE_FORMAT = "fairgrape.checkpoint.v1"
MODULE_FORMAT = "fairgrape.module.v1"
PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_SCRIPTED_PRUNABLE_NAMES = {"Conv1d", "Conv2d", "Conv3d", "Linear"}
_TORCHSCRIPT_META = "fairgrape.json"
_UNSUPPORTED_GLOBAL = re.compile(r"(?:GLOBAL|unsupported GLOBAL) ([\w.]+)")

# Suffixes of single-file checkpoints: a Hugging Face model written to any other path is a folder
FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".ckpt", ".tar", ".torchscript")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Checkpoint:
    """A loaded model and what its file says about it."""

    model: nn.Module
    path: Path
    sha256: str
    # "native" | "sparse" (native, stored as masks + values) | "state_dict" | "torchscript" | "module"
    # | "hf" (a Hugging Face model folder) | "onnx" (run by onnxruntime: evaluation only)
    kind: str
    arch: str | None
    num_classes: int  # outputs of the head: classes, or binary attributes
    classes: list[str] | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    attributes: list[str] | None = None  # a multi-label head: the binary attribute of each output
    arch_args: dict[str, Any] | None = None  # constructor arguments of ``arch`` (a HF class: its config)
    preprocessor: dict[str, Any] | None = None  # a HF folder's preprocessor_config.json, written back with it

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The mean and std images are normalised with (ImageNet's unless the file says)."""
        return (self.mean or IMAGENET_MEAN, self.std or IMAGENET_STD)


# ----------------------------------------------------------------------------------------- loading


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    default_arch: str | None = None,
    trust_checkpoint: bool = False,
    arch_args: dict[str, Any] | None = None,
    default_arch_args: dict[str, Any] | None = None,
) -> Checkpoint:
    """Load any supported checkpoint (or Hugging Face model folder) onto the CPU, in eval mode.

    ``arch`` overrides the architecture the file names (the user named it: a ``module:callable``
    is imported, looked for in the current folder too); ``default_arch`` (an architecture an
    artifact recorded) is used only when the file names none. An architecture read from a file
    must be one a file may name (``architectures.check_named_by_file``) unless
    ``trust_checkpoint``. ``arch_args`` (the user's) replace the constructor arguments the file
    records; ``default_arch_args`` go with ``default_arch``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist")
    if path.is_dir():
        return _load_folder(path, arch=arch)
    digest = sha256_file(path)
    if path.suffix == ".safetensors":
        fields = _read_safetensors_checkpoint(path)
    elif onnx_models.is_onnx_path(path):
        return _load_onnx(path, digest)
    elif _is_torchscript(path):
        return _load_torchscript(path, digest)
    else:
        fields = _read_pickled_checkpoint(path, trust_checkpoint)

    if "module" in fields:
        model = fields["module"]
        num_classes = _output_size(model, path)
        classes = _class_names(fields.get("classes"), num_classes, path)
        model.eval()
        return Checkpoint(
            model=model, path=path, sha256=digest, kind="module", arch=None,
            num_classes=num_classes, classes=classes,
            image_size=fields.get("image_size"), mean=_triple(fields.get("mean")),
            std=_triple(fields.get("std")), provenance=dict(fields.get("fairgrape") or {}),
            attributes=_class_names(fields.get("attributes"), num_classes, path, what="attributes"),
        )  # fmt: skip

    state_dict = _strip_data_parallel_prefix(fields["state_dict"])
    chosen_arch, chosen_args = _chosen_arch(
        path, fields, arch=arch, default_arch=default_arch, trust_checkpoint=trust_checkpoint,
        arch_args=arch_args, default_arch_args=default_arch_args,
    )  # fmt: skip
    named = fields.get("classes") or fields.get("attributes")
    num_classes = fields.get("num_classes") or (len(named) if named else _head_size(state_dict, path))
    classes = _class_names(fields.get("classes"), int(num_classes), path)
    attributes = _class_names(fields.get("attributes"), int(num_classes), path, what="attributes")
    model = build_model(chosen_arch, int(num_classes), arch_args=chosen_args, named_by_user=arch is not None)
    if fields.get("structure"):  # a channel-pruned (slim) model: narrow the layers first
        apply_structure(model, fields["structure"], state_dict, source=path)
    _load_state_dict_strictly(model, state_dict, path, chosen_arch)
    model.eval()
    defaults = _library_preprocessing(chosen_arch, model, chosen_args)
    return Checkpoint(
        model=model, path=path, sha256=digest,
        kind="sparse" if fields.get("sparse") else "native" if fields.get("arch") else "state_dict",
        arch=chosen_arch, num_classes=int(num_classes), classes=classes,
        image_size=fields.get("image_size") or defaults.get("image_size"),
        mean=_triple(fields.get("mean") or defaults.get("mean")),
        std=_triple(fields.get("std") or defaults.get("std")),
        provenance=dict(fields.get("fairgrape") or {}), attributes=attributes, arch_args=chosen_args or None,
    )  # fmt: skip


def _chosen_arch(
    path: Path,
    fields: dict[str, Any],
    *,
    arch: str | None,
    default_arch: str | None,
    trust_checkpoint: bool,
    arch_args: dict[str, Any] | None,
    default_arch_args: dict[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """The architecture to build and its constructor arguments: the user's, else the file's,
    else the artifact's; one read from a file is vetted before anything is imported."""
    if arch:
        chosen, recorded_args = current_arch_name(arch), fields.get("arch_args")
    elif fields.get("arch"):
        chosen, recorded_args = current_arch_name(str(fields["arch"])), fields.get("arch_args")
        check_named_by_file(chosen, source=path, trusted=trust_checkpoint)
    elif default_arch:
        chosen, recorded_args = current_arch_name(default_arch), default_arch_args
        check_named_by_file(chosen, source=f"the file that records {path}", trusted=trust_checkpoint)
    else:
        raise InputError(
            f"{path} is a plain state dict and does not say which architecture it is; pass --arch NAME "
            "(a torchvision model such as resnet18, timm:NAME, or module.path:callable)"
        )
    if arch_args is not None:
        return chosen, check_arch_args(arch_args, source="--arch-args")
    return chosen, check_arch_args(recorded_args, source=str(path))


def _library_preprocessing(arch: str, model: nn.Module, arch_args: dict[str, Any]) -> dict[str, Any]:
    """Image side and normalisation a library model was made for (timm's pretrained config; an
    ``img_size`` argument wins), used when the checkpoint does not say."""
    if family(arch) != "timm":
        return {}
    config = getattr(model, "pretrained_cfg", None) or {}
    size = arch_args.get("img_size")
    if isinstance(size, (list, tuple)) and size:
        size = size[0]
    if not isinstance(size, int):
        input_size = config.get("input_size")
        size = int(input_size[-1]) if input_size else None
    return {"image_size": size, "mean": config.get("mean"), "std": config.get("std")}


def _load_folder(path: Path, *, arch: str | None) -> Checkpoint:
    if not huggingface.is_model_folder(path):
        raise InputError(
            f"checkpoint {path} is a directory without config.json; expected a checkpoint file or a "
            "Hugging Face model folder (config.json and model.safetensors)"
        )
    fields = huggingface.read_folder(path)
    fields["arch_args"] = check_arch_args(fields["arch_args"], source=str(path / huggingface.CONFIG))
    if arch is not None and current_arch_name(arch) != fields["arch"]:
        raise InputError(f"{path} is a Hugging Face {fields['arch']} (its config.json says so); drop --arch {arch}")
    num_classes = int(fields["num_classes"])
    model = fields.get("built")
    if model is None:  # a slim folder: the architecture, narrowed as recorded
        model = build_model(fields["arch"], num_classes, arch_args=fields["arch_args"])
        apply_structure(model, fields["structure"], fields["state_dict"], source=path)
        _load_state_dict_strictly(model, fields["state_dict"], path, fields["arch"])
    model.eval()
    return Checkpoint(
        model=model, path=path, sha256=huggingface.folder_digest(path), kind="hf", arch=fields["arch"],
        num_classes=num_classes, classes=_class_names(fields.get("classes"), num_classes, path),
        image_size=fields.get("image_size"), mean=_triple(fields.get("mean")), std=_triple(fields.get("std")),
        provenance=dict(fields.get("fairgrape") or {}),
        attributes=_class_names(fields.get("attributes"), num_classes, path, what="attributes"),
        arch_args=fields["arch_args"], preprocessor=fields.get("preprocessor"),
    )  # fmt: skip


def model_digest(path: str | Path) -> str:
    """sha256 of a checkpoint file, or of a Hugging Face model folder's files."""
    path = Path(path)
    return huggingface.folder_digest(path) if path.is_dir() else sha256_file(path)


def default_model_output(name: str | Path, checkpoint: Checkpoint) -> Path:
    """A stage's default output ``name`` (``pruned.pt``) for ``checkpoint``'s model: a Hugging
    Face model is written as a folder, ``name`` without its suffix (``pruned``)."""
    name = Path(name)
    return name.with_suffix("") if _is_hf(checkpoint) else name


def _is_hf(checkpoint: Checkpoint) -> bool:
    return bool(checkpoint.arch) and family(checkpoint.arch) == "hf"


def _writes_folder(arch: str | None, path: Path) -> bool:
    return bool(arch) and family(arch) == "hf" and path.suffix.lower() not in FILE_SUFFIXES


def _read_safetensors_checkpoint(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state_dict = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # the Rust error type is not importable in every version
        raise InputError(
            f"cannot read {path}: not a valid safetensors file ({first_line(error)})"
        ) from error
    fields: dict[str, Any] = {"state_dict": state_dict}
    if sparse.is_sparse(metadata):  # `fairgrape export --format sparse`: masks + kept values
        fields.update(state_dict=sparse.decode(state_dict, metadata, path), sparse=True)
    for key in ("arch", "arch_args", "num_classes", "classes", "attributes", "image_size", "mean", "std",
                "fairgrape", "structure"):
        if key in metadata:
            fields[key] = _decode_metadata_value(metadata[key])
    return fields


def _decode_metadata_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(
                name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist()
            )
    except (zipfile.BadZipFile, OSError):
        return False


def _load_torchscript(path: Path, digest: str) -> Checkpoint:
    extra = {_TORCHSCRIPT_META: ""}
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream, still a valid input
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as error:
        raise InputError(
            f"cannot read {path}: broken TorchScript archive ({first_line(error)})"
        ) from error
    meta = json.loads(extra[_TORCHSCRIPT_META]) if extra[_TORCHSCRIPT_META] else {}
    num_classes = _output_size(model, path)
    model.eval()
    return Checkpoint(
        model=model, path=path, sha256=digest, kind="torchscript", arch=None,
        num_classes=num_classes, classes=_class_names(meta.get("classes"), num_classes, path),
        image_size=meta.get("image_size"), mean=_triple(meta.get("mean")),
        std=_triple(meta.get("std")), provenance=dict(meta.get("fairgrape") or {}),
        attributes=_class_names(meta.get("attributes"), num_classes, path, what="attributes"),
    )  # fmt: skip


def _load_onnx(path: Path, digest: str) -> Checkpoint:
    """An ONNX classifier (``fairgrape export`` / ``quantize`` or any other that fits), run by
    onnxruntime; its metadata_props name classes, image size and normalisation as a native
    checkpoint's fields do."""
    found = onnx_models.read_onnx(path)
    meta = found.metadata
    num_classes = found.num_classes
    recorded = meta.get("num_classes")
    if isinstance(recorded, int) and recorded != num_classes:
        raise InputError(f"{path} records {recorded} classes but its model has {num_classes} outputs")
    return Checkpoint(
        model=found.model, path=path, sha256=digest, kind="onnx",
        arch=current_arch_name(meta["arch"]) if isinstance(meta.get("arch"), str) else None,
        num_classes=num_classes, classes=_class_names(meta.get("classes"), num_classes, path),
        image_size=found.image_size or _int_or_none(meta.get("image_size")), mean=_triple(meta.get("mean")),
        std=_triple(meta.get("std")), provenance=dict(meta.get("fairgrape") or {}),
        attributes=_class_names(meta.get("attributes"), num_classes, path, what="attributes"),
        arch_args=meta["arch_args"] if isinstance(meta.get("arch_args"), dict) and meta["arch_args"] else None,
    )  # fmt: skip


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_pickled_checkpoint(path: Path, trust_checkpoint: bool) -> dict[str, Any]:
    try:
        # timm's training checkpoints hold their argparse.Namespace: plain values, no code
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _UNSUPPORTED_GLOBAL.search(str(error))
        if found is None:
            raise InputError(f"cannot read {path}: corrupt checkpoint") from error
        if not trust_checkpoint:
            raise InputError(
                f"{path} contains a pickled Python object ({found.group(1)}) and loading it "
                "could run code from the file; if you trust it, pass --trust-checkpoint, or "
                "convert it once to a state dict: torch.save(torch.load(F, weights_only=False)"
                ".state_dict(), 'model_state.pt') and use that file with --arch"
            ) from error
        loaded = _load_trusted(path)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as error:
        raise InputError(
            f"cannot read {path}: truncated or not a PyTorch checkpoint ({first_line(error)})"
        ) from error
    return _interpret(loaded, path)


def _load_trusted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise InputError(f"cannot unpickle {path}: {first_line(error)}") from error


def _interpret(loaded: Any, path: Path) -> dict[str, Any]:
    """Map the shapes checkpoints come in onto ``state_dict`` (+ native fields) or ``module``."""
    if isinstance(loaded, nn.Module):
        return {"module": loaded}
    if not isinstance(loaded, Mapping):
        raise InputError(
            f"{path} holds a {type(loaded).__name__}, not a model: expected a state dict, "
            "a fairgrape checkpoint, or a TorchScript archive"
        )
    if isinstance(loaded.get("module"), nn.Module):
        return dict(loaded)
    if _is_timm_training_checkpoint(loaded):
        return _timm_training_fields(loaded)
    if _is_state_dict(loaded.get("state_dict")):
        return dict(loaded)
    for wrapper in ("model", "model_state_dict", "net"):
        if _is_state_dict(loaded.get(wrapper)):
            return {"state_dict": loaded[wrapper]}
        if isinstance(loaded.get(wrapper), nn.Module):
            return {"module": loaded[wrapper]}
    if _is_state_dict(loaded):
        return {"state_dict": dict(loaded)}
    raise InputError(
        f"{path} is a dict without model weights (keys: {', '.join(map(str, list(loaded)[:6]))}); "
        "expected a state dict or {'arch', 'state_dict', ...}"
    )


def _is_timm_training_checkpoint(loaded: Mapping[str, Any]) -> bool:
    """What timm's train.py saves: ``state_dict`` (and/or ``state_dict_ema``), ``arch`` (timm's
    model name, unprefixed), ``args`` (its argparse.Namespace), ``epoch``, ``optimizer``, ``version``."""
    args = loaded.get("args")
    has_weights = _is_state_dict(loaded.get("state_dict")) or _is_state_dict(loaded.get("state_dict_ema"))
    return has_weights and (isinstance(args, argparse.Namespace) or "state_dict_ema" in loaded)


def _timm_training_fields(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The weights (``state_dict``, else the EMA's), the architecture as ``timm:NAME`` and the
    image size and normalisation the run trained with."""
    args = loaded.get("args") if isinstance(loaded.get("args"), argparse.Namespace) else argparse.Namespace()
    weights = loaded["state_dict"] if _is_state_dict(loaded.get("state_dict")) else loaded["state_dict_ema"]
    fields: dict[str, Any] = {"state_dict": weights}
    name = loaded.get("arch") or getattr(args, "model", None)
    if isinstance(name, str) and name:
        fields["arch"] = name if name.startswith(TIMM_PREFIX) else TIMM_PREFIX + name
    size = getattr(args, "img_size", None) or (getattr(args, "input_size", None) or [None])[-1]
    if isinstance(size, int):
        fields["image_size"] = size
    for key in ("mean", "std"):
        value = getattr(args, key, None)
        if isinstance(value, (list, tuple)) and len(value) == 3:
            fields[key] = list(value)
    return fields


def _is_state_dict(candidate: Any) -> bool:
    return (
        isinstance(candidate, Mapping)
        and len(candidate) > 0
        and all(isinstance(value, torch.Tensor) for value in candidate.values())
    )


def _strip_data_parallel_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module.") :]: value for key, value in state_dict.items()}
    return dict(state_dict)


def _head_size(state_dict: Mapping[str, torch.Tensor], path: Path) -> int:
    """Class count of a plain state dict: rows of the last Linear-shaped weight."""
    for key in reversed(list(state_dict)):
        tensor = state_dict[key]
        if key.endswith("weight") and tensor.ndim == 2:
            return int(tensor.shape[0])
    raise InputError(f"cannot tell how many classes {path} predicts: it has no Linear head")


def _output_size(model: nn.Module, path: Path) -> int:
    """Class count of a whole model: rows of the last prunable Linear weight."""
    linears = [
        weight for name, weight in prunable_parameters(model).items() if weight.ndim == 2
    ]
    if not linears:
        raise InputError(f"cannot tell how many classes {path} predicts: it has no Linear head")
    return int(linears[-1].shape[0])


def _class_names(classes: Any, num_classes: int, path: Path, *, what: str = "classes") -> list[str] | None:
    """The ``classes`` (or multi-label ``attributes``) a checkpoint names, one per output."""
    if classes is None:
        return None
    if not isinstance(classes, Sequence) or isinstance(classes, str):
        raise InputError(f"{path}: '{what}' must be a list of names")
    names = [str(name) for name in classes]
    if len(names) != num_classes:
        raise InputError(
            f"{path} names {len(names)} {what} but its model has {num_classes} outputs"
        )
    return names


def _triple(values: Any) -> tuple[float, ...] | None:
    if values is None:
        return None
    return tuple(float(value) for value in values)



# --------------------------------------------------------------------------------------- building


def _load_state_dict_strictly(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path, arch: str
) -> None:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    resized = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(
            f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"
        )
    if resized:
        problems.append(f"shape {'; '.join(resized[:2])}")
    if problems:
        hint = _image_size_hint(model, state_dict)
        raise InputError(f"{path} does not fit architecture {arch}: {'; '.join(problems)}{hint}")
    model.load_state_dict(state_dict)


def _image_size_hint(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """For a timm ViT whose position embedding has another length: the image size it was
    trained at (the patch grid's side times the patch size), as the flag to pass."""
    stored, own = state_dict.get("pos_embed"), getattr(model, "pos_embed", None)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if stored is None or own is None or stored.ndim != 3 or stored.shape == own.shape or not patch:
        return ""
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0))
    side = math.isqrt(max(int(stored.shape[1]) - prefix, 0))
    if side * side + prefix != stored.shape[1]:
        return ""
    size = side * (patch[0] if isinstance(patch, (tuple, list)) else patch)
    return f" (a ViT trained at {size} px: pass --arch-args img_size={size})"


# --------------------------------------------------------------------------- the masks it names


def named_masks(checkpoint: Checkpoint) -> Path | None:
    """The masks file a pruned or fine-tuned ``checkpoint`` names (see :func:`masks_named_by`)."""
    return masks_named_by(checkpoint.provenance, checkpoint.path)


def masks_named_in(path: str | Path) -> Path | None:
    """The masks file the checkpoint at ``path`` names, read without building its model (a
    file fairgrape cannot read that way names none; loading it reports any problem)."""
    return masks_named_by(read_provenance(Path(path)), Path(path))


def masks_named_by(provenance: Mapping[str, Any], source: Path) -> Path | None:
    """The one policy for "the masks a checkpoint names": the file its provenance records
    (relative to ``source``) when it is still there. When it is gone this warns, naming both
    files, and returns None: the caller carries on without masks (scores unmasked, keeps no
    weight removed, trains densely, shows no pruning settings), as it would for a checkpoint
    that names none."""
    recorded = provenance.get("masks") if isinstance(provenance, Mapping) else None
    if not recorded or not isinstance(recorded, str):
        return None
    path = resolve_recorded(recorded, source)
    if path.is_file():
        return path
    logging.getLogger("fairgrape").warning(
        "%s names masks %s, which no longer exist; carrying on without them", source, path
    )
    return None


def read_provenance(path: Path) -> dict[str, Any]:
    """What a fairgrape checkpoint records about where it came from (``fairgrape`` in a native
    file's fields or a safetensors file's metadata), read without building the model; empty for
    any other file (a Hugging Face model folder: its ``fairgrape.json``)."""
    if path.is_dir():
        return huggingface.read_provenance(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                recorded = (handle.metadata() or {}).get("fairgrape")
            return dict(json.loads(recorded)) if recorded else {}
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a file this can read; the real load reports any problem
        return {}
    recorded = loaded.get("fairgrape") if isinstance(loaded, dict) else None
    return dict(recorded) if isinstance(recorded, Mapping) else {}


# paths a checkpoint's provenance records, each relative to the checkpoint itself
PROVENANCE_PATHS = ("source", "masks", "data", "labels", "teacher")


def copy_checkpoint(source: str | Path, target: str | Path) -> None:
    """Copy a checkpoint to ``target`` atomically, its recorded paths re-anchored to the new
    place (they are relative to the file: a copy into another folder would name files that are
    not there). A checkpoint whose provenance cannot be read this way is copied byte for byte."""
    import shutil

    source, target = Path(source), Path(target)
    provenance = read_provenance(source)
    moved = source.resolve().parent != target.resolve().parent
    anchored = {
        key: record_path(resolve_recorded(value, source), target)
        if key in PROVENANCE_PATHS and isinstance(value, str) and value else value
        for key, value in provenance.items()
    }  # fmt: skip
    with atomic_output(target) as tmp:
        if not moved or anchored == provenance:
            shutil.copyfile(source, tmp)
        elif source.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(source), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            save_safetensors(tensors, tmp, {**metadata, "fairgrape": json.dumps(anchored)})
        else:
            loaded = torch.load(source, map_location="cpu", weights_only=True)
            with open(tmp, "wb") as handle:  # through a handle: the same model gives the same bytes
                torch.save({**loaded, "fairgrape": anchored}, handle)


# ----------------------------------------------------------------------------------------- saving


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    like: Checkpoint,
    classes: list[str] | None,
    provenance: dict[str, Any],
) -> str:
    """Write ``model`` in the format of ``like`` (native unless it came as TorchScript or a module).

    Weights are written dense, exact zeros where masked, with plain parameter names so the file
    loads into a fresh torchvision model with ``load_state_dict``. Returns the file's sha256.
    """
    path = Path(path)
    if like.kind not in ("torchscript", "module") and _writes_folder(like.arch, path):
        return _save_folder(path, model, like=like, classes=classes, provenance=provenance)
    described = _described(like, classes, provenance)
    # torch writes through an open file, not a path: a full disk raises OSError (with its errno)
    # instead of an opaque RuntimeError, and the archive's inner folder is "archive", not the
    # temporary file's random name, so the same model gives the same bytes.
    with atomic_output(path) as tmp:
        if like.kind == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                with open(tmp, "wb") as handle:
                    torch.jit.save(
                        model.cpu(), handle, _extra_files={_TORCHSCRIPT_META: json.dumps(described)}
                    )
        elif like.kind == "module":
            with open(tmp, "wb") as handle:
                torch.save({"format": MODULE_FORMAT, "module": model.cpu(), **described}, handle)
        else:
            state_dict = {
                key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()
            }
            native = native_fields(like, classes=classes, provenance=provenance, model=model)
            if path.suffix == ".safetensors":
                metadata = {
                    key: value if isinstance(value, str) else json.dumps(value)
                    for key, value in native.items()
                }
                save_safetensors(state_dict, tmp, metadata)
            else:
                with open(tmp, "wb") as handle:
                    torch.save({**native, "state_dict": state_dict}, handle)
        digest = sha256_file(tmp)  # (inside an all_or_none block the file is renamed later)
    return digest


def _save_folder(
    path: Path, model: nn.Module, *, like: Checkpoint, classes: list[str] | None, provenance: dict[str, Any]
) -> str:
    """A Hugging Face model as a folder ``from_pretrained`` reads (a slim one: fairgrape reads)."""
    meta = _described(like, classes, provenance)
    meta["structure"] = _structure_against_arch(model, like)
    with atomic_folder(path) as tmp:
        huggingface.write_folder(
            tmp, model.cpu(), classes=meta.get("classes"), meta=meta, preprocessor=like.preprocessor
        )
        digest = huggingface.folder_digest(tmp)
    return digest


def native_fields(
    like: Checkpoint, *, classes: list[str] | None, provenance: dict[str, Any], model: nn.Module | None = None
) -> dict[str, Any]:
    """Everything the native format stores besides the weights (``arch``, ``classes``, ...), with
    the structure record when ``model`` is narrower than ``arch`` builds it (channel-pruned)."""
    native = {"format": NATIVE_FORMAT, "arch": like.arch, "num_classes": like.num_classes}
    if like.arch_args:
        native["arch_args"] = like.arch_args
    structure = None if model is None else _structure_against_arch(model, like)
    if structure is not None:
        native["structure"] = structure
    described = _described(like, classes, provenance)
    native.update({key: value for key, value in described.items() if value is not None})
    return native


def _described(like: Checkpoint, classes: list[str] | None, provenance: dict[str, Any]) -> dict[str, Any]:
    """What every written checkpoint says about its model, whatever its format."""
    classes = classes if classes is not None else like.classes
    described = {
        "classes": classes if like.attributes is None else None,
        "image_size": like.image_size,
        "mean": list(like.mean) if like.mean else None,
        "std": list(like.std) if like.std else None,
        "fairgrape": provenance,
    }
    if like.attributes is not None:  # a multi-label head (only then: single-label files stay as they were)
        described["attributes"] = like.attributes
    return described


def dense_reference(arch: str, num_classes: int, *, arch_args: dict[str, Any] | None = None) -> nn.Module:
    """A fresh build of ``arch`` without memory or initialisation cost (on the ``meta`` device
    when the architecture allows it): for its shapes, sizes and FLOPs, never its values."""
    try:
        with torch.device("meta"):
            return build_model(arch, num_classes, arch_args=arch_args)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - an architecture that cannot be built on meta: on the CPU
        return build_model(arch, num_classes, arch_args=arch_args)


def _structure_against_arch(model: nn.Module, like: Checkpoint) -> dict | None:
    """The structure record of ``model`` (None when every layer has the architecture's size)."""
    if not like.arch:
        return None
    return describe_structure(model, dense_reference(like.arch, like.num_classes, arch_args=like.arch_args))


# ------------------------------------------------------------------------------ prunable layers


def prunable_parameters(
    model: nn.Module, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """The ``weight`` of every Conv1d/2d/3d and Linear, by parameter name, in model order.

    ``include``/``exclude`` are glob patterns on those names (``layer4.*``, ``fc.weight``). An
    ONNX model's are the weights of its Conv/Gemm/MatMul nodes as stored (for counting only).
    """
    found: dict[str, torch.Tensor] = {}
    if isinstance(model, onnx_models.OnnxModel):
        graph = onnx_models.load_graph(model.path, "reading the weights of an ONNX model")
        found = {f"{name}.weight": weight for name, weight in onnx_models.weight_tensors(graph).items()}
        return _filter_names(found, include, exclude) if include or exclude else found
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if not _is_prunable_module(module):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or id(weight) in seen:
            continue
        seen.add(id(weight))
        found[f"{module_name}.weight" if module_name else "weight"] = weight
    if include or exclude:
        found = _filter_names(found, include, exclude)
    return found


def _is_prunable_module(module: nn.Module) -> bool:
    if isinstance(module, PRUNABLE_TYPES):
        return True
    scripted = isinstance(module, torch.jit.ScriptModule)
    return scripted and getattr(module, "original_name", None) in _SCRIPTED_PRUNABLE_NAMES


def _filter_names(
    found: dict[str, torch.Tensor], include: Sequence[str], exclude: Sequence[str]
) -> dict[str, torch.Tensor]:
    for flag, patterns in (("--include", include), ("--exclude", exclude)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in found):
                raise InputError(
                    f"{flag} {pattern!r} matches no prunable layer "
                    f"(they are named like {next(iter(found), 'conv.weight')})"
                )
    kept = {
        name: weight
        for name, weight in found.items()
        if (not include or any(fnmatch.fnmatchcase(name, p) for p in include))
        and not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    }
    if not kept:
        raise InputError("--include/--exclude leave no prunable layer")
    return kept

"""The two safetensors artifacts, importance and masks: write atomically, read with checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._files import atomic_output, require_file, resolve_recorded, sha256_file
from .errors import InputError

IMPORTANCE_FORMAT = "fairgrape.importance.v1"
MASKS_FORMAT = "fairgrape.masks.v1"


@dataclass
class Artifact:
    """Tensors of one artifact file and its metadata (JSON values decoded)."""

    path: Path
    sha256: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any]

    def recorded_path(self, key: str) -> Path | None:
        """A path the file records, resolved relative to the file itself."""
        value = self.metadata.get(key)
        return resolve_recorded(value, self.path) if value else None


def write_artifact(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> str:
    """Write a safetensors file atomically; metadata values become strings (JSON when not)."""
    from safetensors.torch import save_file

    encoded = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in metadata.items()
        if value is not None
    }
    contiguous = {key: tensor.detach().cpu().contiguous() for key, tensor in tensors.items()}
    with atomic_output(path) as tmp:
        save_file(contiguous, str(tmp), metadata=encoded)
    return sha256_file(path)


def read_artifact(path: str | Path, *, expected_format: str, what: str) -> Artifact:
    from safetensors import safe_open

    path = require_file(path, what)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own Rust-side error type
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"cannot read {what} {path}: not a valid safetensors file ({first})") from error
    found = metadata.get("format")
    if found != expected_format:
        raise InputError(
            f"{path} is not a {what} file (format {found or 'missing'}, expected {expected_format})"
        )
    decoded = {key: _decode(value) for key, value in metadata.items()}
    return Artifact(path=path, sha256=sha256_file(path), tensors=tensors, metadata=decoded)


def _decode(text: str) -> Any:
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def read_importance(path: str | Path) -> Artifact:
    artifact = read_artifact(path, expected_format=IMPORTANCE_FORMAT, what="importance")
    groups = artifact.metadata.get("groups")
    if not isinstance(groups, list) or not groups:
        raise InputError(f"{artifact.path}: metadata 'groups' must list the group names")
    for key, tensor in artifact.tensors.items():
        if tensor.ndim < 2 or tensor.shape[0] != len(groups):
            raise InputError(
                f"{artifact.path}: {key} has shape {tuple(tensor.shape)}, expected "
                f"[{len(groups)}, *weight.shape] for {len(groups)} groups"
            )
    return artifact


def read_masks(path: str | Path) -> Artifact:
    artifact = read_artifact(path, expected_format=MASKS_FORMAT, what="masks")
    for key, tensor in artifact.tensors.items():
        if tensor.dtype != torch.bool:
            raise InputError(f"{artifact.path}: mask {key} is {tensor.dtype}, expected bool")
    return artifact


def check_fits(
    tensors: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    *,
    source: Path,
    model_name: str,
    leading_dims: int = 0,
) -> None:
    """Refuse an artifact whose keys or shapes are not the model's prunable weights."""
    unknown = [key for key in tensors if key not in weights]
    if unknown:
        raise InputError(
            f"{source} does not fit {model_name}: it has {unknown[0]}, which is not a prunable "
            f"weight of that model ({len(unknown)} such key(s)); was it made for another model?"
        )
    for key, tensor in tensors.items():
        shape = tuple(tensor.shape[leading_dims:])
        if shape != tuple(weights[key].shape):
            raise InputError(
                f"{source} does not fit {model_name}: {key} has shape {shape}, the model's weight "
                f"is {tuple(weights[key].shape)}"
            )

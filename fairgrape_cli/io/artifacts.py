"""The two safetensors artifacts, importance and masks: write atomically, read with checks."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..errors import InputError, first_line
from .files import atomic_output, require_file, resolve_recorded, save_safetensors, sha256_file

IMPORTANCE_FORMAT = "fairgrape.importance.v1"
MASKS_FORMAT = "fairgrape.masks.v1"
_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
    "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64,
}  # fmt: skip


class TensorInfo(NamedTuple):
    """What the file header says about one tensor, without reading it."""

    shape: tuple[int, ...]
    dtype: torch.dtype | None

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self.shape)


@dataclass
class Artifact:
    """Tensors of one artifact file and its metadata (JSON values decoded).

    ``tensors`` is a dict, or with ``lazy=True`` a mapping that reads a tensor each time it is
    looked up (so a large file is never in memory at once); ``headers`` has every shape and dtype.
    The file's sha256 is computed on a background thread from the moment it is read.
    """

    path: Path
    tensors: Mapping[str, torch.Tensor]
    metadata: dict[str, Any]
    headers: dict[str, TensorInfo]
    digest: Future | str

    @property
    def sha256(self) -> str:
        """The file's sha256 (waits for the background hash)."""
        if isinstance(self.digest, Future):
            self.digest = self.digest.result()
        return self.digest

    def recorded_path(self, key: str) -> Path | None:
        """A path the file records, resolved relative to the file itself."""
        value = self.metadata.get(key)
        return resolve_recorded(value, self.path) if value else None


class LazyTensors(Mapping):
    """Tensors of a safetensors file, each read when looked up and not kept.

    Every lookup opens the file afresh: safetensors maps it into memory, so pages read through a
    handle kept open would stay resident until the end; this way they go with the tensor.
    """

    def __init__(self, path: Path, keys: list[str]) -> None:
        self.path = path
        self._keys = keys
        self._known = set(keys)

    def __getitem__(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        if key not in self._known:
            raise KeyError(key)
        with safe_open(str(self.path), framework="pt") as handle:
            return handle.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._known


class _TensorView(Mapping):
    """A mapping of tensors that changes each tensor as it is looked up (its ``__getitem__``);
    the keys are those of the mapping it wraps."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._tensors = tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __contains__(self, key: object) -> bool:
        return key in self._tensors


class UnscaledTensors(_TensorView):
    """Float16 importance read back as float32 with each layer's stored scale divided out."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], scales: Mapping[str, float]) -> None:
        super().__init__(tensors)
        self._scales = scales

    def __getitem__(self, key: str) -> torch.Tensor:
        values = self._tensors[key]
        scale = self._scales.get(key)
        return values if scale is None else values.to(torch.float32) / scale  # never in place


class CheckedImportance(_TensorView):
    """Importance refused layer by layer as it is read (lazily: one pass over a layer already in
    memory, nothing read twice): NaN or infinite values, and negative ones, which squared gradient
    products cannot be (a file from another tool, or a broken one). Each is named by its layer."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], path: Path) -> None:
        super().__init__(tensors)
        self.path = path

    def __getitem__(self, key: str) -> torch.Tensor:
        values = self._tensors[key]
        check_importance_values(values, key=key, path=self.path)
        return values


def check_importance_values(values: torch.Tensor, *, key: str, path: Path) -> None:
    """Refuse importance values no squared gradient can give (NaN, infinite, negative)."""
    if values.numel() == 0 or values.dtype == torch.bool:
        return
    low, high = (float(bound) for bound in torch.aminmax(values))  # one pass; NaN makes both NaN
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(
            f"{path}: importance of {key} holds NaN or infinite values; rescore the model "
            "(a model whose loss diverges gives such gradients)"
        )
    if low < 0:
        raise InputError(
            f"{path}: importance of {key} holds negative values (lowest {low:.3g}), which squared "
            "gradients cannot be; was it written by another tool? Rescore the model"
        )


# Squared gradient products sit far below float16's smallest normal number (6e-5), so each layer
# is stored multiplied by a power of two that puts its largest value near 2**14; a power of two
# keeps the scaling itself exact. The factor stays within float32 (2**127): a layer smaller than
# that allows still underflows, as it would unscaled.
FLOAT16_TOP_EXPONENT = 14
LARGEST_SCALE_EXPONENT = 127


def float16_scaled(values: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``values`` (float32) as float16 times a power of two; the factor to divide by on reading."""
    largest = float(values.max()) if values.numel() else 0.0
    if not (0.0 < largest < float("inf")):
        return values.to(torch.float16), 1.0
    _, exponent = math.frexp(largest)  # largest = m * 2**exponent with 0.5 <= m < 1
    scale = 2.0 ** min(FLOAT16_TOP_EXPONENT + 1 - exponent, LARGEST_SCALE_EXPONENT)
    return (values * scale).to(torch.float16), scale


_hashing: ThreadPoolExecutor | None = None


def _hash_in_background(path: Path) -> Future:
    global _hashing
    if _hashing is None:
        _hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairgrape-sha256")
    return _hashing.submit(sha256_file, path)


def write_artifact(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> str:
    """Write a safetensors file atomically; metadata values become strings (JSON when not)."""
    encoded = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in metadata.items()
        if value is not None
    }
    with atomic_output(path) as tmp:
        save_safetensors(tensors, tmp, encoded)
        digest = sha256_file(tmp)  # (inside an all_or_none block the file is renamed later)
    return digest


def read_artifact(path: str | Path, *, expected_format: str, what: str, lazy: bool = False) -> Artifact:
    """Read a safetensors artifact of ``expected_format`` (lazily: tensors read when looked up)."""
    from safetensors import safe_open

    path = require_file(path, what)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = list(handle.keys())
            headers = {key: _tensor_info(handle.get_slice(key)) for key in keys}
            tensors = LazyTensors(path, keys) if lazy else {key: handle.get_tensor(key) for key in keys}
    except Exception as error:  # safetensors raises its own Rust-side error type
        raise InputError(f"cannot read {what} {path}: not a valid safetensors file ({first_line(error)})") from error
    found = metadata.get("format")
    if found != expected_format:
        raise InputError(
            f"{path} is not a {what} file (format {found or 'missing'}, expected {expected_format})"
        )
    decoded = {key: _decode(value) for key, value in metadata.items()}
    return Artifact(
        path=path, tensors=tensors, metadata=decoded, headers=headers, digest=_hash_in_background(path)
    )


def _tensor_info(view: Any) -> TensorInfo:
    return TensorInfo(tuple(view.get_shape()), _DTYPES.get(view.get_dtype()))


def _decode(text: str) -> Any:
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def read_importance(path: str | Path, *, lazy: bool = False) -> Artifact:
    """Read an importance file, its groups and per-layer scales checked."""
    artifact = read_artifact(path, expected_format=IMPORTANCE_FORMAT, what="importance", lazy=lazy)
    groups = artifact.metadata.get("groups")
    if not isinstance(groups, list) or not groups:
        raise InputError(f"{artifact.path}: metadata 'groups' must list the group names")
    for key, tensor in artifact.headers.items():
        if tensor.ndim < 2 or tensor.shape[0] != len(groups):
            raise InputError(
                f"{artifact.path}: {key} has shape {tuple(tensor.shape)}, expected "
                f"[{len(groups)}, *weight.shape] for {len(groups)} groups"
            )
    scales = artifact.metadata.get("scales")
    if scales is not None:
        if not isinstance(scales, dict) or not all(_valid_scale(v) for v in scales.values()):
            raise InputError(f"{artifact.path}: metadata 'scales' must map layers to positive numbers")
        unknown = sorted(set(scales) - set(artifact.headers))
        if unknown:
            raise InputError(f"{artifact.path}: metadata 'scales' names {unknown[0]}, which the file does not hold")
        artifact.tensors = UnscaledTensors(artifact.tensors, scales)
    elif any(info.dtype == torch.float16 for info in artifact.headers.values()):
        logging.getLogger("fairgrape").warning(
            "%s holds float16 importance without per-layer scales: small scores may have underflowed "
            "to 0; rescore with --dtype bfloat16 or this version's float16",
            artifact.path,
        )
    artifact.tensors = CheckedImportance(artifact.tensors, artifact.path)
    return artifact


def _valid_scale(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def read_masks(path: str | Path) -> Artifact:
    """Read a masks file; every mask must be bool."""
    artifact = read_artifact(path, expected_format=MASKS_FORMAT, what="masks")
    for key, tensor in artifact.headers.items():
        if tensor.dtype != torch.bool:
            raise InputError(f"{artifact.path}: mask {key} is {tensor.dtype}, expected bool")
    return artifact


def check_fits(
    tensors: Mapping[str, torch.Tensor | TensorInfo],
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

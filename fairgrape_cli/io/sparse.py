"""The sparse checkpoint file: each masked weight as a packed bit mask plus its kept values.

A safetensors file. For each sparse layer ``NAME`` (a prunable weight with exact zeros):

- ``NAME:mask``: uint8, ``ceil(n / 8)`` bytes, n = the weight's element count. Bit i says whether
  element i of the weight, flattened in row-major (C) order, is kept (``!= 0``). Bits are packed
  in numpy's ``packbits`` order: element 0 is the most significant bit of byte 0; the unused low
  bits of the last byte are 0.
- ``NAME:values``: the kept elements, 1-D, in the same order, as float16 or in the weight's own
  dtype (float32 for every usual checkpoint: bit-exact).

Every other tensor is stored under its own name, as is. The metadata holds the native checkpoint's
fields (``arch``, ``num_classes``, ``classes``, ``image_size``, ``mean``, ``std``, ``fairgrape``:
JSON strings, as a native ``.safetensors`` checkpoint) plus ``format`` = ``fairgrape.sparse.v1``,
``values`` (``float32`` or ``float16``) and ``sparse_layers``:
``{NAME: {"shape": [...], "dtype": "float32", "kept": k}}``.

A weight is stored sparse when it has exact zeros, whatever made them: the mask is read from the
weight itself, so the file round-trips without the masks file the checkpoint names (which may be
gone) and stays right after fine-tuning. Zeros come back as +0.0 (masking by multiplication leaves
-0.0 where a negative weight was removed; the two are equal in every computation a model does).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .files import save_safetensors

SPARSE_FORMAT = "fairgrape.sparse.v1"
MASK_SUFFIX = ":mask"
VALUES_SUFFIX = ":values"
VALUE_DTYPES = ("float32", "float16")  # float32: each layer's own dtype, exact; float16: half the bytes
_FLOAT16_MAX = float(torch.finfo(torch.float16).max)
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def is_sparse(metadata: Mapping[str, str]) -> bool:
    """Whether safetensors ``metadata`` is a sparse export's."""
    return metadata.get("format") == SPARSE_FORMAT


def sparse_layer_names(state_dict: Mapping[str, torch.Tensor], candidates: Iterable[str]) -> list[str]:
    """The candidates (prunable weights) that have exact zeros: the layers stored as mask + values."""
    return [name for name in candidates if state_dict[name].is_floating_point() and _has_zeros(state_dict[name])]


def _has_zeros(tensor: torch.Tensor) -> bool:
    if tensor.dtype in _NUMPY_DTYPES:  # numpy: one thread, not slowed by torch's pool on a busy machine
        return not np.all(tensor.detach().cpu().numpy())
    return bool((tensor == 0).any())


def write_sparse(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    *,
    layers: Iterable[str],
    values: str,
    fields: Mapping[str, Any],
) -> None:
    """Write ``state_dict`` with ``layers`` packed; ``fields`` are the native checkpoint's
    metadata (JSON-encoded unless already strings)."""
    if values not in VALUE_DTYPES:
        raise InputError(f"--values {values}: choose {' or '.join(VALUE_DTYPES)}")
    layers = list(layers)
    tensors, described = {}, {}
    for name, tensor in state_dict.items():
        if name.endswith((MASK_SUFFIX, VALUES_SUFFIX)):
            raise InputError(
                f"cannot store {name} in a sparse file: its name ends like a sparse layer's parts"
            )
        if name not in layers:
            tensors[name] = tensor
    for name in layers:
        packed, kept = _encode(name, state_dict[name], values)
        tensors[name + MASK_SUFFIX], tensors[name + VALUES_SUFFIX] = packed, kept
        described[name] = {
            "shape": list(state_dict[name].shape),
            "dtype": str(state_dict[name].dtype).removeprefix("torch."),
            "kept": kept.numel(),
        }
    metadata = {key: value if isinstance(value, str) else json.dumps(value) for key, value in fields.items()}
    metadata.update(format=SPARSE_FORMAT, values=values, sparse_layers=json.dumps(described))
    save_safetensors(tensors, path, metadata)


def _encode(name: str, weight: torch.Tensor, values: str) -> tuple[torch.Tensor, torch.Tensor]:
    flat = weight.detach().cpu().contiguous().reshape(-1)
    if flat.dtype in _NUMPY_DTYPES:
        array = flat.numpy()
        kept_mask = array != 0
        kept = torch.from_numpy(array[kept_mask])
    else:
        kept_mask = (flat != 0).numpy()
        kept = flat[torch.from_numpy(kept_mask)]
    packed = torch.from_numpy(np.packbits(kept_mask))
    if values == "float16" and kept.dtype != torch.float16:
        largest = float(np.abs(kept.float().numpy()).max()) if kept.numel() else 0.0
        if not largest <= _FLOAT16_MAX:  # also catches inf/nan
            raise InputError(
                f"--values float16: {name} holds {largest:g}, beyond float16's range; use --values float32"
            )
        kept = torch.from_numpy(kept.float().numpy().astype(np.float16))  # round to nearest even, as torch
    return packed, kept


def decode(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: Path
) -> dict[str, torch.Tensor]:
    """The dense state dict a sparse file holds (exact zeros where masked)."""
    try:
        layers = json.loads(metadata["sparse_layers"])
    except (KeyError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: sparse file without a readable 'sparse_layers' record") from error
    state_dict = {
        name: tensor for name, tensor in tensors.items() if not name.endswith((MASK_SUFFIX, VALUES_SUFFIX))
    }
    for name, layer in layers.items():
        state_dict[name] = _decode_layer(name, layer, tensors, path)
    return state_dict


def _decode_layer(
    name: str, layer: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], path: Path
) -> torch.Tensor:
    packed, kept = tensors.get(name + MASK_SUFFIX), tensors.get(name + VALUES_SUFFIX)
    try:
        shape, dtype = [int(size) for size in layer["shape"]], getattr(torch, layer["dtype"])
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point) or min(shape, default=0) < 0:
            raise TypeError(layer["dtype"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(f"{path}: sparse layer {name} has a broken shape/dtype record") from error
    size = math.prod(shape)
    if packed is None or kept is None or packed.dtype != torch.uint8 or packed.ndim != 1 or kept.ndim != 1:
        raise InputError(f"{path}: sparse layer {name} lacks a 1-D uint8 mask or 1-D values")
    if packed.numel() != (size + 7) // 8:
        raise InputError(
            f"{path}: mask of {name} has {packed.numel()} bytes, its shape {shape} needs {(size + 7) // 8}"
        )
    bits = np.unpackbits(packed.numpy(), count=size).view(np.bool_)
    if np.count_nonzero(bits) != kept.numel():
        kept_count = np.count_nonzero(bits)
        raise InputError(f"{path}: mask of {name} keeps {kept_count} weights but {kept.numel()} values are stored")
    if dtype in _NUMPY_DTYPES:  # numpy's boolean assignment: 10x faster than torch's (ResNet-18)
        weight = np.zeros(size, dtype=_NUMPY_DTYPES[dtype])
        weight[bits] = kept.to(dtype).numpy()
        return torch.from_numpy(weight).reshape(shape)
    weight = torch.zeros(size, dtype=dtype)  # bfloat16: no numpy dtype
    weight.masked_scatter_(torch.from_numpy(bits), kept.to(dtype))
    return weight.reshape(shape)

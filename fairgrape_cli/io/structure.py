"""The structure record of a slim checkpoint: which layers are narrower than ``arch`` builds them.

A channel-pruned model is the architecture's model with some layers holding fewer channels. Its
native checkpoint stores the state dict as usual (every tensor at its slim shape) and, under the
key ``structure``, the layers whose size attributes differ from a fresh build of the architecture:

    {"format": "fairgrape.structure.v1",
     "modules": {"layer1.0.conv1": {"in_channels": 64, "out_channels": 32},
                 "layer1.0.bn1": {"num_features": 32}, ...}}

A transformer pruned by heads also records its attention layers' head counts (timm's
``{"blocks.0.attn": {"num_heads": 3, "attn_dim": 192}}``, transformers' ``num_attention_heads``).

Loading builds the architecture, sets those attributes and gives each recorded layer's parameters
and buffers the shapes of the state dict, then loads the state dict strictly. This needs neither
Torch-Pruning nor a forward pass (no tracing, no example input), and it records the *result* of
any number of prunings, not their history, so a model pruned again and again stays one record.
Only plain values (integers and lists of them) are stored: no pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError

STRUCTURE_FORMAT = "fairgrape.structure.v1"

# Layer type -> the attributes that say how wide it is. A layer not listed here can still be
# recorded (its parameters' shapes come from the state dict); these are the ones whose forward
# pass or ``repr`` reads the width from an attribute.
SIZE_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    nn.modules.conv._ConvNd: ("in_channels", "out_channels", "groups"),
    nn.Linear: ("in_features", "out_features"),
    nn.modules.batchnorm._NormBase: ("num_features",),  # BatchNorm*d and InstanceNorm*d
    nn.GroupNorm: ("num_groups", "num_channels"),
    nn.LayerNorm: ("normalized_shape",),
    nn.PReLU: ("num_parameters",),
}


# Attention layers read their head count (and width) from these attributes (timm's Attention:
# num_heads, attn_dim; transformers' attention: num_attention_heads, all_head_size); any module
# holding one as an integer records it when it differs from the architecture's.
HEAD_ATTRIBUTES = ("num_heads", "attn_dim", "num_attention_heads", "all_head_size")


def size_attributes(module: nn.Module) -> tuple[str, ...]:
    """The attributes that say how wide ``module`` is (its type's, else the head counts it holds)."""
    for kind, names in SIZE_ATTRIBUTES.items():
        if isinstance(module, kind):
            return names
    return tuple(name for name in HEAD_ATTRIBUTES if _is_size(getattr(module, name, None)))


def _attribute(module: nn.Module, name: str) -> Any:
    value = getattr(module, name)
    return list(value) if isinstance(value, (tuple, list)) else value


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(module.named_parameters(recurse=False))
    tensors.update((name, buffer) for name, buffer in module.named_buffers(recurse=False) if buffer is not None)
    return tensors


def describe_structure(model: nn.Module, reference: nn.Module) -> dict[str, Any] | None:
    """The record of the layers of ``model`` that differ in size from ``reference`` (a fresh
    build of the same architecture, on any device, ``meta`` included); None when none differ."""
    fresh = dict(reference.named_modules())
    modules: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        other = fresh.get(name)
        if other is None or type(other) is not type(module):
            continue  # not the architecture's layer: the strict load of the state dict decides
        changed = {
            attribute: _attribute(module, attribute)
            for attribute in size_attributes(module)
            if _attribute(module, attribute) != _attribute(other, attribute)
        }
        theirs = _own_tensors(other)
        resized = any(
            key in theirs and tuple(tensor.shape) != tuple(theirs[key].shape)
            for key, tensor in _own_tensors(module).items()
        )
        if changed or resized:
            modules[name] = changed
    return {"format": STRUCTURE_FORMAT, "modules": modules} if modules else None


def apply_structure(
    model: nn.Module, record: Any, state_dict: Mapping[str, torch.Tensor], *, source: Path
) -> None:
    """Narrow the fresh ``model`` to the record (in place) so that ``state_dict`` loads into it.

    Each recorded layer gets its size attributes, and its own parameters and buffers the shapes
    the state dict holds for them (never wider than the architecture's, nor of another rank).
    """
    modules = _recorded_modules(record, source)
    layers = dict(model.named_modules())
    for name, attributes in modules.items():
        module = layers.get(name)
        if module is None:
            raise InputError(
                f"{source}: its structure record names layer {name!r}, which the architecture lacks"
            )
        allowed = size_attributes(module)
        for attribute, value in attributes.items():
            if attribute not in allowed:
                raise InputError(
                    f"{source}: structure record sets {name}.{attribute}, which is not a size of a "
                    f"{type(module).__name__}"
                )
            if not _is_size(value):
                raise InputError(
                    f"{source}: structure record gives {name}.{attribute} = {value!r}; expected a size"
                )
            setattr(module, attribute, tuple(value) if isinstance(value, list) else value)
        prefix = f"{name}." if name else ""
        for key, tensor in _own_tensors(module).items():
            stored = state_dict.get(prefix + key)
            if stored is None or stored.shape == tensor.shape:
                continue  # a missing key is reported by the strict load
            if stored.ndim != tensor.ndim or any(s > t for s, t in zip(stored.shape, tensor.shape)):
                raise InputError(
                    f"{source}: {prefix + key} has shape {tuple(stored.shape)}, which does not narrow the "
                    f"architecture's {tuple(tensor.shape)}"
                )
            _resize(module, key, tuple(stored.shape))


def _recorded_modules(record: Any, source: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(record, Mapping) or record.get("format") != STRUCTURE_FORMAT:
        found = record.get("format") if isinstance(record, Mapping) else type(record).__name__
        raise InputError(f"{source}: unknown structure record ({found}); expected {STRUCTURE_FORMAT}")
    modules = record.get("modules")
    if not isinstance(modules, Mapping) or not all(
        isinstance(name, str) and isinstance(values, Mapping) for name, values in modules.items()
    ):
        raise InputError(f"{source}: structure record 'modules' must map layer names to their sizes")
    return {name: dict(values) for name, values in modules.items()}


def _is_size(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_is_size(item) for item in value)
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _resize(module: nn.Module, key: str, shape: tuple[int, ...]) -> None:
    """Replace ``module.key`` by an uninitialised tensor of ``shape`` (the state dict fills it)."""
    old = getattr(module, key)
    new = torch.empty(shape, dtype=old.dtype, device=old.device)
    if isinstance(old, nn.Parameter):
        setattr(module, key, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        setattr(module, key, new)  # a registered buffer stays registered under its name

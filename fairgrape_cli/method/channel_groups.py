"""Coupled channel groups of a model, found and removed with Torch-Pruning's dependency graph.

Channels cannot be removed from one layer alone: the next layer reads them, a BatchNorm scales
them, a residual addition adds them to another layer's. Torch-Pruning (DepGraph) traces the model
once and, for each convolution or linear layer, finds every parameter slice that must go with
one of its output channels: its *group*. One unit of structured pruning is one channel index of
one group. This module turns those groups into plain index maps (which slice of which prunable
weight belongs to which unit, for scoring: see ``units``) and removes the units selection drops.
It is the only module that talks to Torch-Pruning; it reads and writes no files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InputError, error_summary
from .units import WeightSlice

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # the layers with prunable weights (docs/design.md)


@dataclass
class ChannelGroup:
    """The channels coupled to one layer's outputs: ``size`` units, each removing its position
    along every slice. ``name`` (the layer) is the first convolution or linear layer, in model
    order, whose output channels the group removes: "per layer" selection means per group."""

    name: str
    size: int
    out_dim: int  # the dimension of ``name``'s weight that runs over the units
    slices: list[WeightSlice]
    _root: nn.Module = field(repr=False)
    _handler: Callable = field(repr=False)


class ChannelGraph:
    """The prunable channel groups of ``model``; :meth:`remove` shrinks the model in place.

    ``weights`` are the prunable weights (parameter name -> tensor) that may change: a group
    that would cut a weight outside them (left out by ``--include``/``--exclude``, or without
    importance) is left whole, as is the group of the classifier's outputs. ``example_input``
    is a batch of one image, for the trace.
    """

    def __init__(self, model: nn.Module, *, weights: Mapping[str, torch.Tensor], example_input: torch.Tensor):
        import torch_pruning as tp

        self.model = model
        names = {id(parameter): name for name, parameter in model.named_parameters()}
        self._weight_names = {
            id(module): names[id(module.weight)]
            for module in model.modules()
            if isinstance(module, _PRUNABLE)
            and id(getattr(module, "weight", None)) in names
        }
        self._order = {id(module): index for index, (_, module) in enumerate(model.named_modules())}
        self._module_names = {id(module): name for name, module in model.named_modules()}
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():  # the dependency graph is traced through autograd
                self.graph = tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_input, verbose=False
                )
        except Exception as error:  # noqa: BLE001 - tracing fails in many ways on unusual models
            raise InputError(
                f"cannot trace the model's channel dependencies for --granularity channel "
                f"({error_summary(error)}); "
                "use --granularity weight"
            ) from error
        finally:
            model.train(was_training)
        self.groups = self._find_groups(set(weights))

    # ------------------------------------------------------------------------------- finding

    def _find_groups(self, allowed: set[str]) -> list[ChannelGroup]:
        found = []
        for group in self.graph.get_all_groups(root_module_types=_PRUNABLE):
            described = self._describe(group, allowed)
            if described is not None:
                found.append(described)
        found.sort(key=lambda group: self._order[id(self._layer_module(group.name))])
        return found

    def _layer_module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)

    def _describe(self, group: Any, allowed: set[str]) -> ChannelGroup | None:
        """The group as weight slices, or None when it must stay whole."""
        import torch_pruning as tp

        output_type = getattr(tp.ops.OPTYPE, "OUTPUT", None)  # (torch-pruning >= 1.6 marks outputs)
        slices: dict[tuple[str, int], WeightSlice] = {}
        layers = []
        for item in group.items:
            dep, node = item.dep, item.dep.target
            if output_type is not None and node.type == output_type:
                return None  # the model's outputs: the classes
            removes_outputs = self.graph.is_out_channel_pruning_fn(dep.handler)
            if removes_outputs and not node.outputs:
                return None  # a layer whose outputs are the model's outputs
            module = node.module
            if not isinstance(module, nn.Module) or id(module) not in self._weight_names:
                continue  # BatchNorm, activations, additions: no prunable weight, no importance
            name = self._weight_names[id(module)]
            if name not in allowed:
                return None
            dim = _weight_dim(module, removes_outputs)
            if dim is None:
                return None  # grouped (not depthwise) convolutions: Torch-Pruning approximates them
            indices = torch.as_tensor(list(item.idxs), dtype=torch.int64)
            units = torch.as_tensor(list(item.root_idxs), dtype=torch.int64)
            earlier = slices.get((name, dim))
            if earlier is not None:  # the same slice reached twice (depthwise in and out): once
                fresh = ~torch.isin(indices, earlier.indices)
                indices = torch.cat([earlier.indices, indices[fresh]])
                units = torch.cat([earlier.units, units[fresh]])
            slices[(name, dim)] = WeightSlice(name, dim, indices, units)
            if removes_outputs and dim == _weight_dim(module, True):
                layers.append(module)
        if not layers:
            return None
        root = group[0].dep.target.module
        size = len(group[0].idxs)
        if size < 2:
            return None
        layer = min(layers, key=lambda module: self._order[id(module)])
        return ChannelGroup(
            name=self._module_names[id(layer)],
            size=size,
            out_dim=_weight_dim(layer, True),
            slices=list(slices.values()),
            _root=root,
            _handler=group[0].dep.handler,
        )

    # ------------------------------------------------------------------------------- removing

    def remove(
        self, kept: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Remove the units of each group that ``kept`` (group name -> bool ``[size]``) drops, in
        place, and return ``masks`` (parameter name -> bool, the model's shapes before) cut the
        same way, so weights masked before stay masked in the slim model."""
        masks = {name: mask.clone() for name, mask in (masks or {}).items()}
        for group in self.groups:
            removed = (~kept[group.name].to(torch.bool)).nonzero().flatten().tolist()
            if not removed:
                continue
            if len(removed) >= group.size:
                raise ValueError(f"selection removes every channel of {group.name}")
            pruning = self.graph.get_pruning_group(group._root, group._handler, removed)
            for item in pruning.items:
                module = item.dep.target.module
                name = self._weight_names.get(id(module)) if isinstance(module, nn.Module) else None
                if name is None or name not in masks:
                    continue
                dim = _weight_dim(module, self.graph.is_out_channel_pruning_fn(item.dep.handler))
                masks[name] = _without(masks[name], dim, item.idxs)
            pruning.prune()
        return masks


def _weight_dim(module: nn.Module, outputs: bool) -> int | None:
    """The dimension of ``module.weight`` that Torch-Pruning cuts when it removes the module's
    output (``outputs``) or input channels; None for layers this code does not score."""
    if isinstance(module, nn.Linear):
        return 0 if outputs else 1
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups == module.out_channels and module.out_channels > 1:
            return 0  # depthwise: one filter per channel, inputs and outputs cut together
        if module.groups != 1:
            return None
        if module.transposed:
            return 1 if outputs else 0
        return 0 if outputs else 1
    return None


def _without(mask: torch.Tensor, dim: int, removed: Sequence[int]) -> torch.Tensor:
    keep = torch.ones(mask.shape[dim], dtype=torch.bool)
    keep[torch.as_tensor(list(removed), dtype=torch.int64)] = False
    return mask.index_select(dim, keep.nonzero().flatten())

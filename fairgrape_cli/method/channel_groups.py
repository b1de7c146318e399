"""Coupled channel groups of a model, found and removed with Torch-Pruning's dependency graph.

Channels cannot be removed from one layer alone: the next layer reads them, a BatchNorm scales
them, a residual addition adds them to another layer's. Torch-Pruning (DepGraph) traces the model
once and, for each convolution or linear layer, finds every parameter slice that must go with
one of its output channels: its *group*. One unit of structured pruning is one channel index of
one group. This module turns those groups into plain index maps (which slice of which prunable
weight belongs to which unit, for scoring: see ``units``) and removes the units selection drops.
It is the only module that talks to Torch-Pruning; it reads and writes no files.

Transformers: the channels of an attention layer's query, key and value projections are only
removable a whole head at a time (a query channel is multiplied with the same key channel, and the
heads are reshaped from consecutive channels). In the attention layers this module knows (timm's
``Attention``, with one fused ``qkv`` layer; transformers' ViT-style attention, with ``q_proj``,
``k_proj``, ``v_proj``, or ``query``, ``key``, ``value``) a unit is one head: its channels in
every projection and the output projection's inputs that read them, Torch-Pruning's head
pruning; the layer's head count (``num_heads``, ``num_attention_heads``, ...) follows. The
token width every block adds to (the residual stream, with the patch embedding and position
embeddings) stays whole: heads and MLP hidden units are the units. A group whose channels pass
through an attention product of a layer not known here is left whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InputError, error_summary
from .units import WeightSlice

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # the layers with prunable weights (docs/design.md)
# autograd nodes of attention products (q @ k^T, attention @ v, fused scaled-dot-product kernels)
_ATTENTION_PRODUCT = re.compile(r"bmm|scaleddotproduct|attention|einsum", re.IGNORECASE)


@dataclass
class AttentionLayout:
    """One multi-head attention layer: the projections whose outputs are split into heads."""

    module: nn.Module  # holds the head count attributes
    projections: list[nn.Module]  # q, k, v: one fused layer (timm) or three
    output: nn.Module | None  # the layer that reads the heads (None: outside ``module``)
    heads: int
    head_dim: int

    @property
    def width(self) -> int:
        """Channels of the heads together: ``heads x head_dim``."""
        return self.heads * self.head_dim

    def head_of(self, channels: torch.Tensor) -> torch.Tensor:
        """The head of each channel of a projection's outputs (q, k and v of a fused layer alike)."""
        return (channels % self.width) // self.head_dim

    def set_heads(self, heads: int) -> None:
        """Record the new head count on the layer (and the widths it derives from it)."""
        self.heads = heads
        for name in ("num_heads", "num_attention_heads"):
            if isinstance(getattr(self.module, name, None), int):
                setattr(self.module, name, heads)
        for name in ("attn_dim", "all_head_size"):
            if isinstance(getattr(self.module, name, None), int):
                setattr(self.module, name, self.width)


def attention_layouts(model: nn.Module) -> list[AttentionLayout]:
    """The attention layers of ``model`` that can lose whole heads (see the module's docstring).

    A layer qualifies when its projections are plain Linear layers of ``heads x head_dim``
    outputs and it holds no parameter besides them (and per-head query/key norms): a relative
    position table or a gate indexed by head would not follow the heads.
    """
    found = []
    for module in model.modules():
        layout = _timm_layout(module) or _transformers_layout(module)
        if layout is not None and _only_known_parameters(module, layout):
            found.append(layout)
    return found


def _timm_layout(module: nn.Module) -> AttentionLayout | None:
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    heads, head_dim = getattr(module, "num_heads", None), getattr(module, "head_dim", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and _ints(heads, head_dim)):
        return None
    if qkv.out_features != 3 * heads * head_dim or proj.in_features != heads * head_dim:
        return None
    return AttentionLayout(module, [qkv], proj, heads, head_dim)


def _transformers_layout(module: nn.Module) -> AttentionLayout | None:
    for names, output_name in ((("q_proj", "k_proj", "v_proj"), "o_proj"), (("query", "key", "value"), None)):
        projections = [getattr(module, name, None) for name in names]
        if all(isinstance(layer, nn.Linear) for layer in projections):
            break
    else:
        return None
    heads = getattr(module, "num_attention_heads", getattr(module, "num_heads", None))
    head_dim = getattr(module, "head_dim", getattr(module, "attention_head_size", None))
    if not _ints(heads, head_dim) or any(layer.out_features != heads * head_dim for layer in projections):
        return None  # (grouped-query attention, with fewer key/value heads, is left whole)
    output = getattr(module, output_name, None) if output_name else None
    if output is not None and (not isinstance(output, nn.Linear) or output.in_features != heads * head_dim):
        return None
    return AttentionLayout(module, projections, output, heads, head_dim)


def _ints(*values: Any) -> bool:
    return all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in values)


def _only_known_parameters(module: nn.Module, layout: AttentionLayout) -> bool:
    known = {id(p) for layer in [*layout.projections, layout.output] if layer is not None for p in layer.parameters()}
    for name in ("q_norm", "k_norm"):  # per-head norms: over head_dim, untouched by head removal
        norm = getattr(module, name, None)
        if isinstance(norm, nn.Module):
            known.update(id(p) for p in norm.parameters())
    return all(id(parameter) in known for parameter in module.parameters())


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
    unit_width: int = 1  # positions of ``name``'s weight along ``out_dim`` per unit (a head: several)
    _root_units: torch.Tensor | None = field(default=None, repr=False)  # unit of each root channel
    _attention: AttentionLayout | None = field(default=None, repr=False)


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
        self._example_input = example_input
        names = {id(parameter): name for name, parameter in model.named_parameters()}
        self._weight_names = {
            id(module): names[id(module.weight)]
            for module in model.modules()
            if isinstance(module, _PRUNABLE)
            and id(getattr(module, "weight", None)) in names
        }
        self._order = {id(module): index for index, (_, module) in enumerate(model.named_modules())}
        self._module_names = {id(module): name for name, module in model.named_modules()}
        self._attention = {
            id(layer): layout for layout in attention_layouts(model) for layer in layout.projections
        }
        self._attention_outputs = {
            id(layout.output) for layout in self._attention.values() if layout.output is not None
        }
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
        attention = self._attention_of(group)
        if attention is False:
            return None
        layout = attention or None
        slices: dict[tuple[str, int], WeightSlice] = {}
        layers = []
        for item in group.items:
            dep = item.dep
            removes_outputs = self.graph.is_out_channel_pruning_fn(dep.handler)
            if self._is_model_output(dep.target, removes_outputs):
                return None  # the classes
            module = dep.target.module
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
            if layout is not None:
                units = layout.head_of(units)
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
        root_channels = torch.as_tensor(list(group[0].idxs), dtype=torch.int64)
        size = layout.heads if layout is not None else len(root_channels)
        if size < 2:
            return None
        layer = min(layers, key=lambda module: self._order[id(module)])
        out_dim = _weight_dim(layer, True)
        return ChannelGroup(
            name=self._module_names[id(layer)],
            size=size,
            out_dim=out_dim,
            slices=list(slices.values()),
            _root=root,
            _handler=group[0].dep.handler,
            unit_width=layer.weight.shape[out_dim] // size if layout is not None else 1,
            _root_units=layout.head_of(root_channels) if layout is not None else None,
            _attention=layout,
        )

    def _is_model_output(self, node: Any, removes_outputs: bool) -> bool:
        import torch_pruning as tp

        output_type = getattr(tp.ops.OPTYPE, "OUTPUT", None)  # (torch-pruning >= 1.6 marks outputs)
        if output_type is not None and node.type == output_type:
            return True
        return removes_outputs and not node.outputs  # a layer whose outputs are the model's outputs

    def _attention_of(self, group: Any) -> AttentionLayout | bool | None:
        """The attention layer whose heads ``group`` removes; None for a group that does not reach
        an attention layer; False for one that must stay whole: it runs through an attention
        product no known layer explains, or it is the token width an attention layer reads
        (its projections' inputs) or writes (its output projection's outputs)."""
        layouts, through_product = set(), False
        for item in group.items:
            node, module = item.dep.target, item.dep.target.module
            removes_outputs = self.graph.is_out_channel_pruning_fn(item.dep.handler)
            if id(module) in self._attention:
                if not removes_outputs:
                    return False
                layouts.add(id(self._attention[id(module)]))
            elif id(module) in self._attention_outputs and removes_outputs:
                return False
            elif _ATTENTION_PRODUCT.search(_grad_name(node)):
                through_product = True
        if len(layouts) > 1:
            return False
        if layouts:
            chosen = next(iter(layouts))
            return next(layout for layout in self._attention.values() if id(layout) == chosen)
        return False if through_product else None

    # ------------------------------------------------------------------------------- removing

    def remove(
        self, kept: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Remove the units of each group that ``kept`` (group name -> bool ``[size]``) drops, in
        place, and return ``masks`` (parameter name -> bool, the model's shapes before) cut the
        same way, so weights masked before stay masked in the slim model."""
        masks = {name: mask.clone() for name, mask in (masks or {}).items()}
        for group in self.groups:
            dropped = (~kept[group.name].to(torch.bool)).nonzero().flatten()
            if not len(dropped):
                continue
            if len(dropped) >= group.size:
                raise ValueError(f"selection removes every channel of {group.name}")
            removed = dropped.tolist()
            if group._root_units is not None:  # heads: every channel of each removed head
                removed = torch.isin(group._root_units, dropped).nonzero().flatten().tolist()
            pruning = self.graph.get_pruning_group(group._root, group._handler, removed)
            for item in pruning.items:
                module = item.dep.target.module
                name = self._weight_names.get(id(module)) if isinstance(module, nn.Module) else None
                if name is None or name not in masks:
                    continue
                dim = _weight_dim(module, self.graph.is_out_channel_pruning_fn(item.dep.handler))
                masks[name] = _without(masks[name], dim, item.idxs)
            pruning.prune()
            if group._attention is not None:
                group._attention.set_heads(group.size - len(dropped))
        self._check_runs()
        return masks

    def _check_runs(self) -> None:
        """The slim model must still run: a layer that reads its width from somewhere this module
        does not know about fails here, not in a later stage."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(self._example_input)
        except Exception as error:  # noqa: BLE001 - any failure means the architecture is not supported
            raise InputError(
                "the model no longer runs after removing channels "
                f"({error_summary(error)}): "
                "this architecture cannot be pruned at --granularity channel; use --granularity weight"
            ) from error
        finally:
            self.model.train(was_training)


def _grad_name(node: Any) -> str:
    """The autograd operation a graph node stands for ('' for layers)."""
    grad_fn = getattr(node, "grad_fn", None)
    name = getattr(grad_fn, "name", None)
    return name() if callable(name) else str(grad_fn or "")


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

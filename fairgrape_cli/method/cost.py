"""What a model costs to keep and to run: its parameters and the FLOPs of one image.

FLOPs are counted by torch's own ``torch.utils.flop_counter`` on one forward pass of a batch of
one (convolutions and matrix products, a multiply-add counted as 2 FLOPs, as torch counts them).
The fused attention kernel PyTorch runs on the CPU has no formula there: it is counted as the
same kernel on a GPU is (its two matrix products), so a ViT costs the same on every device,
meta included (where attention runs as plain matrix products).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelCost:
    """A model's parameters, FLOPs per image and nonzero parameters."""

    params: int
    flops: int | None  # None when the model could not be run on a dummy image
    nonzero_params: int | None = None  # parameters that are not exactly zero (None on the meta device)


def model_cost(model: nn.Module, image_size: int, *, channels: int = 3) -> ModelCost:
    """Parameters of ``model`` and its FLOPs on one ``channels x image_size x image_size`` image,
    on the device its parameters are on (``meta`` included: shapes only, nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    parameters = {id(parameter): parameter for parameter in model.parameters()}
    params = sum(parameter.numel() for parameter in parameters.values())
    device = next(iter(parameters.values())).device if parameters else torch.device("cpu")
    nonzero = None
    if device.type != "meta":
        nonzero = sum(int(torch.count_nonzero(parameter)) for parameter in parameters.values())
    example = torch.zeros(1, channels, image_size, image_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_cpu_attention()) as counter:
            model(example)
        flops = int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - a model that cannot run at this size still has its parameters
        flops = None
    finally:
        model.train(was_training)
    return ModelCost(params=params, flops=flops, nonzero_params=nonzero)


def _cpu_attention() -> dict:
    """The CPU's fused attention kernel, counted with torch's formula for the GPU's."""
    kernel = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {kernel: _attention_flops} if kernel is not None else {}


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)

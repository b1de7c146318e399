"""Per-group importance: ``I_g(w) = mean over group-pure batches b of g of (w * dL_b/dw)^2``.

One forward and one backward pass per scored image: each batch holds one group only, so no batch
is ever recomputed per group. The model stays in eval mode (BatchNorm running statistics, no
dropout) and is not changed: no optimizer, no statistics update, ``requires_grad`` restored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

CRITERION = "squared_taylor"  # (w * dL/dw)^2, the first-order Taylor term squared


@dataclass
class ImportanceResult:
    importance: dict[str, torch.Tensor]  # name -> float32 [G, *weight.shape], on the CPU
    batches_per_group: list[int]
    samples_per_group: list[int]


def compute_importance(
    *,
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    group_index: np.ndarray,
    group_names: list[str],
    on_batch: Callable[[int, int], None] | None = None,
) -> ImportanceResult:
    """Score ``weights`` of ``model`` on group-pure ``batches`` of ``(uint8 images, row indices)``.

    ``prepare`` turns a uint8 batch into the model's input on its device; ``on_batch(group, n)``
    is called after each batch (progress reporting).
    """
    num_groups = len(group_names)
    names = list(weights)
    params = [weights[name] for name in names]
    device = params[0].device
    importance = {
        name: torch.zeros((num_groups, *weight.shape), dtype=torch.float32, device=device)
        for name, weight in weights.items()
    }
    batch_counts = [0] * num_groups
    sample_counts = [0] * num_groups
    targets = targets.to(device)

    was_training = model.training
    saved_flags = [(param, param.requires_grad) for param in model.parameters()]
    model.eval()
    for param, _ in saved_flags:
        param.requires_grad_(False)
    for param in params:  # gradients only where they are needed
        param.requires_grad_(True)
    try:
        for images, indices in batches:
            group = int(group_index[int(indices[0])])
            logits = model(prepare(images))
            loss = F.cross_entropy(logits, targets[indices.to(device)])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for name, weight, grad in zip(names, params, grads):
                    grad.mul_(weight)  # the gradient tensor is ours: reuse it for w * dL/dw
                    importance[name][group].addcmul_(grad, grad)
            batch_counts[group] += 1
            sample_counts[group] += len(indices)
            if on_batch is not None:
                on_batch(group, len(indices))
    finally:
        for param, flag in saved_flags:
            param.requires_grad_(flag)
        model.train(was_training)

    empty = [group_names[g] for g in range(num_groups) if batch_counts[g] == 0]
    if empty:
        raise InputError(f"group(s) {', '.join(empty)} have no images to score")
    counts = torch.tensor(batch_counts, dtype=torch.float32, device=device)
    for name, values in importance.items():
        values.div_(counts.view(-1, *([1] * (values.ndim - 1))))
        importance[name] = values.cpu()
    return ImportanceResult(importance, batch_counts, sample_counts)

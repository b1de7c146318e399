"""Per-group importance: ``I_g(w) = mean over group-pure batches b of g of (w * dL_b/dw)^2``.

One forward and one backward pass per scored image: each batch holds one group only, so no batch
is ever recomputed per group. Each layer's gradient is folded into its group's sum the moment the
backward pass produces it (a gradient hook), so the model's gradients never all exist at once.
The model stays in eval mode (BatchNorm running statistics, no dropout) and is not changed: no
optimizer, no statistics update, ``requires_grad`` and ``.grad`` restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .heads import head_for

CRITERION = "squared_taylor"  # (w * dL/dw)^2, the first-order Taylor term squared


@dataclass
class ImportanceResult:
    """Mean importance per group and layer, with the images and batches per group."""

    importance: dict[str, torch.Tensor]  # name -> float32 [G, *weight.shape], on the CPU
    batches_per_group: list[int]
    samples_per_group: list[int]


@dataclass
class ImportanceSums:
    """Per-group sums over batches, before the mean: what ranks add up under torchrun."""

    sums: dict[str, torch.Tensor]  # name -> float32 [G, *weight.shape], on the weights' device
    batches_per_group: list[int]
    samples_per_group: list[int]


def compute_importance(*, group_names: list[str], **arguments) -> ImportanceResult:
    """Score in one process: :func:`accumulate_importance`, then :func:`importance_means`."""
    return importance_means(accumulate_importance(group_names=group_names, **arguments), group_names)


def accumulate_importance(
    *,
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    group_index: np.ndarray,
    group_names: list[str],
    on_batch: Callable[[int, int], None] | None = None,
) -> ImportanceSums:
    """Per-group sums of ``(w * dL_b/dw)^2`` over group-pure ``batches`` of ``(uint8 images, row
    indices)``, with the batch and image counts beside them.

    ``prepare`` turns a uint8 batch into the model's input on its device; ``targets`` (classes,
    or 0/1 attributes) pick the loss (``heads``); ``on_batch(group, n)`` is called after each
    batch (progress reporting).
    """
    num_groups = len(group_names)
    head = head_for(targets)
    device = next(iter(weights.values())).device
    accumulator = _Accumulator(weights, num_groups, device)
    batch_counts = [0] * num_groups
    sample_counts = [0] * num_groups

    on_cpu = device.type == "cpu"
    with _gradients_only_for(model, weights.values()), accumulator.attached():
        for images, indices in batches:
            group = int(group_index[int(indices[0])])
            accumulator.group = group
            with _single_threaded(on_cpu):
                inputs = prepare(images)
            logits = model(inputs)
            labels = targets[indices].to(device, non_blocking=True)
            head.loss(logits, labels, "mean").backward()
            batch_counts[group] += 1
            sample_counts[group] += len(indices)
            if on_batch is not None:
                on_batch(group, len(indices))

    return ImportanceSums(accumulator.sums, batch_counts, sample_counts)


def importance_means(scored: ImportanceSums, group_names: list[str]) -> ImportanceResult:
    """Mean over each group's batches, moved to the CPU one layer at a time (the sums are used up)."""
    counts = scored.batches_per_group
    empty = [group_names[g] for g in range(len(group_names)) if counts[g] == 0]
    if empty:
        raise InputError(f"group(s) {', '.join(empty)} have no images to score")
    means = {}
    for name in list(scored.sums):
        values = scored.sums.pop(name)
        divisor = torch.tensor(counts, dtype=torch.float32, device=values.device)
        values.div_(divisor.view(-1, *([1] * (values.ndim - 1))))
        means[name] = values.cpu()
    return ImportanceResult(means, list(counts), list(scored.samples_per_group))


class _Accumulator:
    """Per-group sums of ``(w * dL/dw)^2``, added as each layer's gradient lands during the
    backward pass; the gradient is then dropped, so no more than one layer's gradient is alive
    besides the sums (peak: model + G x prunable weights + one batch's activations)."""

    def __init__(self, weights: Mapping[str, torch.Tensor], num_groups: int, device: torch.device):
        self.weights = dict(weights)
        self.sums = {
            name: torch.zeros((num_groups, *weight.shape), dtype=torch.float32, device=device)
            for name, weight in self.weights.items()
        }
        self.group = 0  # the group of the batch being scored
        self.on_cpu = device.type == "cpu"

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        handles = [
            weight.register_post_accumulate_grad_hook(self._hook_for(name))
            for name, weight in self.weights.items()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hook_for(self, name: str) -> Callable[[torch.Tensor], None]:
        sums = self.sums[name]

        def add(weight: torch.Tensor) -> None:
            grad, weight.grad = weight.grad, None
            with torch.no_grad(), _single_threaded(self.on_cpu):
                grad.mul_(weight)  # the gradient tensor is ours now: reuse it for w * dL/dw
                sums[self.group].addcmul_(grad, grad)

        return add


@contextlib.contextmanager
def _single_threaded(enabled: bool) -> Iterator[None]:
    """Run memory-bound elementwise work on one CPU thread. A parallel region waits for its
    slowest thread, so when a thread is preempted (decoding workers, a busy machine) the few ms
    of bookkeeping per batch became 0.4 s (measured on 2 cores); one thread costs ~10 ms."""
    threads = torch.get_num_threads()
    if not enabled or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _gradients_only_for(model: nn.Module, weights: Iterable[torch.Tensor]) -> Iterator[None]:
    """Eval mode, gradients for ``weights`` alone, starting from none (a leftover ``.grad``
    would be added to the first batch's); mode, flags and gradients restored afterwards."""
    was_training = model.training
    saved = [(param, param.requires_grad, param.grad) for param in model.parameters()]
    model.eval()
    try:
        for param, _, _ in saved:
            param.requires_grad_(False)
            param.grad = None
        for weight in weights:
            weight.requires_grad_(True)
        yield
    finally:
        for param, flag, grad in saved:
            param.requires_grad_(flag)
            param.grad = grad
        model.train(was_training)

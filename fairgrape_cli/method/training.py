"""Masked fine-tuning: Adam on the target labels, masked weights held at exactly zero; how groups
weigh in the loss is the objective's (``objectives``).

Under torchrun the same function trains one replica per process: the model is wrapped in
DistributedDataParallel (gradients averaged over ranks, so parameters stay equal everywhere), each
rank steps through its share of the epoch's batches, and everything that decides something (the
epoch's loss and accuracy, the validation counts, group DRO's per-group losses) is added up over
ranks first, so every rank keeps the same epoch.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ContextManager

import torch
from torch import nn

from ..distributed import SINGLE, Runtime
from .heads import head_for
from .masks import MaskEnforcer
from .objectives import LossRule, MeanLoss

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None = None
    val_worst_group_accuracy: float | None = None
    group_weights: list[float] | None = None  # the objective's per-group weights at the epoch's end


@dataclass
class FinetuneResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch kept on validation (None: the last one)


@dataclass(frozen=True)
class Validation:
    """The validation rows: their batches, classes and groups, and what picks the kept epoch."""

    batches: Callable[[], Batches]
    targets: torch.Tensor
    groups: torch.Tensor  # group of each validation row
    num_groups: int
    by_worst_group: bool = False  # keep the epoch of best worst-group accuracy (ties: best overall)


def random_horizontal_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image with probability 1/2 (``generator`` on the CPU; ``images`` anywhere:
    flipped on the device, after normalising, the main process does no per-pixel work)."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    if not flip.any():
        return images
    chosen = flip.to(images.device).view(-1, *([1] * (images.ndim - 1)))
    return torch.where(chosen, images.flip(-1), images)


def finetune(
    *,
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    train_batches: Callable[[int], Batches],
    validation: Validation | None,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    loss_rule: LossRule | None = None,
    epochs: int,
    lr: float,
    lr_milestones: tuple[int, ...] = (),
    lr_gamma: float = 0.1,
    seed: int = 0,
    augment: bool = True,
    runtime: Runtime = SINGLE,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    on_batch: Callable[[int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` in place; with a ``validation`` keep the epoch it scores best.

    The learning rate is multiplied by ``lr_gamma`` after each epoch in ``lr_milestones`` (the
    paper's step decay: 13 epochs at 1e-4, 3 at 1e-5, 3 at 1e-6 is milestones 13, 16).
    ``train_batches(epoch)`` yields ``(uint8 images, row indices)``; ``targets`` holds the class
    (or the 0/1 attributes) of every training row, which picks the head (``heads``);
    ``loss_rule`` turns per-sample losses into the batch loss (the mean when not given).
    ``runtime``: the torchrun processes (``train_batches`` then yields this rank's share, the
    same number of batches on every rank); ``autocast``: what forward passes and losses run
    under (bf16 autocast, or nothing).
    """
    device = next(model.parameters()).device
    head = head_for(targets)
    targets = targets.to(device)
    loss_rule = loss_rule or MeanLoss()
    generator = torch.Generator().manual_seed(seed + runtime.rank)  # flips differ between ranks
    enforcer = MaskEnforcer(weights, masks)
    enforcer.mask_weights()
    network = runtime.data_parallel(model)  # the model itself in one process
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(lr_milestones), gamma=lr_gamma)
    result = FinetuneResult()
    best_score: tuple[float, ...] = ()
    best_state = None

    for epoch in range(1, epochs + 1):
        network.train()
        # summed on the device: no wait for the GPU at every step
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        correct = torch.zeros((), dtype=torch.float32, device=device)
        seen = 0
        for images, indices in train_batches(epoch):
            inputs = prepare(images)
            if augment:
                inputs = random_horizontal_flip(inputs, generator)
            rows = indices.to(device)
            labels = targets[rows]
            with autocast():
                logits = network(inputs)
                loss = loss_rule(lambda reduction: head.loss(logits, labels, reduction), rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            enforcer.mask_gradients()
            optimizer.step()
            enforcer.mask_weights()
            loss_sum += loss.detach().float() * len(indices)
            correct += head.right(head.predict(logits.detach()), labels).float().mean(1).sum()
            seen += len(indices)
            if on_batch is not None:
                on_batch(len(indices))
        scheduler.step()
        totals = runtime.sum_(torch.tensor([float(loss_sum), float(correct), float(seen)], dtype=torch.float64))
        loss_total, correct_total, seen_total = totals.tolist()
        runtime.broadcast_buffers(model)  # BatchNorm statistics as rank 0 has them, on every rank
        record = EpochRecord(epoch, loss_total / max(seen_total, 1), correct_total / max(seen_total, 1))
        record.group_weights = loss_rule.weights()
        if validation is not None:
            overall, worst = validation_accuracy(model, validation, prepare, runtime=runtime, autocast=autocast)
            record.val_accuracy, record.val_worst_group_accuracy = overall, worst
            score = (worst, overall) if validation.by_worst_group else (overall,)  # ties: the other
            if score > best_score:
                best_score = score
                best_state = copy.deepcopy(model.state_dict())
                result.best_epoch = epoch
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


@torch.no_grad()
def validation_accuracy(
    model: nn.Module,
    validation: Validation,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    runtime: Runtime = SINGLE,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
) -> tuple[float, float]:
    """Overall accuracy and the lowest accuracy of a group with validation rows (under torchrun:
    over every rank's share, the counts added up, so every rank gets the same numbers)."""
    model.eval()
    device = next(model.parameters()).device
    head = head_for(validation.targets)
    targets, groups = validation.targets.to(device), validation.groups.to(device)
    correct = torch.zeros(validation.num_groups, dtype=torch.float64, device=device)
    seen = torch.zeros_like(correct)
    for images, indices in validation.batches():
        rows = indices.to(device)
        with autocast():
            logits = model(prepare(images))
        hits = head.right(head.predict(logits), targets[rows]).double().mean(1)
        correct.index_add_(0, groups[rows], hits)
        seen.index_add_(0, groups[rows], torch.ones_like(hits))
    counts = runtime.sum_(torch.stack([correct, seen]).cpu())
    correct, seen = counts[0], counts[1]
    present = seen > 0
    if not present.any():
        return 0.0, 0.0
    overall = float(correct.sum()) / float(seen.sum())
    worst = float((correct[present] / seen[present]).min())
    return overall, worst

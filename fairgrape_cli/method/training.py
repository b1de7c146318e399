"""Masked fine-tuning: Adam on the target labels, masked weights held at exactly zero; how groups
weigh in the loss is the objective's (``objectives``)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

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
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    if flip.any():
        images = images.clone()
        images[flip] = images[flip].flip(-1)
    return images


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
    on_batch: Callable[[int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` in place; with a ``validation`` keep the epoch it scores best.

    The learning rate is multiplied by ``lr_gamma`` after each epoch in ``lr_milestones`` (the
    paper's step decay: 13 epochs at 1e-4, 3 at 1e-5, 3 at 1e-6 is milestones 13, 16).
    ``train_batches(epoch)`` yields ``(uint8 images, row indices)``; ``targets`` holds the class
    (or the 0/1 attributes) of every training row, which picks the head (``heads``);
    ``loss_rule`` turns per-sample losses into the batch loss (the mean when not given).
    """
    device = next(model.parameters()).device
    head = head_for(targets)
    targets = targets.to(device)
    loss_rule = loss_rule or MeanLoss()
    generator = torch.Generator().manual_seed(seed)
    enforcer = MaskEnforcer(weights, masks)
    enforcer.mask_weights()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(lr_milestones), gamma=lr_gamma)
    result = FinetuneResult()
    best_score: tuple[float, ...] = ()
    best_state = None

    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for images, indices in train_batches(epoch):
            if augment:
                images = random_horizontal_flip(images, generator)
            rows = indices.to(device)
            labels = targets[rows]
            logits = model(prepare(images))
            loss = loss_rule(lambda reduction: head.loss(logits, labels, reduction), rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            enforcer.mask_gradients()
            optimizer.step()
            enforcer.mask_weights()
            loss_sum += float(loss.detach()) * len(indices)
            correct += float(head.right(head.predict(logits.detach()), labels).float().mean(1).sum())
            seen += len(indices)
            if on_batch is not None:
                on_batch(len(indices))
        scheduler.step()
        record = EpochRecord(epoch, loss_sum / max(seen, 1), correct / max(seen, 1))
        record.group_weights = loss_rule.weights()
        if validation is not None:
            overall, worst = validation_accuracy(model, validation, prepare)
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
    model: nn.Module, validation: Validation, prepare: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[float, float]:
    """Overall accuracy and the lowest accuracy of a group with validation rows."""
    model.eval()
    device = next(model.parameters()).device
    head = head_for(validation.targets)
    targets, groups = validation.targets.to(device), validation.groups.to(device)
    correct = torch.zeros(validation.num_groups, dtype=torch.float64, device=device)
    seen = torch.zeros_like(correct)
    for images, indices in validation.batches():
        rows = indices.to(device)
        hits = head.right(head.predict(model(prepare(images))), targets[rows]).double().mean(1)
        correct.index_add_(0, groups[rows], hits)
        seen.index_add_(0, groups[rows], torch.ones_like(hits))
    present = seen > 0
    if not present.any():
        return 0.0, 0.0
    overall = float(correct.sum()) / float(seen.sum())
    worst = float((correct[present] / seen[present]).min())
    return overall, worst

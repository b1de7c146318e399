"""Masked fine-tuning: Adam on the target labels, masked weights held at exactly zero."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .masks import MaskEnforcer

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None = None


@dataclass
class FinetuneResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch kept, by validation accuracy (None: the last one)


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
    val_batches: Callable[[], Batches] | None,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    val_targets: torch.Tensor | None = None,
    epochs: int,
    lr: float,
    lr_milestones: tuple[int, ...] = (),
    lr_gamma: float = 0.1,
    seed: int = 0,
    augment: bool = True,
    on_batch: Callable[[int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` in place; with ``val_batches`` keep the epoch of best validation accuracy.

    The learning rate is multiplied by ``lr_gamma`` after each epoch in ``lr_milestones`` (the
    paper's step decay: 13 epochs at 1e-4, 3 at 1e-5, 3 at 1e-6 is milestones 13, 16).
    ``train_batches(epoch)`` yields ``(uint8 images, row indices)``; ``targets`` holds the class
    of every training row, ``val_targets`` of every validation row.
    """
    device = next(model.parameters()).device
    targets = targets.to(device)
    generator = torch.Generator().manual_seed(seed)
    enforcer = MaskEnforcer(weights, masks)
    enforcer.mask_weights()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(lr_milestones), gamma=lr_gamma)
    result = FinetuneResult()
    best_accuracy = -1.0
    best_state = None

    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for images, indices in train_batches(epoch):
            if augment:
                images = random_horizontal_flip(images, generator)
            labels = targets[indices.to(device)]
            logits = model(prepare(images))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            enforcer.mask_gradients()
            optimizer.step()
            enforcer.mask_weights()
            loss_sum += float(loss.detach()) * len(indices)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(indices)
            if on_batch is not None:
                on_batch(len(indices))
        scheduler.step()
        record = EpochRecord(epoch, loss_sum / max(seen, 1), correct / max(seen, 1))
        if val_batches is not None:
            record.val_accuracy = accuracy(model, val_batches(), prepare, val_targets.to(device))
            if record.val_accuracy > best_accuracy:
                best_accuracy = record.val_accuracy
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
def accuracy(
    model: nn.Module, batches: Batches, prepare: Callable[[torch.Tensor], torch.Tensor], targets
) -> float:
    model.eval()
    correct = seen = 0
    for images, indices in batches:
        labels = targets[indices.to(targets.device)]
        correct += int((model(prepare(images)).argmax(1) == labels).sum())
        seen += len(indices)
    return correct / seen if seen else 0.0

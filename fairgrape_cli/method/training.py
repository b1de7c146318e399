"""Masked fine-tuning: Adam on the target labels, masked weights held at exactly zero; how groups
weigh in the loss is the objective's (``objectives``), what the dense model adds is
``distillation``'s, and which epoch is kept is ``kept_epoch``'s.

Under torchrun the same function trains one replica per process: the model is wrapped in
DistributedDataParallel (gradients averaged over ranks, so parameters stay equal everywhere), each
rank steps through its share of the epoch's batches, and everything that decides something (the
epoch's loss and accuracy, the validation counts, group DRO's per-group losses) is added up over
ranks first, so every rank keeps the same epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ContextManager

import torch
from torch import nn

from ..distributed import SINGLE, Runtime
from .distillation import Distillation, distillation_losses, mixed_losses
from .heads import Head, head_for
from .kept_epoch import KeptEpoch, undominated
from .masks import MaskEnforcer
from .objectives import Comparison, LossRule, MeanLoss

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochRecord:
    """One epoch's training loss and accuracy, validation numbers and group weights."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None = None
    val_worst_group_accuracy: float | None = None
    group_weights: list[float] | None = None  # the objective's per-group weights at the epoch's end


@dataclass
class FinetuneResult:
    """Each epoch's record and the epoch kept."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch kept on validation (None: the last one)


@dataclass(frozen=True)
class Validation:
    """The validation rows: their batches, classes and groups, and what picks the kept epoch."""

    batches: Callable[[], Batches]
    targets: torch.Tensor
    groups: torch.Tensor  # group of each validation row
    num_groups: int
    by_worst_group: bool = False  # the objective weighs groups: what KeptEpoch's "auto" reads


@dataclass(frozen=True)
class Teacher:
    """The dense model the pruned one learns from (distillation) or is compared with (the
    constrained objective), and how its inputs are prepared from the uint8 images."""

    model: nn.Module
    prepare: Callable[[torch.Tensor], torch.Tensor]


def draw_flips(count: int, generator: torch.Generator) -> torch.Tensor:
    """Which of ``count`` images to mirror: each with probability 1/2 (``generator`` on the CPU)."""
    return torch.rand(count, generator=generator) < 0.5


def flipped(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``images`` with the chosen ones mirrored (on their device, after normalising: the main
    process does no per-pixel work)."""
    if not flip.any():
        return images
    chosen = flip.to(images.device).view(-1, *([1] * (images.ndim - 1)))
    return torch.where(chosen, images.flip(-1), images)


def random_horizontal_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image with probability 1/2."""
    return flipped(images, draw_flips(images.shape[0], generator))


def train_masked(
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
    teacher: Teacher | None = None,
    distillation: Distillation = Distillation(),
    kept_epoch: KeptEpoch = KeptEpoch(),
    on_batch: Callable[[int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` in place; with a ``validation`` keep the epoch ``kept_epoch`` picks.

    The learning rate is multiplied by ``lr_gamma`` after each epoch in ``lr_milestones`` (the
    paper's step decay: 13 epochs at 1e-4, 3 at 1e-5, 3 at 1e-6 is milestones 13, 16).
    ``train_batches(epoch)`` yields ``(uint8 images, row indices)``; ``targets`` holds the class
    (or the 0/1 attributes) of every training row, which picks the head (``heads``);
    ``loss_rule`` turns per-sample losses into the batch loss (the mean when not given).
    ``runtime``: the torchrun processes (``train_batches`` then yields this rank's share, the
    same number of batches on every rank); ``autocast``: what forward passes and losses run
    under (bf16 autocast, or nothing). ``teacher``: the dense model, whose outputs on the same
    (flipped) images are distilled (``distillation.weight`` > 0) and handed to the loss rule as a
    ``Comparison`` (the constrained objective bounds each group's difference from it).
    """
    if distillation.active and teacher is None:
        raise ValueError("distillation needs a teacher")
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(lr_milestones), gamma=lr_gamma)
    if teacher is not None:
        teacher.model.eval()
    enforcer = MaskEnforcer(weights, masks)
    enforcer.mask_weights()
    step = _Steps(
        network=runtime.data_parallel(model),  # the model itself in one process
        optimizer=optimizer, enforcer=enforcer, head=head_for(targets),
        targets=targets.to(device), prepare=prepare, loss_rule=loss_rule or MeanLoss(), teacher=teacher,
        distillation=distillation, augment=augment, autocast=autocast, device=device,
        generator=torch.Generator().manual_seed(seed + runtime.rank),  # flips differ between ranks
    )  # fmt: skip
    result = FinetuneResult()
    scores: list[tuple[float, float]] = []  # per epoch: validation accuracy, worst-group accuracy
    states: dict[int, dict[str, torch.Tensor]] = {}  # weights of the epochs a rule may still keep
    for epoch in range(1, epochs + 1):
        totals = step.epoch(train_batches(epoch), on_batch)
        scheduler.step()
        loss_total, correct_total, seen_total = runtime.sum_(totals).tolist()
        runtime.broadcast_buffers(model)  # BatchNorm statistics as rank 0 has them, on every rank
        record = EpochRecord(epoch, loss_total / max(seen_total, 1), correct_total / max(seen_total, 1))
        record.group_weights = step.loss_rule.weights()
        if validation is not None:
            overall, worst = validation_accuracy(model, validation, prepare, runtime=runtime, autocast=autocast)
            record.val_accuracy, record.val_worst_group_accuracy = overall, worst
            scores.append((overall, worst))
            states = _candidates(model, scores, states, last=epoch == epochs)
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    if scores:
        chosen = kept_epoch.choose(scores, weighs_groups=validation.by_worst_group)
        if chosen != len(scores) - 1:
            model.load_state_dict(states[chosen])
        result.best_epoch = chosen + 1
    model.eval()
    return result


def _candidates(model: nn.Module, scores: list, states: dict, *, last: bool) -> dict:
    """The weights of the epochs a kept-epoch rule may still choose (those no later epoch beats
    on both scores), this one's copied in unless it is the last (its weights are the model's)."""
    keep = undominated(scores)
    states = {position: state for position, state in states.items() if position in keep}
    if not last and len(scores) - 1 in keep:
        states[len(scores) - 1] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return states


@dataclass
class _Steps:
    """What every training step uses: the network and its optimizer, the masks, the head, the
    objective's loss rule, the teacher, how images are prepared and flipped."""

    network: nn.Module
    optimizer: torch.optim.Optimizer
    enforcer: MaskEnforcer
    head: Head
    targets: torch.Tensor  # every training row's, on the device
    prepare: Callable[[torch.Tensor], torch.Tensor]
    loss_rule: LossRule
    teacher: Teacher | None
    distillation: Distillation
    augment: bool
    autocast: Callable[[], ContextManager]
    device: torch.device
    generator: torch.Generator

    def epoch(self, batches: Batches, on_batch: Callable[[int], None] | None) -> torch.Tensor:
        """One pass over ``batches``; the summed loss, images right and images seen (float64)."""
        self.network.train()
        # summed on the device: no wait for the GPU at every step
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        correct = torch.zeros((), dtype=torch.float32, device=self.device)
        seen = 0
        for images, indices in batches:
            loss, right = self.step(images, indices)
            loss_sum += loss * len(indices)
            correct += right
            seen += len(indices)
            if on_batch is not None:
                on_batch(len(indices))
        return torch.tensor([float(loss_sum), float(correct), float(seen)], dtype=torch.float64)

    def step(self, images: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch, masks held; its mean loss and the images it got right."""
        flip = draw_flips(len(indices), self.generator) if self.augment else None
        inputs = self.prepare(images) if flip is None else flipped(self.prepare(images), flip)
        rows = indices.to(self.device)
        labels = self.targets[rows]
        with self.autocast():
            logits = self.network(inputs)
            reference = None if self.teacher is None else _teacher_logits(self.teacher, images, flip)
            loss = _step_loss(self.loss_rule, self.head, logits, labels, rows, reference, self.distillation)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.enforcer.mask_gradients()
        self.optimizer.step()
        self.enforcer.mask_weights()
        right = self.head.right(self.head.predict(logits.detach()), labels).float().mean(1).sum()
        return loss.detach().float(), right


@torch.no_grad()
def _teacher_logits(teacher: Teacher, images: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
    inputs = teacher.prepare(images)
    return teacher.model(inputs if flip is None else flipped(inputs, flip))


def _step_loss(
    loss_rule: LossRule,
    head: Head,
    logits: torch.Tensor,
    labels: torch.Tensor,
    rows: torch.Tensor,
    reference: torch.Tensor | None,
    distillation: Distillation,
) -> torch.Tensor:
    """The batch's loss as the objective makes it, from per-sample task losses mixed with
    distillation when it is on (without it, the loss plain fine-tuning always computed)."""
    if reference is None:
        return loss_rule(lambda reduction: head.loss(logits, labels, reduction), rows)
    task = head.loss(logits, labels, "none")
    if distillation.active:
        multi_label = head.name == "multi-label"
        distilled = distillation_losses(logits, reference, temperature=distillation.temperature, multi_label=multi_label)
        per_sample = mixed_losses(task, distilled, distillation.weight)
    else:
        per_sample = task
    compared = Comparison(
        losses=task,
        right=head.right(head.predict(logits.detach()), labels).float().mean(1),
        reference_losses=head.loss(reference.float(), labels, "none").detach(),
        reference_right=head.right(head.predict(reference), labels).float().mean(1),
    )
    return loss_rule(lambda reduction: per_sample if reduction == "none" else per_sample.mean(), rows, compared)


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

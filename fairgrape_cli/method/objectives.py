"""How groups weigh in fine-tuning after pruning: each objective is one registered definition.

An objective decides two things: which training rows make up an epoch (``epoch_rows``) and how
a batch's per-sample losses become the loss that is minimised (``loss_rule``). Pruning costs the
groups a model fits worst the most; fine-tuning that weighs every group the same is the lever
that wins that back (benchmarks/fairness.py measures how much).

- ``erm``: every row once per epoch, the mean loss (plain fine-tuning).
- ``balanced``: every group (or class x group cell) weighs the same in each epoch: each
  contributes the same number of rows, the small ones drawn repeatedly (without repeats until
  all of a group's rows were drawn), or, with ``balance_by="weights"``, each row's loss is
  weighted by the inverse of its group's size.
- ``group-dro``: online group DRO (Sagawa et al., ICLR 2020): the loss is the groups' mean
  losses weighted by ``q``, and after each batch ``q_g`` is multiplied by
  ``exp(dro_step * loss_g)`` and renormalised, so the weight moves to the worst-off group.

Under torchrun every rank draws the same ``epoch_rows`` (same seed) and trains on its share of the
batches; a loss rule gets the ``runtime`` so that a rule coupling the samples of a step (group
DRO's per-group means) adds its statistics up over the ranks' batches of that step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..distributed import SINGLE, Runtime
from ..errors import InputError
from ..registry import Registry

BALANCE_UNITS = ("group", "cell")
BALANCE_WAYS = ("sampling", "weights")


@dataclass(frozen=True)
class ObjectiveOptions:
    """The knobs of the objectives (each reads the ones it needs)."""

    dro_step: float = 0.1
    balance_unit: str = "group"  # "group", or "cell" for class x group
    balance_by: str = "sampling"  # "sampling" (repeat rows) or "weights" (inverse group size)

    def __post_init__(self) -> None:
        if not self.dro_step > 0:
            raise InputError(f"--dro-step {self.dro_step}: must be positive")
        if self.balance_unit not in BALANCE_UNITS:
            raise InputError(f"balance unit {self.balance_unit!r}: choose {' or '.join(BALANCE_UNITS)}")
        if self.balance_by not in BALANCE_WAYS:
            raise InputError(f"balance by {self.balance_by!r}: choose {' or '.join(BALANCE_WAYS)}")


@dataclass(frozen=True)
class TrainingRows:
    """What an objective knows about the training rows: each row's group and class."""

    groups: np.ndarray  # int64 [N], index into the group names
    num_groups: int
    classes: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.groups)

    def units(self, unit: str) -> tuple[np.ndarray, int]:
        """Each row's balancing unit (its group, or its class x group cell) and the unit count."""
        if unit == "group":
            return self.groups, self.num_groups
        return self.classes * self.num_groups + self.groups, (int(self.classes.max()) + 1) * self.num_groups


BatchLoss = Callable[[str], torch.Tensor]  # reduction "mean" | "none" -> the batch's loss


class LossRule(Protocol):
    """The loss to minimise for a batch. ``loss("none")`` gives the per-sample losses and
    ``loss("mean")`` their mean, computed as plain fine-tuning always did (bit for bit); ``rows``
    are the samples' training-row indices (on the losses' device), for rules that need more."""

    def __call__(self, loss: BatchLoss, rows: torch.Tensor) -> torch.Tensor: ...

    def weights(self) -> list[float] | None:
        """The per-group weights it currently applies (recorded in the history), if any."""


@dataclass(frozen=True)
class Objective:
    name: str
    summary: str
    needs_groups: bool  # also: the kept epoch is the one of best worst-group validation accuracy
    epoch_rows: Callable[[TrainingRows, ObjectiveOptions, torch.Generator], np.ndarray]
    loss_rule: Callable[..., LossRule]  # (rows, options, device, runtime=SINGLE)
    reads: tuple[str, ...] = ()  # the ObjectiveOptions it uses

    def settings(self, options: ObjectiveOptions) -> dict[str, object]:
        """The options that shape this objective's training, for the record."""
        return {name: getattr(options, name) for name in self.reads}


OBJECTIVES: Registry[Objective] = Registry("--objective")


def objective(name: str, *, summary: str, needs_groups: bool, epoch_rows, loss_rule, reads=()) -> Objective:
    """Register an objective under ``name`` (the value of ``--objective``)."""
    return OBJECTIVES.add(name, Objective(name, summary, needs_groups, epoch_rows, loss_rule, tuple(reads)))


# ------------------------------------------------------------------------------- epoch rows


def every_row_once(rows: TrainingRows, options: ObjectiveOptions, generator: torch.Generator) -> np.ndarray:
    return torch.randperm(len(rows), generator=generator).numpy()


def equal_rows_per_unit(rows: TrainingRows, options: ObjectiveOptions, generator: torch.Generator) -> np.ndarray:
    """As many rows as the epoch has, split equally over the units present (groups or cells);
    a unit's rows are drawn in shuffled passes, so none repeats before all were drawn."""
    if options.balance_by == "weights":
        return every_row_once(rows, options, generator)
    units, count = rows.units(options.balance_unit)
    members = [np.flatnonzero(units == unit) for unit in range(count)]
    members = [rows_of_unit for rows_of_unit in members if len(rows_of_unit)]
    share, extra = divmod(len(rows), len(members))
    drawn = []
    for position, rows_of_unit in enumerate(members):
        wanted = share + (1 if position < extra else 0)
        passes = -(-wanted // len(rows_of_unit))
        order = [rows_of_unit[torch.randperm(len(rows_of_unit), generator=generator).numpy()] for _ in range(passes)]
        drawn.append(np.concatenate(order)[:wanted])
    epoch = np.concatenate(drawn)
    return epoch[torch.randperm(len(epoch), generator=generator).numpy()]


# ------------------------------------------------------------------------------- loss rules


class MeanLoss:
    def __call__(self, loss: BatchLoss, rows: torch.Tensor) -> torch.Tensor:
        return loss("mean")

    def weights(self) -> None:
        return None


class InverseSizeWeights:
    """Each row's loss times ``N / (units * n_unit)``: every unit weighs the same in expectation.
    With ``balance_by="sampling"`` the rows are already balanced, and this is the plain mean.
    (Per-row weights need nothing from the other ranks: DDP averages the ranks' means.)"""

    def __init__(self, rows: TrainingRows, options: ObjectiveOptions, device: torch.device, runtime: Runtime = SINGLE):
        self.active = options.balance_by == "weights"
        units, count = rows.units(options.balance_unit)
        sizes = np.bincount(units, minlength=count).astype(np.float64)
        present = sizes > 0
        per_unit = np.zeros(count)
        per_unit[present] = len(rows) / (present.sum() * sizes[present])
        self.row_weights = torch.tensor(per_unit[units], dtype=torch.float32, device=device)

    def __call__(self, loss: BatchLoss, rows: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return loss("mean")
        losses = loss("none")
        return (losses * self.row_weights[rows].to(losses.dtype)).mean()

    def weights(self) -> None:
        return None


class OnlineGroupDRO:
    """Sagawa et al.'s online algorithm: ``q`` starts uniform over the groups that have training
    rows; each batch multiplies ``q_g`` by ``exp(step * mean loss of g in the batch)``.

    Under torchrun a step's batch is the union of the ranks' batches: the per-group loss sums
    and counts are added up over ranks, so ``q`` moves the same way on every rank, and each rank
    returns its part of the step's loss times the world size (DDP averages the ranks'
    gradients), so the gradient is that of the union's DRO loss."""

    def __init__(self, rows: TrainingRows, options: ObjectiveOptions, device: torch.device, runtime: Runtime = SINGLE):
        present = np.bincount(rows.groups, minlength=rows.num_groups) > 0
        q = torch.tensor(present, dtype=torch.float64, device=device)
        self.q = q / q.sum()
        self.step = options.dro_step
        self.num_groups = rows.num_groups
        self.groups = torch.as_tensor(rows.groups, dtype=torch.long, device=device)
        self.runtime = runtime

    def __call__(self, loss: BatchLoss, rows: torch.Tensor) -> torch.Tensor:
        losses = loss("none")
        groups = self.groups[rows]
        sums = torch.zeros(self.num_groups, dtype=losses.dtype, device=losses.device).index_add(0, groups, losses)
        counts = torch.bincount(groups, minlength=self.num_groups)
        if self.runtime.distributed:  # the step's sums and counts over every rank's batch
            step = self.runtime.sum_(torch.cat([sums.detach(), counts.to(sums.dtype)]))
            step_sums, counts = step[: self.num_groups], step[self.num_groups :]
        else:
            step_sums = sums.detach()
        denominators = counts.clamp(min=1)
        with torch.no_grad():  # a group absent from the step has loss 0 here: its q is unchanged
            self.q *= torch.exp(self.step * (step_sums / denominators).double())
            self.q /= self.q.sum()
        return self.runtime.world_size * (sums / denominators * self.q.to(losses.dtype)).sum()

    def weights(self) -> list[float]:
        return [round(float(value), 6) for value in self.q]


# ------------------------------------------------------------------------------- the registry

objective(
    "erm",
    summary="every row once per epoch, mean loss (plain fine-tuning)",
    needs_groups=False,
    epoch_rows=every_row_once,
    loss_rule=lambda rows, options, device, runtime=SINGLE: MeanLoss(),
)
objective(
    "balanced",
    summary="every group weighs the same in each epoch",
    needs_groups=True,
    epoch_rows=equal_rows_per_unit,
    loss_rule=InverseSizeWeights,
    reads=("balance_unit", "balance_by"),
)
objective(
    "group-dro",
    summary="online group DRO: the loss of the worst-off group weighs most (--dro-step)",
    needs_groups=True,
    epoch_rows=every_row_once,
    loss_rule=OnlineGroupDRO,
    reads=("dro_step",),
)

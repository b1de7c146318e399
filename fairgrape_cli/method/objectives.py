"""How groups weigh in fine-tuning after pruning: each objective is one registered definition.

An objective decides two things: which training rows make up an epoch (``epoch_rows``) and how
a batch's per-sample losses become the loss that is minimised (``loss_rule``). Pruning costs the
groups a model fits worst the most; fine-tuning that weighs every group the same is the lever
that wins that back (benchmarks/fairness.py measures how much).

- ``erm``: every row once per epoch, the mean loss (plain fine-tuning).
- ``balanced``: every group (or class x group cell) weighs the same in each epoch. How is
  ``balance_by``'s: ``sampling`` splits the epoch's N rows equally over the groups (the small
  ones drawn repeatedly, without repeats until all of a group's rows were drawn; the large ones
  see only part of their rows), ``upsample`` keeps every row of every group and repeats the
  smaller groups' rows up to the largest group's size (a longer epoch, but no row left out),
  ``weights`` keeps one pass over the rows and weights each row's loss by the inverse of its
  group's size.
- ``group-dro``: online group DRO (Sagawa et al., ICLR 2020): the loss is the groups' mean
  losses weighted by ``q``, and after each batch ``q_g`` is multiplied by
  ``exp(dro_step * loss_g)`` and renormalised, so the weight moves to the worst-off group.
- ``constrained``: in the spirit of Balancing Act (Hashemizadeh et al., ICLR 2024): minimise the
  mean loss subject to, for every group, "no worse than the dense model by more than a bound"
  (on the loss, or on accuracy with the loss as its differentiable proxy), each constraint held
  by a Lagrange multiplier that grows while the constraint is violated and shrinks back to 0
  when it holds. It compares with the dense model on the same rows, so it needs a teacher.
  ``constraint_form="excess-drop"`` bounds instead how much more than all the rows together a
  group dropped (the paper's own form: the groups' drops kept close, not each drop small).
- ``balanced-constrained``: both levers at once: ``balanced``'s epochs (``balance_by``) and
  weights, with ``constrained``'s per-group bounds on top (the benchmark's combined recipe).

Any objective can be combined with distillation from the dense model (``distillation.py``): the
per-sample loss the rules see is then the task loss mixed with the distillation term.

Under torchrun every rank draws the same ``epoch_rows`` (same seed) and trains on its share of the
batches; a loss rule gets the ``runtime`` so that a rule coupling the samples of a step (group
DRO's per-group means) adds its statistics up over the ranks' batches of that step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..distributed import SINGLE, Runtime
from ..errors import InputError
from ..registry import Registry

BALANCE_UNITS = ("group", "cell")
BALANCE_WAYS = ("sampling", "upsample", "weights")
CONSTRAINT_METRICS = ("loss", "accuracy")
# constrained: what each group's bound is on. "drop": the group's own drop from the dense model;
# "excess-drop": the group's drop beyond the drop of all the step's rows together (Balancing Act's
# "excess accuracy gap"), which bounds the difference between the groups' drops, drop_gap's kind
CONSTRAINT_FORMS = ("drop", "excess-drop")


@dataclass(frozen=True)
class ObjectiveOptions:
    """The knobs of the objectives (each reads the ones it needs)."""

    dro_step: float = 0.1
    balance_unit: str = "group"  # "group", or "cell" for class x group
    balance_by: str = "sampling"  # "sampling" (equal shares), "upsample" (repeat up to the largest), "weights"
    constraint_bound: float = 0.02  # constrained: how much worse than the dense model a group may get
    constraint_metric: str = "accuracy"  # constrained: the bound is on each group's "accuracy" or "loss"
    constraint_form: str = "drop"  # constrained: on each group's "drop", or its "excess-drop" over all rows'
    multiplier_lr: float = 0.1  # constrained: step of the multipliers' projected gradient ascent

    def __post_init__(self) -> None:
        if not self.dro_step > 0:
            raise InputError(f"--dro-step {self.dro_step}: must be positive")
        if not self.multiplier_lr > 0:
            raise InputError(f"--multiplier-lr {self.multiplier_lr}: must be positive")
        if self.constraint_metric not in CONSTRAINT_METRICS:
            raise InputError(
                f"--constraint-metric {self.constraint_metric}: choose {' or '.join(CONSTRAINT_METRICS)}"
            )
        if self.constraint_form not in CONSTRAINT_FORMS:
            raise InputError(f"--constraint-form {self.constraint_form}: choose {' or '.join(CONSTRAINT_FORMS)}")
        high = 1.0 if self.constraint_metric == "accuracy" else math.inf
        if not 0 <= self.constraint_bound <= high:
            wanted = "a fraction in [0, 1] (0.02 = 2 points)" if high == 1.0 else "0 or more"
            raise InputError(f"--constraint-bound {self.constraint_bound}: must be {wanted}")
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


@dataclass(frozen=True)
class Comparison:
    """A step's outputs beside the dense model's on the same rows, for rules that bound the
    difference: per sample, the task loss (with its gradient) and whether it was right, of the
    model being trained and of the reference (no gradient)."""

    losses: torch.Tensor  # [B] the task loss (without distillation), differentiable
    right: torch.Tensor  # [B] fraction right (0/1; for several attributes, the fraction right)
    reference_losses: torch.Tensor  # [B]
    reference_right: torch.Tensor  # [B]


class LossRule(Protocol):
    """The loss to minimise for a batch. ``loss("none")`` gives the per-sample losses and
    ``loss("mean")`` their mean, computed as plain fine-tuning always did (bit for bit); ``rows``
    are the samples' training-row indices (on the losses' device), for rules that need more;
    ``compared`` is given to rules that need a teacher (``Objective.needs_teacher``)."""

    def __call__(self, loss: BatchLoss, rows: torch.Tensor, compared: Comparison | None = None) -> torch.Tensor: ...

    def weights(self) -> list[float] | None:
        """The per-group weights it currently applies (recorded in the history), if any."""


@dataclass(frozen=True)
class Objective:
    """A registered objective (``--objective``): its epoch rows and its loss rule."""

    name: str
    summary: str
    needs_groups: bool  # also: the kept epoch is the one of best worst-group validation accuracy
    epoch_rows: Callable[[TrainingRows, ObjectiveOptions, torch.Generator], np.ndarray]
    loss_rule: Callable[..., LossRule]  # (rows, options, device, runtime=SINGLE)
    reads: tuple[str, ...] = ()  # the ObjectiveOptions it uses
    needs_teacher: bool = False  # compares with the dense model on every step (Comparison)

    def settings(self, options: ObjectiveOptions) -> dict[str, object]:
        """The options that shape this objective's training, for the record."""
        return {name: getattr(options, name) for name in self.reads}


OBJECTIVES: Registry[Objective] = Registry("--objective")


def objective(
    name: str, *, summary: str, needs_groups: bool, epoch_rows, loss_rule, reads=(), needs_teacher: bool = False
) -> Objective:
    """Register an objective under ``name`` (the value of ``--objective``)."""
    return OBJECTIVES.add(
        name, Objective(name, summary, needs_groups, epoch_rows, loss_rule, tuple(reads), needs_teacher)
    )


# ------------------------------------------------------------------------------- epoch rows


def every_row_once(rows: TrainingRows, options: ObjectiveOptions, generator: torch.Generator) -> np.ndarray:
    """Every training row once, shuffled."""
    return torch.randperm(len(rows), generator=generator).numpy()


def _units_present(rows: TrainingRows, options: ObjectiveOptions) -> list[np.ndarray]:
    units, count = rows.units(options.balance_unit)
    members = [np.flatnonzero(units == unit) for unit in range(count)]
    return [rows_of_unit for rows_of_unit in members if len(rows_of_unit)]


def _balanced_epoch(members: list[np.ndarray], wanted: list[int], generator: torch.Generator) -> np.ndarray:
    """``wanted[i]`` rows of unit i, drawn in shuffled passes over the unit (none repeats before
    all of its rows were drawn), then the whole epoch shuffled."""
    drawn = []
    for rows_of_unit, count in zip(members, wanted):
        passes = -(-count // len(rows_of_unit))
        order = [rows_of_unit[torch.randperm(len(rows_of_unit), generator=generator).numpy()] for _ in range(passes)]
        drawn.append(np.concatenate(order)[:count])
    epoch = np.concatenate(drawn)
    return epoch[torch.randperm(len(epoch), generator=generator).numpy()]


def equal_share_per_unit(members: list[np.ndarray], total: int) -> list[int]:
    """``sampling``: the epoch's ``total`` rows split equally over the units."""
    share, extra = divmod(total, len(members))
    return [share + (1 if position < extra else 0) for position in range(len(members))]


def up_to_the_largest(members: list[np.ndarray], total: int) -> list[int]:
    """``upsample``: every unit as many rows as the largest has (every row of every unit kept)."""
    return [max(len(rows_of_unit) for rows_of_unit in members)] * len(members)


# balance_by -> how many rows each unit draws per epoch (``weights`` draws every row once)
_ROWS_PER_UNIT = {"sampling": equal_share_per_unit, "upsample": up_to_the_largest}


def balanced_rows(rows: TrainingRows, options: ObjectiveOptions, generator: torch.Generator) -> np.ndarray:
    """The rows of a ``balanced`` epoch: every unit (group or cell) the same number of rows, as
    ``options.balance_by`` says; with ``weights``, every row once (the loss weighs them)."""
    rows_per_unit = _ROWS_PER_UNIT.get(options.balance_by)
    if rows_per_unit is None:
        return every_row_once(rows, options, generator)
    members = _units_present(rows, options)
    return _balanced_epoch(members, rows_per_unit(members, len(rows)), generator)


# ------------------------------------------------------------------------------- loss rules


class MeanLoss:
    """The batch's mean loss (plain fine-tuning)."""

    def __call__(self, loss: BatchLoss, rows: torch.Tensor, compared: Comparison | None = None) -> torch.Tensor:
        return loss("mean")

    def weights(self) -> None:
        """None: no per-group weights."""
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

    def __call__(self, loss: BatchLoss, rows: torch.Tensor, compared: Comparison | None = None) -> torch.Tensor:
        if not self.active:
            return loss("mean")
        losses = loss("none")
        return (losses * self.row_weights[rows].to(losses.dtype)).mean()

    def weights(self) -> None:
        """The per-group weights applied."""
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

    def __call__(self, loss: BatchLoss, rows: torch.Tensor, compared: Comparison | None = None) -> torch.Tensor:
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
        """The groups' current weights q."""
        return [round(float(value), 6) for value in self.q]


class LagrangianConstraints:
    """Balancing-Act-style constraints, one per group: ``excess_g <= bound`` where ``excess_g``
    is how much worse than the dense model (the teacher, on the same rows) group g is: its mean
    loss minus the teacher's, or the teacher's accuracy minus its own. With the ``excess-drop``
    form, ``excess_g`` is that drop minus the drop of all the step's rows together, and the
    proxy below is group g's mean task loss minus the step's mean task loss (the dense model's
    terms are constants).

    The loss minimised is the Lagrangian ``mean loss + sum_g lambda_g * mean task loss of g``
    (for the accuracy bound the loss is its differentiable proxy, as in Balancing Act); after
    each step ``lambda_g <- max(0, lambda_g + multiplier_lr * (excess_g - bound))`` from that
    step's rows (a group absent from the step keeps its multiplier). The multipliers add up the
    violations over steps, so the noise of a few rows per step averages out. Under torchrun the
    per-group sums are added up over the ranks' batches of the step, as for group DRO.

    ``main`` is the rule whose loss the constraints are added to (the plain mean by default;
    ``balanced-constrained`` gives it ``balanced``'s rule)."""

    def __init__(
        self,
        rows: TrainingRows,
        options: ObjectiveOptions,
        device: torch.device,
        runtime: Runtime = SINGLE,
        main: LossRule | None = None,
    ):
        self.main = main if main is not None else MeanLoss()
        self.multipliers = torch.zeros(rows.num_groups, dtype=torch.float64, device=device)
        self.bound = options.constraint_bound
        self.on_accuracy = options.constraint_metric == "accuracy"
        self.beyond_all_rows = options.constraint_form == "excess-drop"
        self.step = options.multiplier_lr
        self.num_groups = rows.num_groups
        self.groups = torch.as_tensor(rows.groups, dtype=torch.long, device=device)
        self.runtime = runtime

    def __call__(self, loss: BatchLoss, rows: torch.Tensor, compared: Comparison | None = None) -> torch.Tensor:
        if compared is None:
            raise ValueError("the constrained objective compares with a teacher on every step")
        groups = self.groups[rows]
        proxy = compared.losses
        if self.on_accuracy:
            excess = compared.reference_right - compared.right
        else:
            excess = compared.losses.detach() - compared.reference_losses
        zeros = torch.zeros(self.num_groups, dtype=proxy.dtype, device=proxy.device)
        proxy_sums = zeros.index_add(0, groups, proxy)
        statistics = torch.cat([
            zeros.index_add(0, groups, excess.to(proxy.dtype)).detach(),
            torch.bincount(groups, minlength=self.num_groups).to(proxy.dtype),
        ])  # fmt: skip
        if self.runtime.distributed:  # the step's sums and counts over every rank's batch
            statistics = self.runtime.sum_(statistics)
        excess_sums, counts = statistics[: self.num_groups], statistics[self.num_groups :]
        present = counts > 0
        denominators = counts.clamp(min=1)
        proxies, excesses = proxy_sums / denominators, excess_sums / denominators
        if self.beyond_all_rows:  # each group against the step's rows together (a group absent: 0)
            total = counts.sum().clamp(min=1)
            proxies = torch.where(present, proxies - proxy.sum() / total, 0.0)
            excesses = excesses - excess_sums.sum() / total
        multipliers = self.multipliers.to(proxy.dtype)
        lagrangian = self.main(loss, rows) + self.runtime.world_size * (multipliers * proxies).sum()
        with torch.no_grad():
            violation = excesses.double() - self.bound
            self.multipliers[present] = (self.multipliers + self.step * violation)[present].clamp(min=0)
        return lagrangian

    def weights(self) -> list[float]:
        """The groups' current multipliers."""
        return [round(float(value), 6) for value in self.multipliers]


def balanced_constraints(
    rows: TrainingRows, options: ObjectiveOptions, device: torch.device, runtime: Runtime = SINGLE
) -> LagrangianConstraints:
    """``constrained``'s multipliers added to ``balanced``'s loss rule."""
    return LagrangianConstraints(rows, options, device, runtime, main=InverseSizeWeights(rows, options, device, runtime))


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
    epoch_rows=balanced_rows,
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
objective(
    "constrained",
    summary="no group worse than the dense model by more than --constraint-bound (Lagrange multipliers)",
    needs_groups=True,
    epoch_rows=every_row_once,
    loss_rule=LagrangianConstraints,
    reads=("constraint_bound", "constraint_metric", "constraint_form", "multiplier_lr"),
    needs_teacher=True,
)
objective(
    "balanced-constrained",
    summary="balanced's epochs (--balance-by) with constrained's per-group bounds (--constraint-bound)",
    needs_groups=True,
    epoch_rows=balanced_rows,
    loss_rule=balanced_constraints,
    reads=("balance_unit", "balance_by", "constraint_bound", "constraint_metric", "constraint_form", "multiplier_lr"),
    needs_teacher=True,
)

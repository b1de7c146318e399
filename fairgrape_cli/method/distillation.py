"""Distillation from the dense model: the pruned model also learns the dense model's outputs.

Hinton et al.'s knowledge distillation: per sample, the Kullback-Leibler divergence from the
teacher's softened distribution to the student's, both at temperature ``T``, times ``T**2`` (so
its gradients keep their scale as ``T`` changes). For a multi-label head each attribute is a
Bernoulli distribution and the divergence is averaged over the attributes, as the task loss is.
The per-sample loss every objective then sees is ``(1 - weight) * task + weight * distillation``:
distillation combines with any objective, and ``weight = 0`` is plain fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError


@dataclass(frozen=True)
class Distillation:
    """How much of each sample's loss is distillation (``weight`` in [0, 1], 0 = off), and at
    which ``temperature`` the teacher's and student's outputs are softened."""

    weight: float = 0.0
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise InputError(f"--distill-weight {self.weight}: must be in [0, 1] (0 turns distillation off)")
        if not self.temperature > 0:
            raise InputError(f"--distill-temperature {self.temperature}: must be positive")

    @property
    def active(self) -> bool:
        """Whether distillation is on (weight > 0)."""
        return self.weight > 0

    def settings(self) -> dict[str, float]:
        """What shaped the training, for the record."""
        return {"weight": self.weight, "temperature": self.temperature}


def distillation_losses(
    student: torch.Tensor, teacher: torch.Tensor, *, temperature: float, multi_label: bool
) -> torch.Tensor:
    """Per-sample ``T**2 * KL(teacher || student)`` of the softened outputs ``[B]``."""
    t = temperature
    if multi_label:  # one Bernoulli per attribute: KL = BCE(student; p_teacher) - H(p_teacher)
        target = torch.sigmoid(teacher / t)
        cross = F.binary_cross_entropy_with_logits(student / t, target, reduction="none")
        entropy = F.binary_cross_entropy_with_logits(teacher / t, target, reduction="none")
        return (cross - entropy).mean(1) * t * t
    log_student = F.log_softmax(student / t, dim=1)
    log_teacher = F.log_softmax(teacher / t, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(1) * t * t


def mixed_losses(task: torch.Tensor, distilled: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - weight) * task + weight * distilled``, per sample."""
    return (1.0 - weight) * task + weight * distilled


def check_teacher_fits(*, teacher_names: list[str] | None, teacher_outputs: int, names: list[str], what: str) -> None:
    """Refuse a teacher whose classes (or attributes) are not the student's: its outputs would
    be distilled into the wrong ones. ``what`` names the teacher in the message."""
    if teacher_outputs != len(names):
        raise InputError(f"{what} has {teacher_outputs} outputs, the model being fine-tuned {len(names)}: "
                         "a teacher must predict the same classes")  # fmt: skip
    if teacher_names is not None and list(teacher_names) != list(names):
        raise InputError(f"{what} predicts {', '.join(map(str, teacher_names))}, not {', '.join(map(str, names))}: "
                         "a teacher must predict the same classes, in the same order")  # fmt: skip

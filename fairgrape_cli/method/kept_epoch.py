"""Which fine-tuning epoch is kept, from each epoch's validation accuracy and worst-group accuracy.

Each rule is one registered definition, a function of the epochs' ``(accuracy, worst group)``
scores that returns the kept epoch's position:

- ``last``: the last epoch;
- ``accuracy``: the best validation accuracy (the first such epoch);
- ``worst-group``: the best worst-group accuracy, ties broken by accuracy;
- ``worst-group-near-best``: the best worst-group accuracy among the epochs whose accuracy is
  within ``within`` (a fraction: 0.01 = 1 point) of the best epoch's, ties broken by accuracy;
  it does not buy a worst-group point with many overall points, as ``worst-group`` may;
- ``auto``: ``accuracy`` for plain fine-tuning, ``worst-group`` for an objective that weighs groups.

Every rule picks an epoch that no other epoch beats on both scores, so training needs to keep
only the weights of such epochs (``undominated``) to apply any rule at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..registry import Registry

Scores = Sequence[tuple[float, float]]  # per epoch: (validation accuracy, worst-group accuracy)


def _last(scores: Scores, within: float) -> int:
    return len(scores) - 1


def _first_best(scores: Scores, key: Callable[[tuple[float, float]], tuple], among: Sequence[int]) -> int:
    best = max(key(scores[i]) for i in among)
    return next(i for i in among if key(scores[i]) == best)


def _accuracy(scores: Scores, within: float) -> int:
    return _first_best(scores, lambda s: (s[0],), range(len(scores)))


def _worst_group(scores: Scores, within: float) -> int:
    return _first_best(scores, lambda s: (s[1], s[0]), range(len(scores)))


def _worst_group_near_best(scores: Scores, within: float) -> int:
    best = max(accuracy for accuracy, _ in scores)
    near = [i for i, (accuracy, _) in enumerate(scores) if accuracy >= best - within - 1e-12]
    return _first_best(scores, lambda s: (s[1], s[0]), near)


KEEP_EPOCH_RULES: Registry[Callable[[Scores, float], int]] = Registry("--keep-epoch")
KEEP_EPOCH_RULES.add("last", _last)
KEEP_EPOCH_RULES.add("accuracy", _accuracy)
KEEP_EPOCH_RULES.add("worst-group", _worst_group)
KEEP_EPOCH_RULES.add("worst-group-near-best", _worst_group_near_best)
CHOICES = ("auto", *KEEP_EPOCH_RULES)


@dataclass(frozen=True)
class KeptEpoch:
    """The rule (``CHOICES``) and, for ``worst-group-near-best``, how far below the best
    accuracy an epoch may be (a fraction)."""

    rule: str = "auto"
    within: float = 0.01

    def __post_init__(self) -> None:
        if self.rule not in CHOICES:
            raise InputError(f"--keep-epoch {self.rule}: choose one of {', '.join(CHOICES)}")
        if not 0.0 <= self.within <= 1.0:
            raise InputError(f"--keep-within {self.within}: must be a fraction in [0, 1] (0.01 = 1 point)")

    def resolved(self, *, weighs_groups: bool) -> str:
        """The rule ``auto`` stands for with this objective."""
        if self.rule != "auto":
            return self.rule
        return "worst-group" if weighs_groups else "accuracy"

    def choose(self, scores: Scores, *, weighs_groups: bool) -> int:
        """The position of the kept epoch in ``scores`` (not empty)."""
        return KEEP_EPOCH_RULES[self.resolved(weighs_groups=weighs_groups)](scores, self.within)

    def settings(self, *, weighs_groups: bool) -> dict[str, object]:
        """What picked the epoch, for the record."""
        rule = self.resolved(weighs_groups=weighs_groups)
        return {"rule": rule, **({"within": self.within} if rule == "worst-group-near-best" else {})}


def undominated(scores: Scores) -> set[int]:
    """The epochs no other epoch beats on both accuracy and worst-group accuracy: every rule
    above picks one of them (or the last epoch)."""
    return {
        i for i, (accuracy, worst) in enumerate(scores)
        if not any(other[0] > accuracy and other[1] > worst for other in scores)
    }  # fmt: skip

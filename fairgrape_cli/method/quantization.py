"""Post-training quantization that answers to every group: the calibration sample and the
per-group accuracy control.

Calibration sets the int8 range of every activation from a sample of images; a sample drawn in
proportion to the data lets the majority set those ranges, so :func:`balanced_sample` draws every
group in equal measure.

The accuracy control (:func:`control_group_drops`) follows what NNCF's accuracy-aware quantization
and Intel Neural Compressor's fallback tuning do, with the per-group bound in place of their
average: if some group loses more than ``max_group_drop`` against the float model, each weight
layer's effect is measured (the model quantized except that one layer, returned to float), the
layers are ranked by it, most harmful first, and returned to float in that order, re-measuring
after each, until every group is within the bound or no layer is left to return.

Knows no files and no runtime: the model is reached through ``evaluate``, a function of the set of
layers kept in float that returns per-group accuracies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

# drops are differences of counts over the same images: equal up to float rounding
_TOLERANCE = 1e-9


def check_max_group_drop(value: float | None, *, flag: str = "--max-group-drop") -> None:
    """A bound on each group's accuracy drop is a fraction: refuse one outside [0, 1]."""
    if value is not None and not (0.0 <= value <= 1.0):
        raise InputError(f"{flag} {value:g}: must be a fraction in [0, 1] (0.01 = one point of accuracy)")


def balanced_sample(
    group_index: np.ndarray, group_names: Sequence[str], *, size: int, seed: int, where: str
) -> tuple[list[int], int]:
    """Rows for calibration: the same number from every group, ``size // G`` each (at least 1),
    fewer when the smallest group has fewer (every group then gives that many), drawn at random
    (``seed``) within each group; in row order. Returns the rows and the count per group.

    A group without rows is refused (``where`` names the split in the message): its activations
    would play no part in setting the ranges it will be quantized with.
    """
    if size < 1:
        raise InputError(f"--calibration-size {size}: must be at least 1")
    groups = np.asarray(group_index)
    members = [np.flatnonzero(groups == g) for g in range(len(group_names))]
    empty = [name for name, rows in zip(group_names, members) if len(rows) == 0]
    if empty:
        raise InputError(f"{where} has no images of group {', '.join(map(str, empty))}: calibrate on a split that has every group")
    per_group = min(max(size // len(group_names), 1), min(len(rows) for rows in members))
    generator = np.random.default_rng(seed)
    chosen = [generator.choice(rows, per_group, replace=False) for rows in members]
    return sorted(int(row) for row in np.concatenate(chosen)), per_group


def group_drops(reference: np.ndarray, accuracies: np.ndarray) -> np.ndarray:
    """Per group, the float model's accuracy minus this one's (positive: a loss)."""
    return np.asarray(reference, dtype=float) - np.asarray(accuracies, dtype=float)


def within_bound(drops: np.ndarray, bound: float) -> bool:
    """Whether every drop is at most ``bound`` (up to float rounding)."""
    return bool(np.all(np.asarray(drops) <= bound + _TOLERANCE))


@dataclass(frozen=True)
class Measurement:
    """The model with ``float_layers`` in float and the rest in int8, on the control split."""

    float_layers: tuple[str, ...]
    accuracies: np.ndarray  # per group
    drops: np.ndarray  # per group, against the float model

    @property
    def worst_drop(self) -> float:
        """The largest group drop (0 without groups)."""
        return float(np.max(self.drops)) if len(self.drops) else 0.0


@dataclass
class ControlResult:
    """Where the control stopped: the layers it returned to float and the drops it reached."""

    final: Measurement
    within: bool  # every group within the bound
    quantized: Measurement  # every layer in int8
    effects: dict[str, Measurement] = field(default_factory=dict)  # layer -> that layer alone in float
    ranking: list[str] = field(default_factory=list)  # most harmful first
    steps: list[Measurement] = field(default_factory=list)  # after each layer returned

    @property
    def float_layers(self) -> list[str]:
        """The layers the final model keeps in float."""
        return list(self.final.float_layers)

    @property
    def evaluations(self) -> int:
        """How many quantized models were measured."""
        # the first layer returned is the model its effect was measured on: not measured twice
        return 1 + len(self.effects) + max(len(self.steps) - 1, 0)


def harm(quantized: Measurement, alone_in_float: Measurement, bound: float) -> tuple[float, float, float]:
    """How much one layer's quantization hurts, from the model with that layer alone in float:
    what returning it removes of the groups' drops beyond the bound, then of the worst group's
    drop, then of the mean drop. Larger is more harmful."""

    def excess(drops: np.ndarray) -> float:
        return float(np.clip(np.asarray(drops) - bound, 0, None).sum())

    return (
        excess(quantized.drops) - excess(alone_in_float.drops),
        quantized.worst_drop - alone_in_float.worst_drop,
        float(np.mean(quantized.drops) - np.mean(alone_in_float.drops)),
    )


def control_group_drops(
    *,
    layers: Sequence[str],
    reference: np.ndarray,
    evaluate: Callable[[tuple[str, ...]], np.ndarray],
    max_group_drop: float,
    on_measured: Callable[[str, Measurement], None] | None = None,
) -> ControlResult:
    """Return weight layers to float, the most harmful first, until every group's accuracy is
    within ``max_group_drop`` of ``reference`` (the float model's per-group accuracy).

    ``layers`` are the candidates in graph order (ties in the ranking keep that order);
    ``evaluate(float_layers)`` quantizes every other layer and returns per-group accuracies.
    ``on_measured(phase, measurement)`` is told of each evaluation (``phase``: "quantized",
    "effect" or "returned"). The result says whether the bound was reached; when it was not, every
    layer is in float and the drops left come from what is quantized besides weight layers.
    """
    check_max_group_drop(max_group_drop)
    reference = np.asarray(reference, dtype=float)

    def measure(float_layers: tuple[str, ...], phase: str) -> Measurement:
        accuracies = np.asarray(evaluate(float_layers), dtype=float)
        measured = Measurement(float_layers, accuracies, group_drops(reference, accuracies))
        if on_measured is not None:
            on_measured(phase, measured)
        return measured

    quantized = measure((), "quantized")
    result = ControlResult(final=quantized, within=within_bound(quantized.drops, max_group_drop), quantized=quantized)
    if result.within or not layers:
        return result
    for layer in layers:
        result.effects[layer] = measure((layer,), "effect")
    position = {layer: index for index, layer in enumerate(layers)}
    scores = {layer: harm(quantized, result.effects[layer], max_group_drop) for layer in layers}
    result.ranking = sorted(layers, key=lambda layer: (*(-value for value in scores[layer]), position[layer]))
    returned: list[str] = []
    for layer in result.ranking:
        returned.append(layer)
        float_layers = tuple(sorted(returned, key=position.__getitem__))
        # one layer back: its effect was measured already (the same model)
        step = result.effects[layer] if len(returned) == 1 else measure(float_layers, "returned")
        result.steps.append(step)
        result.final = step
        if within_bound(step.drops, max_group_drop):
            result.within = True
            break
    return result

"""What each model predicted on every row, and how sure it was: the class (or 0/1 per attribute)
and the probability it gave that prediction, beside whether it was right.

Flips (``method.flips``) and error types (``method.error_types``) need the predictions
themselves; accuracy needs only right or wrong, which :class:`Predictions` still is (an
:class:`~fairgrape_cli.method.metrics.Outcomes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .heads import head_for
from .metrics import Outcomes

# head name -> the probability a model gives each of its predictions (logits, predictions) -> [B, A]
CONFIDENCE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "single-label": lambda logits, predicted: torch.softmax(logits.float(), 1).gather(1, predicted[:, None]),
    "multi-label": lambda logits, predicted: torch.where(
        predicted.bool(), torch.sigmoid(logits.float()), torch.sigmoid(-logits.float())
    ),
}


@dataclass
class Predictions(Outcomes):
    """:class:`Outcomes` with what was predicted: ``predicted`` ``[N, A]`` (the class index for a
    single label, A = 1; 0/1 per attribute) and ``confidence`` ``[N, A]`` (the probability the
    model gave that prediction); both 0 on rows never scored."""

    predicted: np.ndarray  # int [N, A]
    confidence: np.ndarray  # float [N, A]


@torch.no_grad()
def predict_all(
    models: Sequence[nn.Module],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    prepares: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    targets: torch.Tensor,
    on_batch: Callable[[int], None] | None = None,
) -> list[Predictions]:
    """Each model's predictions, their confidence and rightness on every row, decoding every
    image once for all models."""
    head = head_for(targets)
    width = targets.shape[1] if targets.ndim == 2 else 1
    confidence_of = CONFIDENCE[head.name]
    right = [torch.zeros((len(targets), width), dtype=torch.bool) for _ in models]
    predicted = [torch.zeros((len(targets), width), dtype=torch.long) for _ in models]
    confidence = [torch.zeros((len(targets), width), dtype=torch.float64) for _ in models]
    scored = torch.zeros(len(targets), dtype=torch.bool)
    for model in models:
        model.eval()
    for images, indices in batches:
        for position, (model, prepare) in enumerate(zip(models, prepares)):
            logits = model(prepare(images)).cpu()
            classes = head.predict(logits)
            right[position][indices] = head.right(classes, targets[indices])
            predicted[position][indices] = classes.reshape(len(indices), width)
            confidence[position][indices] = confidence_of(logits, classes).reshape(len(indices), width).double()
        scored[indices] = True
        if on_batch is not None:
            on_batch(len(indices))
    return [
        Predictions(out.numpy(), scored.numpy(), classes.numpy(), sure.numpy())
        for out, classes, sure in zip(right, predicted, confidence)
    ]

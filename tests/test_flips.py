"""Flips against the baseline: per-group counts and rates equal an independent count from the
two models' predictions; the exemplar list holds exactly those images, most confident first."""

from __future__ import annotations

import numpy as np

from fairgrape_cli.method.flips import count_flips, exemplars
from fairgrape_cli.method.metrics import Outcomes


def _outcomes(seed: int, rows: int = 300, attributes: int = 1):
    generator = np.random.default_rng(seed)
    baseline = generator.random((rows, attributes)) < 0.85
    model = np.where(generator.random((rows, attributes)) < 0.15, ~baseline, baseline)
    scored = generator.random(rows) > 0.05
    group = generator.integers(0, 3, rows)
    confidence = generator.uniform(0.5, 1.0, (rows, attributes))
    return Outcomes(model, scored), Outcomes(baseline, scored), group, confidence


def test_flip_counts_per_group_equal_a_count_by_hand():
    model, baseline, group, _ = _outcomes(0)
    found = count_flips(model, baseline, group, ["a", "b", "c"])
    for g, row in enumerate(found.groups):
        lost = gained = cells = 0
        for i in range(len(group)):
            if group[i] != g or not model.scored[i]:
                continue
            cells += 1
            lost += bool(baseline.right[i, 0] and not model.right[i, 0])
            gained += bool(model.right[i, 0] and not baseline.right[i, 0])
        assert (row.lost, row.gained, row.cells) == (lost, gained, cells)
        assert row.lost_rate == lost / cells and row.flip_rate == (lost + gained) / cells
        assert row.flip_rate_ci[0] <= row.flip_rate <= row.flip_rate_ci[1]
    assert found.worst_group_flip_rate == max(row.flip_rate for row in found.groups)
    low, high = found.worst_group_flip_rate_ci
    assert low <= found.worst_group_flip_rate <= high


def test_accuracy_can_stand_still_while_predictions_flip():
    baseline = np.array([[1], [1], [0], [0], [1], [0]], dtype=bool)
    model = np.array([[0], [1], [1], [0], [0], [1]], dtype=bool)  # two lost, two gained
    scored = np.ones(6, dtype=bool)
    found = count_flips(Outcomes(model, scored), Outcomes(baseline, scored), np.zeros(6, int), ["all"])
    assert model.mean() == baseline.mean()
    assert (found.groups[0].lost, found.groups[0].gained, found.worst_group_flip_rate) == (2, 2, 4 / 6)


def test_several_attributes_count_each_attribute_of_each_image():
    model, baseline, group, _ = _outcomes(1, rows=120, attributes=3)
    found = count_flips(model, baseline, group, ["a", "b", "c"])
    for g, row in enumerate(found.groups):
        rows = model.scored & (group == g)
        assert row.cells == 3 * rows.sum()
        assert row.lost == (baseline.right[rows] & ~model.right[rows]).sum()
        assert row.gained == (model.right[rows] & ~baseline.right[rows]).sum()


def test_exemplars_are_exactly_the_flips_most_confident_baseline_first():
    model, baseline, group, confidence = _outcomes(2, attributes=2)
    listed = exemplars(model, baseline, confidence)
    by_hand = {
        (row, attribute, "lost" if baseline.right[row, attribute] else "gained")
        for row in range(len(group)) for attribute in range(2)
        if model.scored[row] and model.right[row, attribute] != baseline.right[row, attribute]
    }  # fmt: skip
    assert {(item.row, item.attribute, item.kind) for item in listed} == by_hand
    assert len(listed) == len(by_hand)
    shown = [item.baseline_confidence for item in listed]
    assert shown == sorted(shown, reverse=True)
    assert all(item.baseline_confidence == confidence[item.row, item.attribute] for item in listed)


def test_predictions_keep_each_models_class_and_confidence_beside_right_or_wrong():
    import torch

    from fairgrape_cli.method.metrics import predict
    from fairgrape_cli.method.predictions import predict_all

    torch.manual_seed(0)
    images = torch.randn(10, 4)
    batches = [(images[:6], torch.arange(6)), (images[6:8], torch.arange(6, 8))]  # rows 8, 9 never scored
    for targets, width in ((torch.randint(0, 3, (10,)), 3), (torch.randint(0, 2, (10, 2)).float(), 2)):
        models = [torch.nn.Linear(4, width), torch.nn.Linear(4, width)]
        found = predict_all(models, batches, [lambda x: x] * 2, targets)
        plain = predict(models, batches, [lambda x: x] * 2, targets)
        for model, got, right in zip(models, found, plain):
            assert (got.right == right.right).all() and (got.scored == right.scored).all()
            logits = model(images[:8]).detach()
            if targets.ndim == 1:
                probabilities = torch.softmax(logits, 1)
                assert (got.predicted[:8, 0] == probabilities.argmax(1).numpy()).all()
                assert np.allclose(got.confidence[:8, 0], probabilities.max(1).values.numpy())
            else:
                present = torch.sigmoid(logits)
                assert (got.predicted[:8] == (logits > 0).numpy()).all()
                assert np.allclose(got.confidence[:8], torch.where(logits > 0, present, 1 - present).numpy())
            least = 1 / width if targets.ndim == 1 else 0.5  # the arg-max of K classes has at least 1/K
            assert (got.confidence[8:] == 0).all() and (got.confidence[:8] >= least - 1e-9).all()

"""Error types for binary targets: per-group rates, and equalized odds and demographic parity
differences equal to fairlearn's on the same predictions (fairlearn: a test-only dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from fairgrape_cli.method.error_types import error_types, worst_attribute

fairlearn_metrics = pytest.importorskip("fairlearn.metrics")


def _random_predictions(seed: int, rows: int = 600, groups: int = 4):
    generator = np.random.default_rng(seed)
    group = generator.integers(0, groups, rows)
    target = generator.random(rows) < 0.2 + 0.15 * group / groups
    flip = generator.random(rows) < 0.1 + 0.08 * group
    predicted = np.where(flip, ~target, target)
    return predicted.astype(int), target.astype(int), group


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_differences_equal_fairlearns_to_1e_9(seed):
    predicted, target, group = _random_predictions(seed, groups=2 + seed)
    names = [f"g{g}" for g in range(2 + seed)]
    found = error_types(predicted, target, group, names)
    expected_odds = fairlearn_metrics.equalized_odds_difference(target, predicted, sensitive_features=group)
    expected_parity = fairlearn_metrics.demographic_parity_difference(target, predicted, sensitive_features=group)
    assert abs(found.equalized_odds_difference - expected_odds) < 1e-9
    assert abs(found.demographic_parity_difference - expected_parity) < 1e-9
    frame = fairlearn_metrics.MetricFrame(
        metrics={
            "true_positive_rate": fairlearn_metrics.true_positive_rate,
            "false_positive_rate": fairlearn_metrics.false_positive_rate,
            "selection_rate": fairlearn_metrics.selection_rate,
        },
        y_true=target, y_pred=predicted, sensitive_features=group,
    )  # fmt: skip
    for position, row in enumerate(found.groups):
        for name in ("true_positive_rate", "false_positive_rate", "selection_rate"):
            assert abs(getattr(row, name) - frame.by_group[name].iloc[position]) < 1e-9
        assert row.balanced_accuracy == pytest.approx((row.true_positive_rate + 1 - row.false_positive_rate) / 2)


def test_a_group_without_positives_counts_its_true_positive_rate_as_zero_as_fairlearn_does():
    target = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    predicted = np.array([1, 0, 0, 1, 1, 0, 0, 0])
    group = np.array([0, 0, 0, 1, 1, 1, 1, 1])  # group 1: no positives, two predicted positive
    found = error_types(predicted, target, group, ["a", "b"])
    expected = fairlearn_metrics.equalized_odds_difference(target, predicted, sensitive_features=group)
    assert abs(found.equalized_odds_difference - expected) < 1e-9
    assert found.groups[1].true_positive_rate == 0.0 and found.groups[1].undefined == ["true_positive_rate"]


def test_rows_not_scored_are_left_out():
    predicted, target, group = _random_predictions(5)
    scored = np.arange(len(target)) % 3 != 0
    found = error_types(predicted, target, group, ["a", "b", "c", "d"], scored=scored)
    expected = fairlearn_metrics.equalized_odds_difference(target[scored], predicted[scored], sensitive_features=group[scored])
    assert abs(found.equalized_odds_difference - expected) < 1e-9
    assert sum(row.n for row in found.groups) == scored.sum()


def test_intervals_contain_the_values_and_say_unequal_groups_differ():
    predicted, target, group = _random_predictions(7, rows=4000)
    found = error_types(predicted, target, group, ["a", "b", "c", "d"])
    low, high = found.equalized_odds_difference_ci
    assert 0 < low <= found.equalized_odds_difference <= high  # error rates 10% to 34%: not noise
    low, high = found.demographic_parity_difference_ci
    assert low <= found.demographic_parity_difference <= high
    for row in found.groups:
        for name, (low, high) in row.intervals.items():
            assert low <= getattr(row, name) <= high
    assert error_types(predicted, target, group, ["a", "b", "c", "d"], confidence=None).equalized_odds_difference_ci is None


def test_a_multi_attribute_head_reports_its_worst_attribute():
    sections = [error_types(*_random_predictions(seed), ["a", "b", "c", "d"]) for seed in (1, 2, 3)]
    odds, parity, odds_ci, parity_ci = worst_attribute(sections)
    assert odds == max(section.equalized_odds_difference for section in sections)
    assert parity == max(section.demographic_parity_difference for section in sections)
    assert odds_ci[0] <= odds <= odds_ci[1] and parity_ci[0] <= parity <= parity_ci[1]
    # three attributes at once: wider than any one attribute's own interval
    assert odds_ci[1] >= max(section.equalized_odds_difference_ci[1] for section in sections)

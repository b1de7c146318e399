"""The report's interval method (method/intervals.py): published values, the point value always
inside, and the disparity bounds against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fairgrape_cli.method import intervals as iv


def test_wilson_and_mover_reproduce_newcombes_published_examples():
    # Newcombe (1998), Stat Med 17:857 (Table I) and 17:873 (Table II, method 10)
    low, high = iv.wilson(81 / 263, 263, confidence=0.95)
    assert (round(float(low), 4), round(float(high), 4)) == (0.2553, 0.3662)
    first = (56 / 70, *iv.wilson(56 / 70, 70, confidence=0.95))
    second = (48 / 80, *iv.wilson(48 / 80, 80, confidence=0.95))
    value, low, high = iv.difference(first, second)
    assert (round(float(low), 4), round(float(high), 4)) == (0.0524, 0.3339)


def test_wilson_contains_the_value_even_at_zero_and_one_and_is_all_of_0_1_without_images():
    values = np.array([0.0, 1.0, 0.5, 29 / 30, 1 / 30])
    low, high = iv.wilson(values, np.array([30, 30, 30, 30, 30]), confidence=0.95)
    assert (low <= values).all() and (values <= high).all()
    assert high[0] > 0 and low[1] < 1  # all wrong is not proof of a zero rate
    assert [float(x) for x in iv.wilson(0.0, 0, confidence=0.95)] == [0.0, 1.0]


def test_effective_sample_size_of_fractional_scores():
    # 0/1 scores: n; fractions spread less than 0/1 scores of the same mean: more, capped at n*A
    assert iv.Rate(np.array([0.7]), np.array([50])).effective_n()[0] == 50
    rate = iv.Rate(np.array([0.7]), np.array([50]), variance=np.array([0.07]), most=3.0)
    assert rate.effective_n()[0] == pytest.approx(150.0)  # 0.21 / 0.07 = 3, the cap
    rate = iv.Rate(np.array([0.7]), np.array([50]), variance=np.array([0.105]), most=3.0)
    assert rate.effective_n()[0] == pytest.approx(100.0)
    narrow, wide = iv.Rate(np.array([0.7]), np.array([50]), np.array([0.105]), most=3.0), iv.Rate(np.array([0.7]), np.array([50]))
    assert np.diff(narrow.interval(0.95), axis=0) < np.diff(wide.interval(0.95), axis=0)


def test_a_paired_drop_is_narrower_when_the_models_agree_on_the_images():
    baseline, model = iv.Rate(np.array([0.9]), np.array([100])), iv.Rate(np.array([0.85]), np.array([100]))
    correlated = iv.PairedRates(baseline, model, np.array([0.7])).interval(0.95)
    independent = iv.PairedRates(baseline, model, np.array([0.0])).interval(0.95)
    assert correlated[0] > independent[0] and correlated[1] < independent[1]
    assert correlated[0] < 0.05 < correlated[1]


def _random_estimates(generator, groups):
    n = generator.integers(20, 400, groups)
    value = generator.binomial(n, generator.uniform(0.6, 0.99, groups)) / n
    return iv.Rate(value, n)


@pytest.mark.parametrize("reduction", ["spread", "min", "max", "std"])
def test_every_disparity_interval_contains_its_point_value(reduction):
    generator = np.random.default_rng(3)
    point = {"spread": lambda v: v.max() - v.min(), "min": np.min, "max": np.max, "std": np.std}[reduction]
    for groups in (2, 3, 5, 8):
        for _ in range(40):
            rate = _random_estimates(generator, groups)
            low, high = iv.REDUCTION_INTERVALS[reduction](rate, confidence=0.95)
            assert low - 1e-12 <= point(rate.value) <= high + 1e-12


def test_equal_groups_give_a_gap_interval_that_reaches_zero():
    # the 0.2 percentile bootstrap gave +0.05 pp [+0.2, +15.7] here: an interval without its value
    rate = iv.Rate(np.array([0.8, 0.8005]), np.array([2000, 2000]))
    low, high = iv.spread_interval(rate, confidence=0.95)
    assert low == 0.0 and 0.0005 < high < 0.05


def test_a_large_gap_between_large_groups_is_told_from_zero():
    rate = iv.Rate(np.array([0.9, 0.7, 0.8]), np.array([1000, 1000, 1000]))
    low, high = iv.spread_interval(rate, confidence=0.95)
    assert 0.13 < low < 0.2 < high < 0.27


def test_std_bounds_match_brute_force_over_the_box():
    generator = np.random.default_rng(0)
    for groups in (2, 3):
        for _ in range(30):
            low, high = generator.random(groups) * 0.5, None
            high = low + generator.random(groups) * 0.3
            grid = np.stack(np.meshgrid(*[np.linspace(a, b, 61) for a, b in zip(low, high)]), -1).reshape(-1, groups)
            least = iv._least_variance(low, high)
            assert least <= np.var(grid, axis=1).min() + 1e-12
            assert least >= np.var(grid, axis=1).min() - 1e-2 * (high - low).max() ** 2
    for groups in (2, 4, 6):
        for _ in range(30):
            low = generator.random(groups) * 0.5
            high = low + generator.random(groups) * 0.3
            vertices = max(np.var(np.where(np.array(pick), high, low)) for pick in itertools.product([0, 1], repeat=groups))
            bound = iv._variance_bound(low, high)
            assert vertices - 1e-12 <= bound <= 1.3 * vertices  # a bound, near the largest


def test_intervals_broadcast_over_replicates():
    # the coverage study computes a thousand replicates in one call: rows are independent
    generator = np.random.default_rng(1)
    values = generator.binomial(100, 0.8, (5, 4)) / 100
    together = iv.spread_interval(iv.Rate(values, np.full(4, 100)), confidence=0.95)
    for row in range(5):
        alone = iv.spread_interval(iv.Rate(values[row], np.full(4, 100)), confidence=0.95)
        assert np.allclose([together[0][row], together[1][row]], alone)


def test_the_simultaneous_level_is_sidak():
    assert iv.sidak(0.95, 1) == 0.95
    assert iv.sidak(0.95, 6) ** 6 == pytest.approx(0.95)
    assert iv.z_value(0.95) == pytest.approx(1.959964, abs=1e-6)

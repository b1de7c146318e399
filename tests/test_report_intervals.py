"""Bootstrap intervals in reports: they cover the point value, narrow with n, are seeded, and
reach the JSON, the terminal table and compare."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairgrape_cli.method.metrics import Bootstrap, Outcomes, bootstrap_intervals, paired_outcomes

PAIRS = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # (model, baseline) right or not
# two groups: 40 images each; model right on 30 / 20, baseline right on 36 / 34
COUNTS = np.array([[28, 2, 8, 2], [18, 2, 16, 4]])


def outcomes_of(counts: np.ndarray) -> list:
    return [(PAIRS, row) for row in counts]


OUTCOMES = outcomes_of(COUNTS)


def _point(counts):
    n = counts.sum(1)
    accuracy = (counts[:, 0] + counts[:, 1]) / n
    drop = (counts[:, 0] + counts[:, 2]) / n - accuracy
    return accuracy, drop


def test_paired_outcomes_count_each_groups_images_by_their_pair_of_scores():
    right = np.array([[1], [1], [0], [0], [0], [1]], dtype=bool)
    scored = np.array([True, True, True, False, True, True])  # row 3 was a skipped image
    baseline = np.array([[1], [0], [1], [1], [1], [1]], dtype=bool)
    groups = np.array([0, 0, 0, 1, 1, 1])
    pairs = paired_outcomes(Outcomes(right, scored), Outcomes(baseline, scored), groups, 2)
    as_dict = [dict(zip(map(tuple, values.tolist()), counts.tolist())) for values, counts in pairs]
    assert as_dict == [{(0.0, 1.0): 1, (1.0, 0.0): 1, (1.0, 1.0): 1}, {(0.0, 1.0): 1, (1.0, 1.0): 1}]
    alone = paired_outcomes(Outcomes(right, scored), None, groups, 2)
    assert [dict(zip(map(tuple, v.tolist()), c.tolist())) for v, c in alone][0] == {(0.0, 0.0): 1, (1.0, 0.0): 2}


def test_several_attributes_pair_each_images_fraction_right():
    right = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=bool)
    base = np.ones((3, 3), dtype=bool)
    (values, counts), = paired_outcomes(Outcomes(right, np.ones(3, bool)), Outcomes(base, np.ones(3, bool)),
                                        np.zeros(3, int), 1)  # fmt: skip
    assert dict(zip(map(tuple, values.tolist()), counts.tolist())) == {(1 / 3, 1.0): 1, (2 / 3, 1.0): 2}


def test_intervals_cover_the_point_values():
    intervals = bootstrap_intervals(OUTCOMES, has_baseline=True, settings=Bootstrap(resamples=2000))
    accuracy, drop = _point(COUNTS)
    for g in range(2):
        assert intervals["accuracy"][g][0] <= accuracy[g] <= intervals["accuracy"][g][1]
        assert intervals["drop"][g][0] <= drop[g] <= intervals["drop"][g][1]
    gap = drop.max() - drop.min()
    low, high = intervals["disparity"]["drop_gap"]
    assert low <= gap <= high and low > 0  # a 25-point gap on 40 images a group is not noise
    low, high = intervals["disparity"]["worst_group_accuracy"]
    assert low <= accuracy.min() <= high
    overall = (COUNTS[:, :2].sum()) / COUNTS.sum()
    assert intervals["overall_accuracy"][0] <= overall <= intervals["overall_accuracy"][1]


def test_intervals_narrow_with_n():
    small = bootstrap_intervals(OUTCOMES, has_baseline=True, settings=Bootstrap())
    large = bootstrap_intervals(outcomes_of(COUNTS * 25), has_baseline=True, settings=Bootstrap())

    def width(pair):
        return pair[1] - pair[0]

    for g in range(2):
        assert width(large["accuracy"][g]) < width(small["accuracy"][g]) / 3
        assert width(large["drop"][g]) < width(small["drop"][g]) / 3
    assert width(large["disparity"]["drop_gap"]) < width(small["disparity"]["drop_gap"]) / 3


def test_intervals_are_seeded_and_optional():
    settings = Bootstrap(resamples=500, seed=3)
    first = bootstrap_intervals(OUTCOMES, has_baseline=True, settings=settings)
    assert first == bootstrap_intervals(OUTCOMES, has_baseline=True, settings=settings)
    assert first != bootstrap_intervals(OUTCOMES, has_baseline=True, settings=Bootstrap(resamples=500, seed=4))
    assert bootstrap_intervals(OUTCOMES, has_baseline=True, settings=Bootstrap(resamples=0)) is None
    without = bootstrap_intervals(OUTCOMES, has_baseline=False, settings=settings)
    assert "drop" not in without and set(without["disparity"]) == {"accuracy_gap", "worst_group_accuracy"}


def test_resampling_counts_is_resampling_images():
    """The multinomial draw of outcome counts has the spread of drawing the images themselves."""
    intervals = bootstrap_intervals(OUTCOMES, has_baseline=True, settings=Bootstrap(resamples=4000))
    generator = np.random.default_rng(0)
    right = np.repeat([1, 1, 0, 0], COUNTS[1])  # group 1's images: model right or not
    by_images = generator.choice(right, size=(4000, len(right))).mean(axis=1)
    expected = np.quantile(by_images, [0.025, 0.975])
    assert intervals["accuracy"][1] == pytest.approx(expected.tolist(), abs=0.026)  # one image = 0.025


def test_report_json_and_table_carry_the_intervals(tmp_path, cli, tiny_model_path, resnet_path, biased_data):
    out = tmp_path / "report.json"
    result = cli("report", tiny_model_path, biased_data, "--groups", "group", "--baseline", resnet_path,
                 "--json", out, "--workers", "0", "--seed", "1")  # fmt: skip
    assert result.code == 0, result
    report = json.loads(out.read_text())
    for row in report["groups"]:
        for key in ("accuracy", "drop"):
            low, high = row[f"{key}_ci"]
            assert low <= row[key] <= high
    for name in ("drop_gap", "worst_group_accuracy", "accuracy_gap", "drop_std"):
        assert len(report["disparity"][f"{name}_ci"]) == 2
    assert report["intervals"]["method"].startswith("Wilson score") and "bootstrap" not in report
    assert "95% CI: Wilson score" in result.out
    booted = tmp_path / "booted.json"
    result = cli("report", tiny_model_path, biased_data, "--groups", "group", "--baseline", resnet_path,
                 "--json", booted, "--workers", "0", "--seed", "1", "--intervals", "bootstrap")  # fmt: skip
    assert result.code == 0, result
    booted = json.loads(booted.read_text())
    assert booted["bootstrap"]["resamples"] == 1000 and booted["bootstrap"]["seed"] == 1
    assert booted["intervals"]["method"].startswith("percentile bootstrap")
    plain = cli("report", tiny_model_path, biased_data, "--groups", "group", "--json", tmp_path / "plain.json",
                "--workers", "0", "--bootstrap", "0")  # fmt: skip
    assert plain.code == 0 and "95% CI" not in plain.out
    assert "accuracy_ci" not in json.loads((tmp_path / "plain.json").read_text())["groups"][0]

    compared = cli("compare", out, tmp_path / "plain.json", "--json", tmp_path / "comparison.json")
    assert compared.code == 0, compared
    first = json.loads((tmp_path / "comparison.json").read_text())["entries"][0]
    assert first["intervals"]["drop_gap"] == report["disparity"]["drop_gap_ci"]
    assert first["groups"][0]["intervals"]["accuracy"] == report["groups"][0]["accuracy_ci"]
    low, high = report["disparity"]["drop_gap_ci"]
    assert f"[{100 * low:+.1f}, {100 * high:+.1f}]" in compared.out

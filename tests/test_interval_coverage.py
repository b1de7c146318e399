"""A seeded few-second run of benchmarks/intervals.py's coverage study: the report's intervals
cover the true value at about their level where the old percentile bootstrap did not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "intervals.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("interval_study", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# 300 replicates: a coverage of 95% is measured within about +-2.5 points (2 standard errors)
@pytest.mark.parametrize("family,sizes,gap", [
    ("accuracy", "4 mixed", 0.0), ("accuracy", "2x40", 0.10), ("errors", "4x300", 0.0), ("attributes", "4 mixed", 0.05),
])  # fmt: skip
def test_the_report_intervals_cover_the_true_value(study, family, sizes, gap):
    result = study.simulate(family, sizes, gap, replicates=300, resamples=0, seed=11, methods=("score",))
    for metric, by_method in result.items():
        numbers = by_method["score"]
        assert numbers["coverage"] >= 0.92, (metric, numbers)
        assert numbers["excludes_value"] == 0, metric


def test_the_old_percentile_bootstrap_misses_a_zero_gap(study):
    result = study.simulate("accuracy", "4 mixed", 0.0, replicates=100, resamples=200, seed=11,
                            methods=("percentile", "score"))  # fmt: skip
    assert result["drop_gap"]["percentile"]["coverage"] < 0.2  # its interval lies above 0
    assert result["drop_gap"]["score"]["coverage"] > 0.9

"""The tolerance tests use for sums taken in another order (torchrun shards, hand computations)."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close_to_scale


def test_a_last_bit_difference_next_to_zero_passes_where_a_zero_atol_failed():
    # the torchrun case of issue 28: 2.2e-16 apart on an element of 2e-11, in a tensor up to 1e-6
    expected = torch.tensor([1e-6, 3e-7, 1.9e-11], dtype=torch.float64)
    actual = expected + torch.tensor([0.0, 0.0, 2.2e-16], dtype=torch.float64)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=0)
    assert_close_to_scale(actual, expected, rtol=1e-5)


def test_a_real_difference_still_fails():
    expected = torch.tensor([1e-6, 3e-7, 1.9e-11], dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_close_to_scale(expected * 1.001, expected, rtol=1e-5)
    with pytest.raises(AssertionError):  # the small element wrong by far more than the scale allows
        assert_close_to_scale(expected + torch.tensor([0.0, 0.0, 1e-10], dtype=torch.float64), expected, rtol=1e-5)

"""Scores -> masks: the compiled greedy against the plain specification, and the baselines."""

from __future__ import annotations

import pytest
import torch

from fairgrape_cli.errors import InputError
from fairgrape_cli.method.selection import CRITERIA, build_masks, kept_count, select

from greedy_reference import reference_keep


def _select_both(scores, candidates, keep, weight, already_kept=None):
    fast = select(scores, candidates, keep, weight, already_kept=already_kept)
    slow = reference_keep(
        scores.tolist(), candidates.tolist(), keep, weight.tolist(),
        already_kept.tolist() if already_kept is not None else None,
    )  # fmt: skip
    return fast.tolist(), slow


@pytest.mark.parametrize("seed", range(12))
def test_greedy_matches_reference_on_random_scores(seed):
    generator = torch.Generator().manual_seed(seed)
    groups = 2 + seed % 4
    n = 40 + 13 * seed
    scores = torch.rand(groups, n, generator=generator) ** 3
    candidates = torch.rand(n, generator=generator) < 0.8
    weight = torch.randn(n, generator=generator)
    keep = int(candidates.sum()) // (2 + seed % 3)
    fast, slow = _select_both(scores, candidates, keep, weight)
    assert fast == slow
    assert sum(fast) == keep


@pytest.mark.parametrize("seed", range(8))
def test_greedy_matches_reference_with_ties(seed):
    """Integer-valued scores make many ties: rankings must break them by lower flat index."""
    generator = torch.Generator().manual_seed(100 + seed)
    scores = torch.randint(0, 4, (3, 60), generator=generator).float()
    candidates = torch.ones(60, dtype=torch.bool)
    weight = torch.randn(60, generator=generator)
    for keep in (1, 7, 30, 59):
        fast, slow = _select_both(scores, candidates, keep, weight)
        assert fast == slow, keep


def test_greedy_starts_with_group_whose_target_share_is_largest():
    # group 1 holds most of the importance, so at the first step (shares 1/G) it is furthest behind
    scores = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 5.0, 4.0, 3.0]])
    kept = select(scores, torch.ones(4, dtype=torch.bool), 1, torch.ones(4))
    assert kept.tolist() == [False, True, False, False]


def test_greedy_keeps_minority_share_where_summed_ranking_would_not():
    # Group 1 is small but depends on weights 4 and 5; summed importance ranks them last.
    scores = torch.tensor([[9.0, 8.0, 7.0, 6.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 3.0, 2.0]])
    candidates = torch.ones(6, dtype=torch.bool)
    fair = select(scores, candidates, 3, torch.ones(6))
    summed = select(scores.sum(0, keepdim=True), candidates, 3, torch.ones(6))
    assert fair[4] and not summed[4]
    assert summed.tolist() == [True, True, True, False, False, False]


def test_all_zero_importance_falls_back_to_magnitude():
    scores = torch.zeros(2, 5)
    weight = torch.tensor([0.1, -3.0, 0.5, 2.0, -0.2])
    kept = select(scores, torch.ones(5, dtype=torch.bool), 2, weight)
    assert kept.tolist() == [False, True, False, True, False]


def test_previously_masked_weights_stay_masked_and_rate_is_cumulative():
    torch.manual_seed(0)
    weight = torch.randn(10, 10)
    importance = torch.rand(2, 10, 10)
    previous = torch.ones(10, 10, dtype=torch.bool)
    previous[:5] = False  # half already pruned
    masks = build_masks(
        weights={"w": weight}, importance={"w": importance}, previous={"w": previous},
        method="fairgrape", rate=0.8,
    )  # fmt: skip
    assert int(masks["w"].sum()) == 20  # 80% of the 100 weights pruned in total, not of 50
    assert not masks["w"][:5].any()


def test_rate_below_previous_density_keeps_every_remaining_candidate():
    previous = torch.zeros(4, 5, dtype=torch.bool)
    previous[0] = True
    masks = build_masks(
        weights={"w": torch.randn(4, 5)}, importance={"w": torch.rand(3, 4, 5)},
        previous={"w": previous}, method="fairgrape", rate=0.5,
    )  # fmt: skip
    assert torch.equal(masks["w"], previous)


@pytest.mark.parametrize("rate,size,expected", [(0.9, 100, 10), (0.9, 27, 3), (0.5, 5, 2), (0.0, 7, 7)])
def test_kept_count_rounds_as_specified(rate, size, expected):
    assert kept_count(rate, size) == expected == round((1 - rate) * size)


def test_per_layer_counts_and_shapes():
    torch.manual_seed(0)
    weights = {"a": torch.randn(8, 3, 3, 3), "b": torch.randn(5, 8)}
    importance = {name: torch.rand(3, *w.shape) for name, w in weights.items()}
    for method in CRITERIA:
        masks = build_masks(weights=weights, importance=importance, method=method, rate=0.75, seed=3)
        for name, weight in weights.items():
            assert masks[name].shape == weight.shape and masks[name].dtype == torch.bool
            assert int(masks[name].sum()) == round(0.25 * weight.numel()), (method, name)


def test_taylor_ranks_by_importance_summed_over_groups():
    importance = torch.tensor([[[1.0, 0.0, 5.0, 0.0]], [[0.0, 3.0, 0.0, 2.5]]])  # [G=2, 1, 4]
    masks = build_masks(weights={"w": torch.ones(1, 4)}, importance={"w": importance}, method="taylor", rate=0.5)
    assert masks["w"].tolist() == [[False, True, True, False]]


def test_magnitude_needs_no_importance_and_keeps_largest():
    weight = torch.tensor([[0.1, -4.0, 2.0, 0.3]])
    masks = build_masks(weights={"w": weight}, method="magnitude", rate=0.5)
    assert masks["w"].tolist() == [[False, True, True, False]]


def test_random_is_seeded():
    weights = {"w": torch.randn(50)}
    first = build_masks(weights=weights, method="random", rate=0.5, seed=4)["w"]
    again = build_masks(weights=weights, method="random", rate=0.5, seed=4)["w"]
    other = build_masks(weights=weights, method="random", rate=0.5, seed=5)["w"]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_methods_needing_importance_refuse_without_it():
    with pytest.raises(InputError, match="needs an importance file"):
        build_masks(weights={"w": torch.randn(4)}, method="fairgrape", rate=0.5)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rate_outside_range_is_refused(rate):
    with pytest.raises(InputError, match="--rate"):
        build_masks(weights={"w": torch.randn(4)}, method="magnitude", rate=rate)


def test_global_scope_keeps_pool_count_and_min_layer_density():
    torch.manual_seed(0)
    weights = {"big": torch.randn(1000), "small": torch.randn(100)}
    importance = {"big": torch.rand(2, 1000) * 10, "small": torch.rand(2, 100) * 0.001}
    masks = build_masks(
        weights=weights, importance=importance, method="fairgrape", rate=0.9, scope="global",
        min_layer_density=0.05,
    )  # fmt: skip
    assert int(masks["big"].sum()) + int(masks["small"].sum()) == 110
    assert int(masks["small"].sum()) >= 5  # would be emptied by its tiny importance otherwise


def test_global_greedy_matches_reference_from_reserved_start():
    generator = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 5, (3, 80), generator=generator).float()
    candidates = torch.ones(80, dtype=torch.bool)
    reserved = torch.zeros(80, dtype=torch.bool)
    reserved[[3, 40, 77]] = True
    fast, slow = _select_both(scores, candidates, 20, torch.randn(80), already_kept=reserved)
    assert fast == slow

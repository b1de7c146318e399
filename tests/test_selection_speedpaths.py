"""The fast paths of selection give exactly the specified masks: rankings of only the top
(high rates), resuming the greedy when a group runs out of ranked places, the global pool, every
baseline in both scopes, lazily read importance, and `fairgrape prune --scope global`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.artifacts import IMPORTANCE_FORMAT, read_importance, read_masks, write_artifact
from fairgrape_cli.io.checkpoints import load_checkpoint, prunable_parameters
from fairgrape_cli.io.files import sha256_file
from fairgrape_cli.method import selection
from fairgrape_cli.method.selection import build_masks, kept_count, ranking_places, select

from greedy_reference import reference_keep


def _tied_scores(seed: int, groups: int, n: int, levels: int = 6) -> torch.Tensor:
    """Few distinct values (many exact ties), some zeros, different per group."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (groups, n), generator=generator).float() * (1 + torch.rand(groups, 1, generator=generator))


def _reference(scores, candidates, keep, weight, already_kept=None):
    return reference_keep(
        scores.tolist(), candidates.tolist(), keep, weight.tolist(),
        already_kept.tolist() if already_kept is not None else None,
    )  # fmt: skip


def _stable_descending(row: torch.Tensor, candidates: torch.Tensor) -> list[int]:
    pool = [i for i in range(row.numel()) if candidates[i]]
    return sorted(pool, key=lambda i: (-float(row[i]), i))


# ----------------------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("length", [1, 7, 60, 400, 999])  # top-only path below n/4, full sort above
def test_ranking_places_are_the_stable_descending_sort(dtype, length):
    generator = torch.Generator().manual_seed(length)
    row = (torch.randint(-3, 4, (1000,), generator=generator) * 0.5).to(dtype)
    row[::7] = -0.0  # ties with +0.0, as in torch.sort and the specification
    row[3], row[500] = math.inf, -math.inf
    candidates = torch.rand(1000, generator=generator) < 0.9
    length = min(length, int(candidates.sum()))
    out = torch.empty(length, dtype=torch.int64)
    ranking_places(row, candidates, out=out)
    assert out.tolist() == _stable_descending(row, candidates)[:length]


def test_ranking_places_continue_after_a_given_place():
    row = _tied_scores(1, 1, 3000, levels=4)[0]
    candidates = torch.ones(3000, dtype=torch.bool)
    expected = _stable_descending(row, candidates)
    pieces, after = [], None
    for size in (5, 40, 300, 900, 1755):
        out = torch.empty(size, dtype=torch.int64)
        pieces += ranking_places(row, candidates, out=out, after=after).tolist()
        after = pieces[-1]
    assert pieces == expected


# ------------------------------------------------------------------------------------ greedy paths


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rate", [0.9, 0.97, 0.995])
def test_high_rates_rank_only_the_top_and_match_the_reference(seed, rate):
    scores = _tied_scores(seed, 3 + seed % 3, 4000)
    candidates = torch.rand(4000, generator=torch.Generator().manual_seed(seed)) < 0.85
    keep = kept_count(rate, 4000)
    assert 4 * selection._first_places(keep, scores.shape[0]) < 4000  # the top-only path
    weight = torch.randn(4000)
    assert select(scores, candidates, keep, weight).tolist() == _reference(scores, candidates, keep, weight)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("rate", [0.2, 0.6, 0.95])
def test_greedy_resumes_when_a_group_runs_out_of_ranked_places(monkeypatch, seed, rate):
    monkeypatch.setattr(selection, "_first_places", lambda quota, groups: 3)  # run out at once
    calls = []
    original = selection.rankings
    monkeypatch.setattr(selection, "rankings", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    scores = _tied_scores(10 + seed, 4, 600, levels=3)
    candidates = torch.rand(600, generator=torch.Generator().manual_seed(seed)) < 0.9
    reserved = candidates & (torch.rand(600, generator=torch.Generator().manual_seed(99)) < 0.05)
    keep = kept_count(rate, 600)
    weight = torch.randn(600)
    fast = select(scores, candidates, keep, weight, already_kept=reserved)
    assert fast.tolist() == _reference(scores, candidates, keep, weight, reserved)
    assert len(calls) > 1 and calls == sorted(calls)  # it did extend, each time further


def test_correlated_groups_need_deep_rankings_and_still_match(monkeypatch):
    # every group ranks alike: each pointer passes what the others took, far past quota / G
    calls = []
    original = selection.rankings
    monkeypatch.setattr(selection, "rankings", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    base = torch.rand(3000, generator=torch.Generator().manual_seed(3))
    scores = torch.stack([base * (1 + g) for g in range(6)] + [base.round(decimals=2)])
    keep = kept_count(0.5, 3000)
    weight = torch.randn(3000)
    candidates = torch.ones(3000, dtype=torch.bool)
    assert select(scores, candidates, keep, weight).tolist() == _reference(scores, candidates, keep, weight)
    assert len(calls) > 1  # the first places were not enough


def test_nan_importance_is_refused():
    scores = torch.rand(2, 10)
    scores[1, 4] = math.nan
    with pytest.raises(InputError, match="NaN"):
        select(scores, torch.ones(10, dtype=torch.bool), 5, torch.ones(10))


# ------------------------------------------------------------------------------ scopes, baselines


def _layers(seed: int = 0, groups: int = 3):
    generator = torch.Generator().manual_seed(seed)
    weights = {"a": torch.randn(6, 3, 3, 3, generator=generator), "b": torch.randn(40, 6, generator=generator),
               "c": torch.randn(5, 40, generator=generator)}  # fmt: skip
    importance = {
        name: torch.randint(0, 5, (groups, *w.shape), generator=generator).float() * (1 + i)
        for i, (name, w) in enumerate(weights.items())
    }
    return weights, importance


def test_global_fairgrape_is_the_reference_greedy_over_the_pool_after_each_layers_floor():
    weights, importance = _layers()
    rate, density = 0.85, 0.1
    masks = build_masks(
        weights=weights, importance=importance, method="fairgrape", rate=rate, scope="global",
        min_layer_density=density,
    )  # fmt: skip
    reserved, pool_scores, pool_weight = [], [], []
    for name, weight in weights.items():
        scores = importance[name].reshape(3, -1)
        floor = math.ceil(density * weight.numel())
        reserved += _reference(scores, torch.ones(weight.numel(), dtype=torch.bool), floor, weight.reshape(-1))
        pool_scores.append(scores)
        pool_weight.append(weight.reshape(-1))
    scores, weight = torch.cat(pool_scores, 1), torch.cat(pool_weight)
    total = weight.numel()
    expected = _reference(scores, torch.ones(total, dtype=torch.bool), kept_count(rate, total), weight,
                          torch.tensor(reserved))  # fmt: skip
    assert torch.cat([masks[name].reshape(-1) for name in weights]).tolist() == expected


@pytest.mark.parametrize("method", sorted(selection.CRITERIA))
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_every_method_in_both_scopes_keeps_the_right_counts(method, scope):
    weights, importance = _layers(seed=1)
    previous = {"b": torch.rand(40, 6, generator=torch.Generator().manual_seed(2)) < 0.7}
    masks = build_masks(
        weights=weights, importance=importance, previous=previous, method=method, rate=0.8,
        scope=scope, min_layer_density=0.05, seed=3,
    )  # fmt: skip
    assert not masks["b"][~previous["b"]].any()  # pruned weights stay pruned
    if scope == "layer":
        for name, weight in weights.items():
            assert int(masks[name].sum()) == kept_count(0.8, weight.numel()), name
    else:
        total = sum(w.numel() for w in weights.values())
        assert sum(int(m.sum()) for m in masks.values()) == kept_count(0.8, total)
        for name, weight in weights.items():
            assert int(masks[name].sum()) >= math.ceil(0.05 * weight.numel()), name
    again = build_masks(
        weights=weights, importance=importance, previous=previous, method=method, rate=0.8,
        scope=scope, min_layer_density=0.05, seed=3,
    )  # fmt: skip
    assert all(torch.equal(masks[name], again[name]) for name in weights)  # two threads, same masks


def test_global_magnitude_is_the_pool_wide_top_k_without_a_floor():
    weights, _ = _layers(seed=4)
    masks = build_masks(weights=weights, method="magnitude", rate=0.7, scope="global", min_layer_density=0.0)
    pool = torch.cat([w.reshape(-1) for w in weights.values()]).abs()
    keep = kept_count(0.7, pool.numel())
    expected = torch.zeros(pool.numel(), dtype=torch.bool)
    expected[torch.sort(pool, descending=True, stable=True).indices[:keep]] = True
    assert torch.equal(torch.cat([m.reshape(-1) for m in masks.values()]), expected)


def test_taylor_in_global_scope_ranks_by_summed_importance():
    weights, importance = _layers(seed=5)
    masks = build_masks(
        weights=weights, importance=importance, method="taylor", rate=0.6, scope="global", min_layer_density=0.0
    )  # fmt: skip
    summed = torch.cat([importance[name].double().sum(0).reshape(-1) for name in weights])
    keep = kept_count(0.6, summed.numel())
    expected = torch.zeros(summed.numel(), dtype=torch.bool)
    expected[torch.sort(summed, descending=True, stable=True).indices[:keep]] = True
    assert torch.equal(torch.cat([m.reshape(-1) for m in masks.values()]), expected)


def test_min_layer_density_out_of_range_is_refused():
    weights, importance = _layers()
    with pytest.raises(InputError, match="--min-layer-density"):
        build_masks(weights=weights, importance=importance, method="fairgrape", rate=0.5, scope="global",
                    min_layer_density=1.5)  # fmt: skip


# ------------------------------------------------------------------------------- files and the CLI


def _write_importance(tmp_path, model_path, groups=("dark", "light", "mid")):
    weights = prunable_parameters(load_checkpoint(model_path).model)
    generator = torch.Generator().manual_seed(0)
    tensors = {name: torch.rand(len(groups), *w.shape, generator=generator).pow(3) for name, w in weights.items()}
    path = tmp_path / "importance.safetensors"
    write_artifact(path, tensors, {
        "format": IMPORTANCE_FORMAT, "groups": list(groups), "attribute": "skin", "criterion": "test",
        "model": str(model_path), "model_sha256": sha256_file(model_path),
    })  # fmt: skip
    return path, tensors, weights


def test_lazily_read_importance_gives_the_same_masks_as_tensors_in_memory(tmp_path, tiny_model_path):
    path, tensors, weights = _write_importance(tmp_path, tiny_model_path)
    lazy = read_importance(path, lazy=True)
    assert {name: info.shape for name, info in lazy.headers.items()} == {n: tuple(t.shape) for n, t in tensors.items()}
    assert lazy.sha256 == sha256_file(path)
    from_file = build_masks(weights=weights, importance=lazy.tensors, method="fairgrape", rate=0.9)
    in_memory = build_masks(weights=weights, importance=tensors, method="fairgrape", rate=0.9)
    assert all(torch.equal(from_file[name], in_memory[name]) for name in weights)


def test_cli_prune_global_scope_with_min_layer_density(tmp_path, cli, tiny_model_path):
    path, tensors, weights = _write_importance(tmp_path, tiny_model_path)
    result = cli("prune", "--rate", "0.95", "--scope", "global", "--min-layer-density", "0.04", "-q", cwd=tmp_path)
    assert result.code == 0, result
    masks = read_masks(tmp_path / "masks.safetensors")
    assert masks.metadata["scope"] == "global" and masks.metadata["min_layer_density"] == "0.04"
    total = sum(w.numel() for w in weights.values())
    kept = {name: int(masks.tensors[name].sum()) for name in weights}
    floors = {name: math.ceil(0.04 * w.numel()) for name, w in weights.items()}
    assert all(kept[name] >= floors[name] for name in weights), (kept, floors)
    assert sum(kept.values()) == max(kept_count(0.95, total), sum(floors.values()))
    assert abs(float(masks.metadata["density"]) - sum(kept.values()) / total) < 1e-9
    pruned = prunable_parameters(load_checkpoint(tmp_path / "pruned.pt").model)
    assert all((pruned[name][~masks.tensors[name]] == 0).all() for name in weights)


def test_cli_prune_global_magnitude_needs_no_importance(tmp_path, cli, tiny_model_path):
    result = cli("prune", tiny_model_path, "--rate", "0.5", "--method", "magnitude", "--scope", "global", "-q", cwd=tmp_path)
    assert result.code == 0, result
    masks = read_masks(tmp_path / "masks.safetensors")
    assert masks.metadata["method"] == "magnitude" and masks.metadata["scope"] == "global"
    assert abs(float(masks.metadata["density"]) - 0.5) < 0.01
    assert json.loads(json.dumps(masks.metadata))  # plain, JSON-able metadata


def test_cli_refuses_a_bad_min_layer_density(tmp_path, cli, tiny_model_path):
    _write_importance(tmp_path, tiny_model_path)
    result = cli("prune", "--rate", "0.5", "--scope", "global", "--min-layer-density", "2", cwd=tmp_path)
    assert result.code == 2 and "--min-layer-density" in result.err and "Traceback" not in result.err

"""Fair data pruning (DRoP): quotas against hand computations, exact totals, seeded determinism,
and ``fairgrape data-prune`` end to end: a manifest every command reads, a plan that records
where it came from, and one-line errors for bad input."""

from __future__ import annotations

import csv
import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN
from fairgrape_cli.io.files import sha256_file
from fairgrape_cli.method.data_pruning import (
    QUOTAS,
    drop_quotas,
    el2n,
    floored_quotas,
    kept_counts,
    kept_total,
    plan_data_pruning,
    uniform_quotas,
)

# ------------------------------------------------------------------------------------ the quotas


def reference_quotas(sizes, recalls, density):
    """The paper's quotas found another way: d_k = min(1, c (1 - r_k)) with c by bisection, so
    that sum_k N_k d_k = N d (and the rest evenly over recall-1 units once all others are full)."""
    sizes, hardness = np.asarray(sizes, float), 1 - np.asarray(recalls, float)
    wanted = density * sizes.sum()
    low, high = 0.0, 1e12
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if (sizes * np.minimum(1, middle * hardness)).sum() < wanted else (low, middle)
    fractions = np.minimum(1, high * hardness)
    perfect = hardness <= 0
    if perfect.any() and (sizes * fractions).sum() < wanted - 1e-9:
        fractions[perfect] = (wanted - (sizes * fractions).sum()) / sizes[perfect].sum()
    return fractions


def test_drop_quotas_are_the_papers_formula_before_any_cap():
    # Z = 0.4 * 0.2 + 0.6 * 0.4 = 0.32; d_k = 0.5 (1 - r_k) / Z
    quotas = drop_quotas(sizes=np.array([40, 60]), recalls=np.array([0.8, 0.6]), density=0.5)
    assert quotas.fractions == pytest.approx([0.5 * 0.2 / 0.32, 0.5 * 0.4 / 0.32], abs=1e-12)
    assert not quotas.capped.any() and quotas.note is None


def test_a_capped_class_gives_its_excess_to_the_others_in_proportion_to_their_error():
    # Z = .6*.1 + .3*.4 + .1*.8 = .26: d/Z = 1.923 puts the third class at 1.54 -> capped at 1; the
    # 50 - 10 = 40 rows left go to the others as c (1 - r_k) with c = 40 / (60*.1 + 30*.4) = 20/9
    quotas = drop_quotas(sizes=np.array([60, 30, 10]), recalls=np.array([0.9, 0.6, 0.2]), density=0.5)
    assert quotas.fractions == pytest.approx([2 / 9, 8 / 9, 1.0], abs=1e-12)
    assert quotas.capped.tolist() == [False, False, True]
    counts = kept_counts([60, 30, 10], quotas.fractions, 50, np.random.default_rng(0))
    assert counts.tolist() == [13, 27, 10]  # 13.33 and 26.67: the larger remainder takes the last row


def test_redistribution_repeats_until_nothing_is_over_one():
    # first pass: c = .6/.3375 -> third class 1.067 (capped); second: c = 35/18.75 -> second class
    # 1.027 (capped); third: c = 10 / (50 * .1) = 2 -> first class 0.2
    quotas = drop_quotas(sizes=np.array([50, 25, 25]), recalls=np.array([0.9, 0.45, 0.4]), density=0.6)
    assert quotas.fractions == pytest.approx([0.2, 1.0, 1.0], abs=1e-12)
    assert quotas.capped.tolist() == [False, True, True]


def test_perfect_recalls_and_everything_capped_still_keep_n_times_d():
    every = drop_quotas(sizes=np.array([10, 30]), recalls=np.array([1.0, 1.0]), density=0.4)
    assert every.fractions == pytest.approx([0.4, 0.4]) and "Z = 0" in every.note
    # the hard class caps at 1 (20 rows); the 50 - 20 = 30 rows left go to the perfect ones evenly
    rest = drop_quotas(sizes=np.array([20, 40, 40]), recalls=np.array([0.5, 1.0, 1.0]), density=0.5)
    assert rest.fractions == pytest.approx([1.0, 0.375, 0.375]) and rest.capped.tolist() == [True, False, False]
    assert "spread evenly" in rest.note
    full = drop_quotas(sizes=np.array([5, 7, 9]), recalls=np.array([0.2, 0.9, 1.0]), density=1.0)
    assert full.fractions == pytest.approx([1.0, 1.0, 1.0])


def test_min_quota_keeps_a_share_of_every_unit_and_the_formula_shares_out_the_rest():
    sizes, recalls = np.array([60, 30, 10]), np.array([1.0, 0.6, 0.2])
    # the formula alone gives the recall-1 class nothing: Z = .2, d/Z = 1.5 -> [0, .6, 1.2 -> 1], c = 20/12
    assert drop_quotas(sizes=sizes, recalls=recalls, density=0.3).fractions == pytest.approx([0, 2 / 3, 1])
    # 0.1 of each first; the rest, d' = 0.2 / 0.9, by DRoP: d'/Z = 10/9 -> q = [0, 4/9, 8/9], d = .1 + .9 q
    quotas = floored_quotas(QUOTAS["drop"], sizes=sizes, recalls=recalls, density=0.3, min_quota=0.1)
    assert quotas.fractions == pytest.approx([0.1, 0.5, 0.9], abs=1e-12)
    assert floored_quotas(QUOTAS["drop"], sizes=sizes, recalls=recalls, density=0.3, min_quota=0.3).fractions == pytest.approx([0.3] * 3)
    plain = floored_quotas(QUOTAS["drop"], sizes=sizes, recalls=recalls, density=0.3, min_quota=0.0)
    assert np.array_equal(plain.fractions, drop_quotas(sizes=sizes, recalls=recalls, density=0.3).fractions)


def test_uniform_is_d_everywhere():
    quotas = uniform_quotas(sizes=np.array([3, 50, 7]), recalls=np.array([0.1, 0.9, 0.5]), density=0.3)
    assert quotas.fractions.tolist() == [0.3, 0.3, 0.3] and not quotas.capped.any()


def test_totals_are_exact_and_quotas_never_exceed_one_on_random_cases():
    rng = np.random.default_rng(1)
    for _ in range(300):
        units = int(rng.integers(1, 7))
        sizes = rng.integers(1, 60, size=units)
        recalls = np.where(rng.random(units) < 0.2, 1.0, rng.random(units))
        density = float(rng.choice([rng.random(), 1.0, 0.5, 0.3]) or 0.5)
        total = kept_total(int(sizes.sum()), density)
        for name, rule in QUOTAS.items():
            quotas = rule.quotas(sizes=sizes, recalls=recalls, density=density)
            assert (quotas.fractions <= 1 + 1e-12).all() and (quotas.fractions >= 0).all(), name
            assert float((sizes * quotas.fractions).sum()) == pytest.approx(density * sizes.sum(), abs=1e-6)
            if name == "drop":
                assert quotas.fractions == pytest.approx(reference_quotas(sizes, recalls, density), abs=1e-6)
            counts = kept_counts(sizes, quotas.fractions, total, rng)
            assert counts.sum() == total and (counts <= sizes).all() and (counts >= 0).all()
            assert (np.abs(counts - sizes * quotas.fractions) < 1 + 1e-9).all()  # rounding moves < 1 row


def test_kept_total_rounds_half_up():
    assert [kept_total(n, d) for n, d in [(48, 0.5), (5, 0.5), (10, 0.3), (7, 0.35), (3, 0.1)]] == [24, 3, 3, 2, 0]


def test_rounding_ties_are_broken_by_the_seed():
    outcomes = {tuple(kept_counts([3, 3], np.array([0.5, 0.5]), 3, np.random.default_rng(seed))) for seed in range(20)}
    assert outcomes == {(2, 1), (1, 2)}
    again = [tuple(kept_counts([3, 3], np.array([0.5, 0.5]), 3, np.random.default_rng(7))) for _ in range(3)]
    assert len(set(again)) == 1


def _plan(seed: int, **overrides):
    units = np.repeat([0, 1, 2], [30, 12, 6])
    settings = dict(unit_of_row=units, unit_names=["a", "b", "c"], recalls=[0.9, 0.6, 0.5], val_rows=[5, 5, 5],
                    density=0.5, seed=seed)  # fmt: skip
    return plan_data_pruning(**{**settings, **overrides})


def test_plans_are_deterministic_by_seed_and_keep_exactly_their_counts():
    first, again, other = _plan(3), _plan(3), _plan(4)
    assert np.array_equal(first.kept_rows, again.kept_rows) and not np.array_equal(first.kept_rows, other.kept_rows)
    assert first.kept == len(first.kept_rows) == 24 and len(set(first.kept_rows.tolist())) == 24
    units = np.repeat([0, 1, 2], [30, 12, 6])
    assert np.bincount(units[first.kept_rows], minlength=3).tolist() == [u.kept for u in first.units]
    assert [u.quota for u in _plan(0, quota="uniform").units] == [0.5, 0.5, 0.5]


def test_el2n_keeps_the_highest_scores():
    assert el2n(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(math.sqrt(0.5))
    scores = np.arange(48, dtype=float)
    plan = _plan(0, within="el2n", scores=scores)
    units = np.repeat([0, 1, 2], [30, 12, 6])
    for k, unit in enumerate(plan.units):
        rows = np.flatnonzero(units == k)
        assert sorted(plan.kept_rows[units[plan.kept_rows] == k].tolist()) == rows[len(rows) - unit.kept:].tolist()


# ---------------------------------------------------------------------------------- the command


def _rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def _one_line_error(result, *fragments):
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_data_prune_end_to_end_writes_a_manifest_every_command_reads(tmp_path, cli, biased_data, tiny_model_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes((biased_data / "labels.csv").read_bytes())
    result = cli("data-prune", tiny_model_path, biased_data, "--labels", labels, "--keep", "0.5", "--by", "group",
                 "--groups", "group", "--json", tmp_path / "plan.json", "--workers", "0", "-q", cwd=tmp_path)  # fmt: skip
    assert result.code == 0, result
    assert "quota d_k" in result.out and "majority" in result.out and "minority" in result.out
    manifest = tmp_path / "labels-pruned.csv"  # the default: the manifest's name + -pruned
    source, pruned = _rows(labels), _rows(manifest)
    assert pruned[0] == source[0]
    split = source[0].index("split")
    assert [r for r in pruned[1:] if r[split] != "train"] == [r for r in source[1:] if r[split] != "train"]
    kept_train = [r for r in pruned[1:] if r[split] == "train"]
    assert len(kept_train) == 24 and all(r in source for r in kept_train)

    plan = json.loads((tmp_path / "labels-pruned.plan.json").read_text())
    assert plan == {**json.loads((tmp_path / "plan.json").read_text()), "manifest": "labels-pruned.csv"}
    assert plan["model_sha256"] == sha256_file(tiny_model_path) and plan["manifest_sha256"] == sha256_file(manifest)
    assert (tmp_path / plan["model"]).resolve() == tiny_model_path.resolve()
    assert (plan["keep"], plan["by"], plan["quota"], plan["within"], plan["kept"]) == (0.5, "group", "drop", "random", 24)
    units = plan["units"]
    expected = reference_quotas([u["rows"] for u in units], [u["recall"] for u in units], 0.5)
    assert [u["quota"] for u in units] == pytest.approx(expected, abs=1e-6)
    assert sum(u["kept"] for u in units) == 24
    counts = {u["group"]: u["kept"] for u in units}
    assert {g: sum(r[2] == g for r in kept_train) for g in counts} == counts

    scored = cli("score", tiny_model_path, biased_data, "--labels", manifest, "-g", "group", "--max-batches", "1",
                 "--workers", "0", "-q", "-o", tmp_path / "importance.safetensors", cwd=tmp_path)  # fmt: skip
    assert scored.code == 0, scored
    trained = cli("finetune", tiny_model_path, biased_data, "--dense", "--labels", manifest, "--epochs", "1",
                  "--batch-size", "8", "--workers", "0", "-q", "-o", tmp_path / "retrained.pt", cwd=tmp_path)  # fmt: skip
    assert trained.code == 0, trained
    before = torch.load(tiny_model_path, weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "retrained.pt", weights_only=True)["state_dict"]
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    reported = cli("report", tmp_path / "retrained.pt", biased_data, "--labels", manifest, "-g", "group",
                   "--workers", "0", "-q", cwd=tmp_path)  # fmt: skip
    assert reported.code == 0 and "(test)" in reported.out, reported


def test_same_seed_same_manifest_and_uniform_keeps_d_per_class(tmp_path, cli, biased_data, tiny_model_path):
    outputs = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        result = cli("data-prune", tiny_model_path, biased_data, "--keep", "0.3", "--quota", "uniform", "--seed", seed,
                     "--workers", "0", "-q", "-o", tmp_path / f"{name}.csv", cwd=tmp_path)  # fmt: skip
        assert result.code == 0, result
        outputs.append((tmp_path / f"{name}.csv").read_bytes())
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]
    plan = json.loads((tmp_path / "a.plan.json").read_text())
    assert [u["quota"] for u in plan["units"]] == [0.3, 0.3] and plan["kept"] == kept_total(48, 0.3)


def test_a_plan_that_cannot_be_written_leaves_the_previous_manifest(tmp_path, cli, biased_data, tiny_model_path,
                                                                    monkeypatch):
    """The manifest and its plan appear together or not at all (a full disk while writing the plan)."""
    (tmp_path / "a.csv").write_text("previous manifest")
    write_text = Path.write_text

    def disk_full_for_the_plan(self, text, *args, **kwargs):
        if self.name.startswith(".a.plan.json."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full_for_the_plan)
    result = cli("data-prune", tiny_model_path, biased_data, "--keep", "0.3", "--workers", "0", "-q",
                 "-o", tmp_path / "a.csv", cwd=tmp_path)  # fmt: skip
    assert result.code == 1 and "a.plan.json" in result.err, result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]  # no plan, no temporaries
    assert (tmp_path / "a.csv").read_text() == "previous manifest"


def test_bad_input_exits_2_with_one_line(tmp_path, cli, biased_data, tiny_model_path):
    def prune(*args, model=tiny_model_path):
        return cli("data-prune", model, biased_data, *args, "--workers", "0", "-q", "-o", tmp_path / "out.csv", cwd=tmp_path)

    _one_line_error(prune("--keep", "0"), "--keep 0.0", "(0, 1]")
    _one_line_error(prune("--keep", "1.5"), "--keep 1.5")
    _one_line_error(prune("--keep", "0.5", "--by", "group"), "--by group", "--groups")
    _one_line_error(prune("--keep", "0.5", "--by", "cells"), "--by cells")
    _one_line_error(prune("--keep", "0.5", "--min-quota", "0.6"), "--min-quota 0.6", "--keep 0.5")
    _one_line_error(prune("--keep", "0.5", "--quota", "fair"), "--quota fair", "drop, uniform")
    _one_line_error(prune("--keep", "0.5", "--val-split", "holdout"), "--val-split holdout", "test, train, val")
    three = tmp_path / "three.pt"
    torch.save({"arch": TINY_ARCH, "num_classes": 3, "state_dict": TinyCNN(num_classes=3).state_dict()}, three)
    _one_line_error(prune("--keep", "0.5", model=three), "three.pt", "predicts 3 classes")
    # every validation row of class "yes" moved to test: its recall cannot be measured
    rows = _rows(biased_data / "labels.csv")
    moved = tmp_path / "no-val-yes.csv"
    with open(moved, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([rows[0]] + [[*r[:3], "test" if r[1] == "yes" and r[3] == "val" else r[3]] for r in rows[1:]])
    _one_line_error(prune("--keep", "0.5", "--labels", str(moved)), "class 'yes'", "--val-split val")
    _one_line_error(
        cli("data-prune", tiny_model_path, biased_data, "--labels", moved, "--keep", "0.5", "-o", moved), "would overwrite"
    )
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.plan.json").exists()

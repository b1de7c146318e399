"""benchmarks/recipes.py's own logic (no training): issue 23's rule and check, and what makes a
finished row count as done when the grid resumes in a later session."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fairgrape_cli.flows.experiment import Recipe

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "recipes.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("recipes_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def means(accuracy, worst, gap):
    return {"accuracy": accuracy, "worst_group_accuracy": worst, "drop_gap": gap, "drop_std": gap / 2}


def run_row(recipe, accuracy, gap, *, dataset="fashion-dark", seed=0, part="recipes", **extra):
    """A finished run's row as the summary reads it, its worst group 5 points under its accuracy."""
    return {"kind": "run", "part": part, "dataset": dataset, "seed": seed, "rate": 0.9, "keep": 0.1,
            "recipe": recipe, "images_seen": 1, "seconds": 60, **means(accuracy, accuracy - 0.05, gap), **extra}


def test_the_rule_takes_the_lowest_gap_among_recipes_that_keep_accuracy_and_the_worst_group(bench):
    table = {
        bench.REFERENCE: means(0.80, 0.60, 0.10),
        "lowest gap, 2 points less accurate": means(0.78, 0.70, 0.01),
        "low gap, worst group lower": means(0.81, 0.59, 0.02),
        "within a point, higher worst group": means(0.795, 0.65, 0.04),
        "more accurate, gap a little lower": means(0.82, 0.61, 0.08),
    }
    assert set(bench.eligible_for_rule(table)) == {
        bench.REFERENCE, "within a point, higher worst group", "more accurate, gap a little lower"
    }
    assert bench.rule_choice(table) == "within a point, higher worst group"
    # nothing better: the reference itself
    assert bench.rule_choice({bench.REFERENCE: means(0.8, 0.6, 0.1), "worse": means(0.7, 0.5, 0.0)}) == bench.REFERENCE


def test_the_issue_check_wants_half_the_gap_no_accuracy_point_lost_and_no_lower_worst_group(bench):
    reference = means(0.80, 0.60, 0.10)
    assert all(bench.issue_check(means(0.791, 0.60, 0.05), reference).values())
    assert bench.issue_check(means(0.80, 0.60, 0.051), reference) == {"gap": False, "accuracy": True, "worst": True}
    assert bench.issue_check(means(0.789, 0.60, 0.01), reference)["accuracy"] is False
    assert bench.issue_check(means(0.85, 0.599, 0.01), reference)["worst"] is False


def test_pooling_weighs_every_dataset_the_same_over_the_recipes_run_on_all(bench):
    per_dataset = {
        "a": {bench.REFERENCE: means(0.9, 0.8, 0.1), "x": means(0.7, 0.6, 0.3)},
        "b": {bench.REFERENCE: means(0.5, 0.4, 0.3)},
    }
    pooled = bench.pooled_means(per_dataset, ["a", "b"])
    assert set(pooled) == {bench.REFERENCE}
    assert pooled[bench.REFERENCE]["accuracy"] == pytest.approx(0.7)


def test_a_dataset_where_the_reference_is_near_chance_is_left_out_of_the_pooled_rule(bench, capsys):
    # 10 classes: chance is 10%, "near" below 15%
    assert bench._near_chance("fashion-dark", {bench.REFERENCE: means(0.14, 0.1, 0.5)})
    assert not bench._near_chance("fashion-dark", {bench.REFERENCE: means(0.16, 0.1, 0.5)})
    rows = [
        {"rate": 0.99, "dataset": dataset, "seed": 0, "recipe": recipe, "part": "recipes", "kind": "run",
         **means(accuracy, accuracy - 0.05, gap)}
        for dataset, recipe, accuracy, gap in [
            ("fashion-dark", bench.REFERENCE, 0.80, 0.10), ("fashion-dark", "magnitude+upsample", 0.81, 0.04),
            ("minority10", bench.REFERENCE, 0.26, 0.80), ("minority10", "magnitude+upsample", 0.25, 0.70),
            ("demo-cnn", bench.REFERENCE, 0.90, 0.10), ("demo-cnn", "magnitude+upsample", 0.91, 0.02),
        ]
    ]  # fmt: skip
    bench.pick(rows, 0.99)
    printed = capsys.readouterr().out
    assert "minority10 is left out of the pooled rule at this rate" in printed
    assert "pooled over fashion-dark, demo-cnn: **magnitude+upsample**" in printed


def test_the_rule_over_both_rates_pools_every_cell_and_leaves_out_one_near_chance(bench, capsys):
    rows = [
        {"rate": rate, "dataset": dataset, "seed": 0, "recipe": recipe, "part": "recipes", "kind": "run",
         **means(accuracy, accuracy - 0.05, gap)}
        for rate, dataset, recipe, accuracy, gap in [
            # at 0.99 "x" has the lower gap, at 0.9 "y"; pooled, x's 0.04 + 0.05 beats y's 0.06 + 0.04
            (0.99, "fashion-dark", bench.REFERENCE, 0.80, 0.10), (0.99, "fashion-dark", "x", 0.80, 0.04),
            (0.99, "fashion-dark", "y", 0.80, 0.06),
            (0.9, "fashion-dark", bench.REFERENCE, 0.85, 0.10), (0.9, "fashion-dark", "x", 0.85, 0.05),
            (0.9, "fashion-dark", "y", 0.85, 0.04),
            (0.99, "minority10", bench.REFERENCE, 0.26, 0.80), (0.99, "minority10", "y", 0.26, 0.10),
        ]
    ]  # fmt: skip
    bench.pick_over_rates(rows)
    printed = capsys.readouterr().out
    assert "pooled over fashion-dark 0.99, fashion-dark 0.9;" in printed  # minority10 0.99: near chance
    assert "- **x** (drop_gap 4.5 vs 10.0" in printed and "also eligible: y, magnitude+erm" in printed


def test_a_finished_row_is_found_again_and_a_changed_setting_runs_anew(bench, tmp_path):
    class Args:
        seeds, datasets, rates, parts, output = [0], ["mnist-bold"], [0.9], ["recipes"], tmp_path
        recipes, budget = list(bench.RECIPES), False

    cells = bench.grid(Args)
    assert [c["recipe"] for c in cells] == list(bench.RECIPES)
    Args.budget = True  # the grid this machine affords: the recipes RECIPES_AT names for the rate
    assert [c["recipe"] for c in bench.grid(Args)] == list(bench.RECIPES_AT[0.9])
    cell = cells[0]
    row = {"kind": "run", **{k: cell[k] for k in ("dataset", "seed", "rate", "keep", "recipe", "key")}}
    results = tmp_path / "rows.jsonl"
    bench.append_row(results, row)
    with open(results, "a", encoding="utf-8") as handle:
        handle.write('{"kind": "run", "dataset')  # a grid killed mid-write
    rows = bench.read_rows(results)
    assert [bench.row_identity(r) for r in rows] == [bench.cell_identity(cell)]
    # another option (or another seed of the data) is another key; the same settings the same key
    spec, recipe = cell["spec"], cell["recipe_object"]
    assert bench.settings_key(spec, recipe) == cell["key"]
    assert bench.settings_key(spec, replace(recipe, distill_weight=0.3)) != cell["key"]
    assert bench.settings_key(replace(spec, data=replace(spec.data, seed=5)), recipe) != cell["key"]
    # the device is not a setting the numbers depend on
    assert bench.settings_key(replace(spec, device="cuda"), recipe) == cell["key"]


def test_the_settings_key_ignores_fields_at_their_default(bench):
    assert bench._non_default(Recipe(method="magnitude")) == {"type": "Recipe", "method": "magnitude"}


def test_upsampling_draws_every_row_and_repeats_the_small_group_up_to_the_large_one(bench, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = ["path,label,group,split"] + [f"{i}.png,a,big,train" for i in range(9)] + ["9.png,b,small,train", "x.png,a,big,val"]
    (data / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert bench.rows_per_epoch(data, Recipe(objective="erm")) == 10
    assert bench.rows_per_epoch(data, Recipe(objective="balanced")) == 10
    assert bench.rows_per_epoch(data, Recipe(objective="balanced", balance_by="upsample")) == 18


def test_runs_on_a_rebuilt_dense_model_are_a_generation_compared_only_among_themselves(bench, capsys):
    dense = {"kind": "dense", "dataset": "mnist-bold", "seed": 0, "sha256": "old", "key": "k", "accuracy": 0.97,
             "groups": {"bold": 0.96, "other": 0.97}, "rows": {"train": {"bold": 4, "other": 96}},
             "best_epoch": 3, "epochs": 3}  # fmt: skip

    def run(recipe, accuracy, gap, **extra):
        return run_row(recipe, accuracy, gap, dataset="mnist-bold", **extra)

    rows = [
        dense,
        run(bench.REFERENCE, 0.90, 0.10),  # before runs recorded their dense model: the first one's
        run("magnitude+upsample", 0.91, 0.04),
        {**dense, "sha256": "new", "accuracy": 0.98},  # rebuilt on another machine
        run(bench.REFERENCE, 0.70, 0.30, dense_sha256="new"),  # rerun there for a variant
        run("recipe kept near-best", 0.72, 0.10, dense_sha256="new", part="variants"),
    ]
    models = bench.dense_models(rows)
    assert models == {("mnist-bold", 0): ["old", "new"]}
    assert [bench.generation(row, models) for row in rows] == [0, 0, 0, 1, 1, 1]
    # the same run on two dense models: both kept, neither replaces the other
    assert len(bench._latest(rows, models)) == 4
    bench.summarise(rows)
    printed = capsys.readouterr().out
    first, rebuilt = printed.split("# every generation together")[0].split("# generation 1")
    assert "| magnitude+erm | 1 | 90.0 ± 0.0 |" in first and "70.0" not in first and "near-best" not in first
    assert "| magnitude+erm | 1 | 70.0 ± 0.0 |" in rebuilt and "magnitude+upsample |" not in rebuilt
    assert "| recipe kept near-best | pass (0.33x gap" in rebuilt
    assert "the rule at rate" not in rebuilt  # the reference alone there: nothing to choose between
    assert "| mnist-bold | 0 | 1 |" in first  # the dense table names each model's generation


def test_with_same_dense_a_row_counts_only_on_the_dense_model_in_the_output(bench, tmp_path):
    class Args:
        seeds, datasets, rates, parts, output = [0], ["mnist-bold"], [0.9], ["recipes"], tmp_path
        recipes, budget = [bench.REFERENCE], False

    (cell,) = bench.grid(Args)
    model = tmp_path / "mnist-bold/seed-0/model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"rebuilt weights")
    finished = {"kind": "run", **{k: cell[k] for k in bench.RUN_IDENTITY}}  # made before runs recorded it
    rows = [{"kind": "dense", "dataset": "mnist-bold", "seed": 0, "key": "k", "sha256": "first model"}, finished]
    assert bench.pending_cells([cell], rows, None) == []  # the grid resumes as before
    assert bench.pending_cells([cell], rows, tmp_path) == [cell]  # made on another model than the one here
    here = bench.sha256_of_dense(tmp_path, "mnist-bold", 0)
    assert bench.pending_cells([cell], [*rows, {**finished, "dense_sha256": here}], tmp_path) == []


def test_every_generation_together_takes_each_dense_model_as_a_draw_over_the_recipes_all_ran(bench, capsys):
    def run(recipe, accuracy, gap, sha):
        return run_row(recipe, accuracy, gap, dense_sha256=sha)

    rows = [
        run(bench.REFERENCE, 0.80, 0.10, "first"), run("magnitude+upsample", 0.82, 0.02, "first"),
        run("magnitude+balanced", 0.70, 0.01, "first"),  # not run on the rebuilt model: left out together
        run(bench.REFERENCE, 0.84, 0.06, "rebuilt"), run("magnitude+upsample", 0.84, 0.04, "rebuilt"),
    ]  # fmt: skip
    bench.summarise(rows)
    together = capsys.readouterr().out.split("# every generation together")[1]
    assert "generation.seed: fashion-dark 2)" in together
    # means over both draws: the reference 82% and an 8-point gap, upsampling 83% and 3 points
    assert "fashion-dark: **magnitude+upsample** (drop_gap 3.0 vs 8.0, accuracy 83.0 vs 82.0" in together
    assert "magnitude+balanced" not in together


def test_a_variant_table_shows_the_references_on_the_variants_seeds_only(bench, capsys):
    def run(recipe, seed, accuracy, part="recipes"):
        return run_row(recipe, accuracy, 0.02, seed=seed, part=part)

    rows = [run(bench.REFERENCE, 0, 0.80), run("magnitude+upsample", 0, 0.82),
            run(bench.REFERENCE, 3, 0.60), run("magnitude+upsample", 3, 0.62),  # more draws, no variant run
            run("upsample kept last", 0, 0.81, part="variants")]  # fmt: skip
    bench.summarise(rows)
    printed = capsys.readouterr().out
    main, variants = printed.split("## variants, fashion-dark")
    assert "| magnitude+erm | 2 | 70.0 ± 14.1 |" in main  # the main table has both draws
    assert "| magnitude+erm | 1 | 80.0 ± 0.0 |" in variants and "| magnitude+upsample | 1 | 82.0 ± 0.0 |" in variants


def test_the_confirmation_runs_its_three_recipes_on_the_photographs_and_the_demos_cnn(bench, tmp_path):
    class Args:
        seeds, datasets, rates, parts, output = [6], ["mnist-bold", "demo-cnn", "minority10"], [0.99, 0.9], ["confirm"], tmp_path
        recipes, budget = list(bench.RECIPES), False

    cells = bench.grid(Args)
    assert [(c["dataset"], c["rate"], c["recipe"], c["part"]) for c in cells] == [
        (dataset, rate, label, "confirm") for rate, dataset in [(0.99, "mnist-bold"), (0.9, "mnist-bold"), (0.9, "demo-cnn")]
        for label in bench.CONFIRMATION
    ]  # the demo's CNN at its one rate; minority10 never
    # the shipped recipe is the near-best variant's settings, so a row of either part is the same run
    variant = bench._cell(Args, "mnist-bold", 6, 0.9, 0.1, "recipe kept near-best",
                          bench.VARIANTS["recipe kept near-best"][1], part="variants")  # fmt: skip
    (shipped,) = [c for c in cells if c["rate"] == 0.9 and c["dataset"] == "mnist-bold" and c["recipe"] == variant["recipe"]]
    assert shipped["key"] == variant["key"]
    # so with the grid's part too, each run is queued once (the grid's cell kept)
    Args.parts = ["recipes", "confirm"]
    both = bench.grid(Args)
    assert len(both) == len({bench.cell_identity(c) for c in both})
    assert [c["part"] for c in both if c["recipe"] == bench.REFERENCE and c["dataset"] == "mnist-bold"] == ["recipes"] * 2


def test_the_confirmation_decides_on_its_own_draws_and_shows_every_draw_that_ran_all_three(bench, capsys, monkeypatch):
    reference, recipe, candidate = bench.CONFIRMATION
    monkeypatch.setattr(bench, "CONFIRMATION_DATASETS", ("fashion-dark",))
    monkeypatch.setattr(bench, "CONFIRMATION_SEEDS", (6,))

    def run(label, seed, accuracy, gap, part, rate):
        return {**run_row(label, accuracy, gap, seed=seed, part=part), "rate": rate}

    rows = []
    for rate in (0.9, 0.99):
        rows += [run(reference, 0, 0.80, 0.10, "recipes", rate), run(recipe, 0, 0.80, 0.02, "variants", rate),
                 run(candidate, 0, 0.80, 0.01, "recipes", rate),  # where the candidate was found
                 run(reference, 6, 0.80, 0.10, "confirm", rate), run(recipe, 6, 0.80, 0.04, "confirm", rate),
                 run(candidate, 6, 0.79, 0.06, "confirm", rate)]  # fmt: skip
    rows.append(run("magnitude+balanced", 6, 0.5, 0.0, "recipes", 0.9))  # not one of the three
    # a new draw of the demo's CNN: outside the named decision, in the other two scopes
    rows += [{**run(label, 6, 0.9, gap, "confirm", 0.9), "dataset": "demo-cnn"}
             for label, gap in ((reference, 0.2), (recipe, 0.05), (candidate, 0.15))]  # fmt: skip
    bench.summarise(rows)
    printed = capsys.readouterr().out
    named, new, every = printed.split("# the confirmation")[1:]
    assert "demo-cnn" not in named and "demo-cnn, rate 0.9" in new and "demo-cnn, rate 0.9" in every
    assert "decision named in advance" not in new
    assert "seeds 0.6;" in named and "seeds 0.0" not in named
    # on the named draw the recipe halves the gap and the candidate does not
    assert f"**{recipe}** (drop_gap 4.0 vs 10.0" in named
    assert f"| {candidate} | fail: gap, worst (0.60x gap" in named
    assert f"{candidate} does not replace {recipe}" in named and "fails recipe kept near-best in 0 of 2 cells, " \
        f"{candidate} in 2" in named  # fmt: skip
    # every draw that ran all three: both draws, no decision
    assert "seeds 0.0 0.6;" in every and "decision named in advance" not in every and "magnitude+balanced" not in every
    assert f"**{recipe}** (drop_gap 3.0 vs 10.0" in every


def _confirmation_rows(bench, seeds, candidate_gap):
    """The named draws of one photograph set at both rates: the candidate at ``candidate_gap``."""
    reference, recipe, candidate = bench.CONFIRMATION
    return [{**run_row(label, 0.80, gap, seed=seed, part="confirm"), "rate": rate}
            for seed in seeds for rate in (0.9, 0.99)
            for label, gap in ((reference, 0.10), (recipe, 0.06), (candidate, candidate_gap))]  # fmt: skip


def test_the_confirmation_names_its_verdict_only_once_every_named_draw_has_all_three(bench, capsys, monkeypatch):
    _, recipe, candidate = bench.CONFIRMATION
    monkeypatch.setattr(bench, "CONFIRMATION_DATASETS", ("fashion-dark",))
    monkeypatch.setattr(bench, "CONFIRMATION_SEEDS", (6, 7))
    bench.summarise(_confirmation_rows(bench, [6], 0.03))  # seed 7 not run yet
    assert "waits for every named draw: 2 of 4 dataset x rate x seed cells" in capsys.readouterr().out
    # both seeds, and a third seed outside the named ones that would have turned the verdict
    rows = _confirmation_rows(bench, [6, 7], 0.03) + _confirmation_rows(bench, [9], 0.50)
    bench.summarise(rows)
    named = capsys.readouterr().out.split("# the confirmation")[1]
    assert "seeds 0.6 0.7;" in named
    assert f"{candidate} replaces {recipe} (the rule over both rates picks {candidate}; the issue's check fails " \
        f"{recipe} in 2 of 2 cells, {candidate} in 0)" in named  # fmt: skip


def test_a_recipe_missing_from_a_cell_fails_the_confirmations_check_there(bench):
    reference, recipe, candidate = bench.CONFIRMATION
    rows = [{**run_row(label, 0.80, gap, part="confirm"), "rate": rate}
            for rate, labels in ((0.9, (reference, recipe, candidate)), (0.99, (reference, recipe)))
            for label, gap in zip(labels, (0.10, 0.06, 0.03))]  # fmt: skip
    assert "fails recipe kept near-best in 2 of 2 cells, magnitude+upsample+distill in 1" in \
        bench.confirmation_decision(rows, candidate)  # fmt: skip

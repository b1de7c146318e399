"""fairgrape compare: side-by-side reports, best values marked, history charts (terminal, HTML)."""

from __future__ import annotations

import io
import json
import statistics

import pytest
from rich.console import Console

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.reports import load_report
from fairgrape_cli.method.comparison import compare_reports
from fairgrape_cli.render.comparison import BEST_MARK, render_comparison
from fairgrape_cli.render.html import history_html
from fairgrape_cli.render.report import render_history


def make_report(accuracies, *, baselines=None, counts=None, pruning=None, **extra) -> dict:
    """A report in the shape `fairgrape report --json` writes, computed by hand from group numbers."""
    counts = counts or {group: 10 for group in accuracies}
    rows = []
    for group, accuracy in accuracies.items():
        baseline = baselines[group] if baselines else None
        drop = baseline - accuracy if baselines else None
        rows.append({"group": group, "n": counts[group], "accuracy": accuracy, "baseline_accuracy": baseline, "drop": drop})
    n = sum(counts.values())
    drops = [row["drop"] for row in rows]
    report = {
        "model": "pruned.pt", "data": "data", "split": "test", "target": "label", "attribute": "race",
        "density": 0.1,
        "overall": {
            "n": n,
            "accuracy": sum(counts[g] * a for g, a in accuracies.items()) / n,
            "baseline_accuracy": sum(counts[g] * b for g, b in baselines.items()) / n if baselines else None,
        },
        "groups": rows,
        "disparity": {
            "accuracy_gap": max(accuracies.values()) - min(accuracies.values()),
            "worst_group_accuracy": min(accuracies.values()),
            "drop_std": statistics.pstdev(drops) if baselines else None,
            "drop_gap": max(drops) - min(drops) if baselines else None,
        },
        "baseline": "model.pt" if baselines else None,
        "pruning": pruning,
    }  # fmt: skip
    report.update(extra)
    return report


BASE = {"light": 0.9, "dark": 0.8}


def with_history(report: dict, groups=("light", "dark")) -> dict:
    history = [
        {"iteration": i, "stage": stage, "density": density, "accuracy": 0.9 - 0.02 * i,
         "groups": {group: 0.9 - (0.01 + 0.02 * k) * i for k, group in enumerate(groups)}}
        for i, (stage, density) in enumerate([("dense", 1.0), ("iteration", 0.1), ("iteration", 0.01), ("final", 0.01)])
    ]  # fmt: skip
    return {**report, "history": history, "run": {"config": "run.yaml", "method": "fairgrape", "rate": 0.99}}


def write(path, report) -> str:
    path.write_text(json.dumps(report), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------ best values


def test_best_values_per_column_follow_direction_mark_ties_and_skip_nulls():
    no_baseline = make_report({"light": 0.97, "dark": 0.75})
    fair = make_report({"light": 0.85, "dark": 0.78}, baselines=BASE)
    greedy = make_report({"light": 0.85, "dark": 0.7}, baselines=BASE)
    comparison = compare_reports([no_baseline, fair, greedy], labels=["none", "fair", "greedy"])
    best = comparison["best"]
    assert best["accuracy"] == ["none"]  # higher is better
    assert best["worst_group_accuracy"] == ["fair"]
    assert best["accuracy_gap"] == ["fair"]  # lower is better
    assert best["drop_gap"] == ["fair"] and best["drop_std"] == ["fair"]  # null never best
    assert best["groups"]["light"]["accuracy"] == ["none"]
    assert best["groups"]["light"]["drop"] == ["fair", "greedy"]  # a tie marks both
    assert best["groups"]["dark"]["drop"] == ["fair"]
    assert "density" not in best  # context, not a score


def test_nan_and_all_null_columns_are_never_best():
    empty_group = make_report({"light": 0.9, "dark": float("nan")})
    other = make_report({"light": 0.8, "dark": 0.1})
    comparison = compare_reports([empty_group, other], labels=["a", "b"])
    assert comparison["entries"][0]["groups"][1]["accuracy"] is None
    assert comparison["best"]["groups"]["dark"]["accuracy"] == ["b"]
    assert comparison["best"]["drop_gap"] == []  # no report has a baseline


def test_entries_carry_counts_and_align_groups_to_the_first_report():
    first = make_report({"light": 0.9, "dark": 0.7}, counts={"light": 30, "dark": 12})
    reordered = make_report({"dark": 0.75, "light": 0.8}, counts={"light": 30, "dark": 12})
    comparison = compare_reports([first, reordered], labels=["a", "b"])
    assert comparison["groups"] == ["light", "dark"]
    second = comparison["entries"][1]["groups"]
    assert [(row["group"], row["n"], row["accuracy"]) for row in second] == [("light", 30, 0.8), ("dark", 12, 0.75)]


# ----------------------------------------------------------------------------------- labels


def test_labels_come_from_pruning_then_run_then_file_and_are_made_unique():
    reports = [
        make_report(BASE, pruning={"method": "fairgrape", "rate": "0.9", "scope": "layer", "density": "0.1"}),
        make_report(BASE, pruning={"method": "fairgrape", "rate": "0.90", "scope": "layer", "density": "0.1"}),
        make_report(BASE, pruning={"method": "taylor", "rate": "0.9", "scope": "global", "density": "0.1"}),
        make_report(BASE, pruning={"method": "fairgrape", "rate": 0.9, "density": 0.1, "granularity": "channel"}),
        make_report(BASE, pruning={"method": "fairgrape", "rate": 0.9, "density": 0.1, "granularity": "weight"}),
        with_history(make_report(BASE)),
        make_report(BASE),
    ]
    sources = ["a/report.json", "b/report.json", "c.json", "ch.json", "w.json", "run/report.json", "dense.json"]
    labels = [entry["label"] for entry in compare_reports(reports, sources=sources)["entries"]]
    assert labels == ["fairgrape 0.9", "fairgrape 0.9 (2)", "taylor 0.9 global", "fairgrape 0.9 channel",
                      "fairgrape 0.9 (3)", "fairgrape 0.99", "dense"]  # fmt: skip


def test_runs_sharing_a_method_and_rate_are_told_apart_by_their_config_then_their_folder():
    def run_of(config):
        report = with_history(make_report(BASE))
        return {**report, "run": {**report["run"], "config": config}}

    recipe_and_baseline = [run_of("recommended.yaml"), run_of("erm.yaml"), make_report(BASE)]
    sources = ["runs/recommended/report.json", "runs/erm/report.json", "dense.json"]
    labels = [entry["label"] for entry in compare_reports(recipe_and_baseline, sources=sources)["entries"]]
    assert labels == ["fairgrape 0.99 (recommended)", "fairgrape 0.99 (erm)", "dense"]
    # one config run into two folders (--set output=...): the folders tell them apart
    same_config = [run_of("run.yaml"), run_of("run.yaml")]
    labels = [e["label"] for e in compare_reports(same_config, sources=["a/report.json", "b/report.json"])["entries"]]
    assert labels == ["fairgrape 0.99 (a)", "fairgrape 0.99 (b)"]


def test_given_labels_are_used_and_must_match_the_report_count():
    reports = [make_report(BASE), make_report(BASE)]
    assert [e["label"] for e in compare_reports(reports, labels=["x", "x"])["entries"]] == ["x", "x (2)"]
    with pytest.raises(InputError, match="2 report"):
        compare_reports(reports, labels=["only one"])


# ------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": "val"}, "split"),
        ({"target": "gender"}, "target"),
        ({"attribute": "gender"}, "attribute"),
        ({"data": "/elsewhere/utkface"}, "data"),
    ],
)
def test_refuses_reports_measured_on_something_else(change, message):
    reports = [make_report(BASE), {**make_report(BASE), **change}]
    with pytest.raises(InputError, match=f"second.json does not compare with first.json: {message}"):
        compare_reports(reports, sources=["first.json", "second.json"])


def test_refuses_other_groups_or_other_rows():
    base = make_report(BASE)
    with pytest.raises(InputError, match=r"other.json .*missing group\(s\) dark"):
        compare_reports([base, make_report({"light": 0.9, "asian": 0.8})], sources=["a.json", "other.json"])
    with pytest.raises(InputError, match="fewer.json .*dark has 4 images vs 10"):
        compare_reports([base, make_report(BASE, counts={"light": 10, "dark": 4})], sources=["a.json", "fewer.json"])


def test_same_folder_written_from_another_directory_still_compares():
    reports = [make_report(BASE, data="data"), make_report(BASE, data="/home/me/project/data/")]
    assert len(compare_reports(reports)["entries"]) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"model": "m"}), "lacks data"),
        (json.dumps({**make_report(BASE), "groups": []}), "groups"),
        (json.dumps({**make_report(BASE), "overall": {"n": 3}}), "'overall' lacks accuracy"),
    ],
)
def test_files_that_are_not_reports_are_refused_by_name(tmp_path, content, message):
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="broken.json is not a fairgrape report") as error:
        load_report(path)
    assert message in str(error.value)


# -------------------------------------------------------------------------------- rendering


def _text(renderable, width=80) -> str:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_comparison_table_marks_best_values_without_colour_and_shows_odd_names_literally():
    reports = [
        make_report({"light": 0.9, "[/]": 0.5}, baselines={"light": 0.9, "[/]": 0.8}),
        make_report({"light": 0.8, "[/]": 0.7}, baselines={"light": 0.9, "[/]": 0.8}),
    ]
    text = _text(render_comparison(compare_reports(reports, labels=["[red]a", "b"])))
    assert "[red]a" in text and "[/] accuracy" in text  # not parsed as markup
    worst_row = next(line for line in text.splitlines() if "worst_group_accuracy" in line)
    assert f"70.00% {BEST_MARK}" in worst_row and f"50.00% {BEST_MARK}" not in worst_row
    density_row = next(line for line in text.splitlines() if "density" in line)
    assert BEST_MARK not in density_row


def test_terminal_history_chart_shows_each_group_within_80_columns():
    report = with_history(make_report(BASE, baselines=BASE))
    text = _text(render_history(report, label="fairgrape 0.99"))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for name in ("overall", "light", "dark"):
        row = next(line for line in lines if line.startswith(name))
        sparkline = next(word for word in row.split() if set(word) <= set("▁▂▃▄▅▆▇█"))
        assert len(sparkline) == len(report["history"])  # one character per iteration
    assert "1 > 0.1 > 0.01 > 0.01" in text
    dark = next(line for line in lines if line.startswith("dark"))
    assert "90.00%" in dark and "81.00%" in dark and "+9.00 pp" in dark  # dense, final, drop


def test_html_is_self_contained_with_a_chart_and_escaped_names():
    groups = ("light", "<b>&")
    report = with_history(make_report({"light": 0.85, "<b>&": 0.7}, baselines={"light": 0.9, "<b>&": 0.8}), groups)
    page = history_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert page.count("<svg") == 1 and page.count("<polyline") == 3  # overall + two groups
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page


def test_html_for_several_reports_has_the_comparison_table_and_each_history():
    reports = [with_history(make_report(BASE, baselines=BASE)), make_report(BASE, baselines=BASE)]
    page = history_html(reports, comparison=compare_reports(reports, labels=["run <1>", "plain"]))
    assert page.count("<svg") == 1  # only the run has a history
    assert "run &lt;1&gt;" in page and "<th>plain</th>" in page
    assert 'class="best">' in page


# ------------------------------------------------------------------------------------- CLI


def test_cli_compare_prints_the_table_and_writes_json_and_html(cli, tmp_path):
    a = write(tmp_path / "a.json", with_history(make_report({"light": 0.85, "dark": 0.78}, baselines=BASE)))
    b = write(tmp_path / "b.json", make_report({"light": 0.86, "dark": float("nan")}))
    out, page = tmp_path / "out" / "comparison.json", tmp_path / "comparison.html"
    result = cli("compare", a, b, "--label", "fair", "--label", "taylor", "--json", out, "--html", page)
    assert result.code == 0, result
    assert "fair" in result.out and "taylor" in result.out and "history of fair" in result.out
    assert "wrote" not in result.out  # stdout carries only the report
    comparison = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert set(comparison) >= {"data", "split", "target", "attribute", "groups", "entries", "best", "columns"}
    assert [entry["label"] for entry in comparison["entries"]] == ["fair", "taylor"]
    assert set(comparison["entries"][0]) >= {
        "label", "density", "accuracy", "worst_group_accuracy", "accuracy_gap", "drop_std", "drop_gap", "groups",
    }  # fmt: skip
    assert comparison["entries"][0]["groups"][0] == {
        "group": "light", "n": 10, "accuracy": 0.85, "drop": pytest.approx(0.05),
        "intervals": {"accuracy": None, "drop": None},  # these reports carry no intervals
    }  # fmt: skip
    assert comparison["best"]["groups"]["dark"]["accuracy"] == ["fair"]
    assert "<svg" in page.read_text(encoding="utf-8")
    assert not list(tmp_path.glob("**/*.tmp"))


@pytest.mark.parametrize("problem", ["missing", "invalid", "incompatible", "overwrite"])
def test_cli_bad_input_exits_2_with_one_line(cli, tmp_path, problem):
    good = write(tmp_path / "good.json", make_report(BASE))
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    write(tmp_path / "val.json", {**make_report(BASE), "split": "val"})
    args = {
        "missing": [good, tmp_path / "nope.json"],
        "invalid": [good, tmp_path / "bad.json"],
        "incompatible": [good, tmp_path / "val.json"],
        "overwrite": [good, good, "--json", good],
    }[problem]
    before = (tmp_path / "good.json").read_text()
    result = cli("compare", *args)
    assert result.code == 2, result
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    assert result.err.startswith("error: ") and result.out == ""
    assert (tmp_path / "good.json").read_text() == before


def test_report_html_writes_the_single_report(cli, tmp_path, tiny_model_path, biased_data):
    page = tmp_path / "report.html"
    result = cli("report", tiny_model_path, biased_data, "--groups", "group", "--html", page, "--workers", "0", "-q")
    assert result.code == 0, result
    text = page.read_text(encoding="utf-8")
    assert "<table>" in text and "majority" in text and "minority" in text
    assert "http://" not in text and "https://" not in text


def test_the_note_names_the_interval_method_the_reports_used():
    def with_intervals(report: dict, **method) -> dict:
        for row in report["groups"]:
            row["accuracy_ci"] = [row["accuracy"] - 0.05, row["accuracy"] + 0.05]
        return {**report, **method}

    score = {"intervals": {"method": "Wilson score intervals per group", "confidence": 0.95}}
    bootstrap = {"bootstrap": {"resamples": 100, "confidence": 0.95, "seed": 0, "method": "percentile"}}
    a = with_intervals(make_report({"light": 0.9, "dark": 0.7}, baselines=BASE), **score)
    b = with_intervals(make_report({"light": 0.8, "dark": 0.75}, baselines=BASE), **score)
    text = " ".join(_text(render_comparison(compare_reports([a, b], labels=["a", "b"])), width=400).split())
    assert "[low, high]: 95% score interval" in text
    older = with_intervals(make_report({"light": 0.8, "dark": 0.75}, baselines=BASE), **bootstrap)
    text = " ".join(_text(render_comparison(compare_reports([a, older], labels=["a", "b"])), width=400).split())
    assert "[low, high]: 95% bootstrap or score interval" in text

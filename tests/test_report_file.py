"""The typed report (io.reports.Report): report files read and written back byte for byte, old
files (fairgrape 0.2.0) still read, rendered, compared and gated, and a report written now has
the keys, order and numbers of the files written before the report was typed."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from fairgrape_cli import stages
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.io.reports import DISPARITY_METRICS, METRICS, GroupRow, Report, load_report
from fairgrape_cli.method.comparison import compare_reports
from fairgrape_cli.method.metrics import Bootstrap, parse_condition
from fairgrape_cli.render.html import history_html
from fairgrape_cli.render.report import render_history, render_report

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CURRENT = sorted((FIXTURES / "reports").glob("*report*.json"))  # written right before the report was typed
OLD = sorted((FIXTURES / "reports-0.2.0").glob("*report*.json"))  # written by fairgrape 0.2.0


def _text(renderable) -> str:
    console = Console(width=120, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("path", CURRENT + OLD, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_report_files_read_and_write_back_byte_for_byte(path):
    text = path.read_text(encoding="utf-8")
    report = Report.from_json(text)
    assert report.to_json() == text
    assert load_report(path) == report
    assert json.loads(report.to_json()) == report.to_dict() == json.loads(text)


def test_an_old_report_reads_as_attributes_renders_compares_and_gates():
    old = load_report(FIXTURES / "reports-0.2.0" / "report_baseline.json")
    assert old.size.nonzero_params is None and "nonzero_params" not in old.to_dict()  # newer keys stay absent
    assert old.has_baseline and old.has_intervals and old.pruning.method == "magnitude"
    assert [row.group for row in old.groups] == ["majority", "minority"]
    assert old.disparity.drop_gap == pytest.approx(old.groups[0].drop - old.groups[1].drop)
    assert old.disparity.interval("drop_gap")[0] <= old.disparity.drop_gap <= old.disparity.interval("drop_gap")[1]
    assert old.metric("accuracy_drop") == pytest.approx(old.overall.baseline_accuracy - old.overall.accuracy)
    assert parse_condition("drop_gap>5pp", has_baseline=True).holds(old)
    assert not parse_condition("worst_group_accuracy<0.1", has_baseline=True).holds(old)
    assert "drop_gap" in _text(render_report(old)) and "majority" in _text(render_report(old))
    run = load_report(FIXTURES / "reports-0.2.0" / "run_report.json")
    assert [entry.stage for entry in run.history] == ["dense", "iteration", "final"] and run.run.method == "magnitude"
    assert "history of" in _text(render_history(run)) and "<svg" in history_html(run)
    current = load_report(FIXTURES / "reports" / "report_baseline.json")
    comparison = compare_reports([old, current], labels=["0.2.0", "now"])
    assert comparison["entries"][0]["drop_gap"] == comparison["entries"][1]["drop_gap"] == old.disparity.drop_gap
    assert load_report(FIXTURES / "reports-0.2.0" / "report_attributes.json").attributes[0].attribute == "Red"


def test_the_comparison_of_the_fixtures_is_what_compare_wrote_before(tmp_path):
    expected = json.loads((FIXTURES / "reports" / "compare.json").read_text(encoding="utf-8"))
    names = ["report_baseline.json", "run_report.json", "report_plain.json"]
    reports = [load_report(FIXTURES / "reports" / name) for name in names]
    comparison = compare_reports(reports, sources=[entry["source"] for entry in expected["entries"]])
    assert json.dumps(comparison, indent=2) == json.dumps(expected, indent=2)


def _same_shape(written, expected, where="report"):
    """Same keys in the same order at every level; numbers equal to 1e-9; strings equal."""
    if isinstance(expected, dict):
        assert list(written) == list(expected), where
        for key in expected:
            _same_shape(written[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(written) == len(expected), where
        for position, (mine, theirs) in enumerate(zip(written, expected)):
            _same_shape(mine, theirs, f"{where}[{position}]")
    elif isinstance(expected, float) and not isinstance(written, bool):
        assert (math.isnan(expected) and math.isnan(written)) or written == pytest.approx(expected, abs=1e-9), where
    else:
        assert written == expected, where


def test_a_report_written_now_has_the_keys_order_and_numbers_of_one_written_before(
    tmp_path, tiny_model_path, biased_data, monkeypatch
):
    """The fixture is `fairgrape report pruned.pt data --groups group --baseline model.pt -b 16`
    on the suite's tiny model pruned 90% by magnitude, written before the report was typed, when
    the intervals were the percentile bootstrap (now `--intervals bootstrap`). The keys added
    since (flips, error types, how the intervals were computed) are the only difference."""
    shutil.copy(tiny_model_path, tmp_path / "model.pt")
    shutil.copytree(biased_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    stages.prune(rate=0.9, model=stages.ModelSource(Path("model.pt")), method="magnitude",
                 output=Path("masks.safetensors"))  # fmt: skip
    stages.report(
        model=stages.ModelSource(Path("pruned.pt")), data=DataSpec(root=Path("data"), groups="group"),
        baseline=stages.ModelSource(Path("model.pt")), loading=stages.Loading(batch_size=16, workers=0),
        bootstrap=Bootstrap(method="bootstrap"), json_output=Path("report.json"),
    )  # fmt: skip
    written = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    expected = (FIXTURES / "reports" / "report_baseline.json").read_text(encoding="utf-8")
    assert written["intervals"]["method"].startswith("percentile bootstrap") and written["error_types"]["positive"]
    for key in ("intervals", "error_types"):
        del written[key]
    del written["disparity"]["worst_group_flip_rate"], written["disparity"]["worst_group_flip_rate_ci"]
    for row in written["groups"]:
        assert row["flips_lost"] + row["flips_gained"] == round(row["flip_rate"] * row["n"])
        for key in ("flips_lost", "flips_gained", "flips_lost_rate", "flips_gained_rate", "flip_rate", "flip_rate_ci"):
            del row[key]
    _same_shape(written, json.loads(expected))


def test_fields_this_version_does_not_know_are_kept_and_metrics_are_one_table():
    data = json.loads((FIXTURES / "reports" / "report_baseline.json").read_text(encoding="utf-8"))
    data["groups"][0]["memorised"] = 3  # as a later version may write
    data["disparity"]["worst_group_memorised"] = 0.1
    data["model_card"] = {"written": True}
    report = Report.from_dict(data)
    assert report.groups[0].extra == {"memorised": 3} and report.disparity.worst_group_memorised == 0.1
    assert report.to_dict() == data
    data["groups"][0]["flips_lost"] = 2  # known now (issue 26); absent in older files, and left out
    assert Report.from_dict(data).groups[0].flips_lost == 2 and Report.from_dict(data).to_dict() == data
    with pytest.raises(AttributeError, match="no disparity metric 'nope'"):
        report.disparity.nope
    assert set(DISPARITY_METRICS) <= set(METRICS) and list(METRICS)[: len(DISPARITY_METRICS)] == list(DISPARITY_METRICS)
    assert GroupRow("a", 1, 0.5).to_dict() == {
        "group": "a", "n": 1, "accuracy": 0.5, "baseline_accuracy": None, "drop": None,
        "accuracy_ci": None, "baseline_accuracy_ci": None, "drop_ci": None,
    }  # fmt: skip

"""Gates on interval ends (issue 26 item 4) and what a gate line shows (issue 28 item 10):
``--fail-if 'drop_gap.hi>0.05'`` acts on the upper end of drop_gap's 95% interval, a point gate
stays as it was, and every checked line shows the value measured and its interval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.reports import Report
from fairgrape_cli.method.metrics import check_conditions, parse_condition
from fairgrape_cli.render.report import render_conditions

FIXTURE = Path(__file__).parent / "fixtures" / "reports" / "report_baseline.json"


def _report(drop_gap: float, interval: list[float]) -> Report:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    data["disparity"]["drop_gap"], data["disparity"]["drop_gap_ci"] = drop_gap, interval
    return Report.from_dict(data)


def test_a_gate_on_the_upper_end_fails_where_the_point_gate_passes():
    report = _report(0.03, [0.01, 0.09])
    point = parse_condition("drop_gap>0.05", has_baseline=True)
    upper = parse_condition("drop_gap.hi>0.05", has_baseline=True)
    lower = parse_condition("drop_gap.lo>5pp", has_baseline=True)
    assert (upper.end, lower.end, point.end) == ("hi", "lo", None)
    checks = check_conditions([point, upper, lower], report)
    assert [check.held for check in checks] == [False, True, False]
    text = render_conditions(checks).plain
    assert "ok    drop_gap>0.05: 0.030 [0.010, 0.090]" in text
    assert "FAIL  drop_gap.hi>0.05: 0.030 [0.010, 0.090]" in text
    # and the interval that holds the point: a tight one passes the bound gate too
    assert not check_conditions([upper], _report(0.03, [0.02, 0.045]))[0].held


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("density.hi>0.5", "density has no interval"),
        ("drop_gap.mid>0.05", "expected METRIC>VALUE"),
        ("worst_group_accuracy.lo<0.8", "--bootstrap 0 turns intervals off"),
    ],
)
def test_gates_on_ends_that_cannot_exist_are_refused(text, message):
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        parse_condition(text, has_baseline=True, has_intervals=False)


def test_a_gate_on_a_number_the_report_lacks_is_refused_not_passed():
    report = _report(0.03, [0.01, 0.09])  # a report without error types
    condition = parse_condition("equalized_odds_difference>0.1", has_baseline=False)
    with pytest.raises(InputError, match="binary target"):
        check_conditions([condition], report)


def test_the_command_gates_on_the_interval_and_says_what_it_measured(
    tmp_path, cli, tiny_model_path, resnet_path, biased_data
):
    out = tmp_path / "report.json"
    result = cli("report", tiny_model_path, biased_data, "--groups", "group", "--baseline", resnet_path,
                 "--workers", "0", "--json", out, "--fail-if", "worst_group_accuracy.lo<0.999",
                 "--fail-if", "drop_gap>1")  # fmt: skip
    assert result.code == 1, result
    report = json.loads(out.read_text())
    low, high = report["disparity"]["worst_group_accuracy_ci"]
    value = report["disparity"]["worst_group_accuracy"]
    assert f"FAIL  worst_group_accuracy.lo<0.999: {value:.3f} [{low:.3f}, {high:.3f}]" in result.out
    gap, (gap_low, gap_high) = report["disparity"]["drop_gap"], report["disparity"]["drop_gap_ci"]
    assert f"ok    drop_gap>1: {gap:.3f} [{gap_low:.3f}, {gap_high:.3f}]" in result.out
    for name, spec_value in report["disparity"].items():  # no interval excludes its own value
        if not name.endswith("_ci") and spec_value is not None:
            ends = report["disparity"][f"{name}_ci"]
            assert ends[0] <= spec_value <= ends[1], name

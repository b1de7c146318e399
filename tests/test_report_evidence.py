"""What compression forgot, end to end (issue 26 items 1-3): per-group flips in the JSON agree
with the exemplar CSV and with the accuracies; the HTML page embeds thumbnails of broken images;
a binary target gets its error types."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_model_path, resnet_path, biased_data):
    from fairgrape_cli import stages
    from fairgrape_cli.io.data import DataSpec

    folder = tmp_path_factory.mktemp("evidence")
    result = stages.report(
        model=stages.ModelSource(tiny_model_path), data=DataSpec(root=biased_data, groups="group"),
        baseline=stages.ModelSource(resnet_path), loading=stages.Loading(workers=0),
        json_output=folder / "report.json", html_output=folder / "report.html",
        exemplars_output=folder / "flips.csv",
    )  # fmt: skip
    return result.report, folder


def test_flips_per_group_agree_with_the_exemplars_and_the_accuracies(written):
    report, folder = written
    data = json.loads((folder / "report.json").read_text())
    rows = list(csv.DictReader((folder / "flips.csv").open()))
    assert rows, "the random tiny model and the random resnet disagree on some images"
    counted = Counter((row["group"], row["flip"]) for row in rows)
    for group in data["groups"]:
        name, n = group["group"], group["n"]
        assert (group["flips_lost"], group["flips_gained"]) == (counted[name, "lost"], counted[name, "gained"])
        # a group's accuracy moves by gained minus lost
        assert group["drop"] == pytest.approx((group["flips_lost"] - group["flips_gained"]) / n, abs=1e-12)
        assert group["flip_rate"] == pytest.approx((group["flips_lost"] + group["flips_gained"]) / n)
        low, high = group["flip_rate_ci"]
        assert low <= group["flip_rate"] <= high
    assert data["disparity"]["worst_group_flip_rate"] == max(group["flip_rate"] for group in data["groups"])
    for row in rows:  # lost: the baseline right and the model wrong; gained: the reverse
        right = (row["baseline_prediction"] == row["label"], row["model_prediction"] == row["label"])
        assert right == ((True, False) if row["flip"] == "lost" else (False, True))
    confidences = [float(row["baseline_confidence"]) for row in rows]
    assert confidences == sorted(confidences, reverse=True)
    assert len({row["path"] for row in rows}) == len(rows) and all(not row["path"].startswith("/") for row in rows)


def test_the_html_page_embeds_thumbnails_of_broken_images_per_group(written):
    report, folder = written
    page = (folder / "report.html").read_text()
    lost = {row.group: row.flips_lost for row in report.groups}
    assert "Images compression broke" in page
    shown = page.count('src="data:image/jpeg;base64,')
    assert 0 < shown == sum(min(count, 12) for count in lost.values())
    assert "http://" not in page and "https://" not in page  # self-contained


def test_a_binary_target_gets_its_error_types(written):
    report, _ = written
    section = report.error_types
    assert section.positive == "yes" and [row.group for row in section.groups] == [row.group for row in report.groups]
    for row, group in zip(section.groups, report.groups):
        assert row.n == group.n and 0 <= row.positives <= row.n
        assert row.selection_rate == pytest.approx((row.true_positives + row.false_positives) / row.n)
        assert row.balanced_accuracy == pytest.approx((row.true_positive_rate + 1 - row.false_positive_rate) / 2)
        for key in ("true_positive_rate", "false_positive_rate", "selection_rate", "balanced_accuracy"):
            low, high = getattr(row, f"{key}_ci")
            assert low <= getattr(row, key) <= high
    tpr = [row.true_positive_rate for row in section.groups]
    fpr = [row.false_positive_rate for row in section.groups]
    assert section.equalized_odds_difference == pytest.approx(max(max(tpr) - min(tpr), max(fpr) - min(fpr)))
    assert report.metric("equalized_odds_difference") == section.equalized_odds_difference


def test_exemplars_need_a_baseline(tmp_path, cli, tiny_model_path, biased_data):
    result = cli("report", tiny_model_path, biased_data, "--groups", "group", "--exemplars", tmp_path / "f.csv")
    assert result.code == 2 and "--baseline" in result.err and not (tmp_path / "f.csv").exists()

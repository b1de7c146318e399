"""``report --model-card FILE.md`` (issue 26 item 5): a Hugging Face style card section that
parses (YAML header + Markdown tables), with the per-group counts and intervals, the flips, the
settings and the provenance of the files it judged."""

from __future__ import annotations

import json
import re

import yaml

from fairgrape_cli.io.files import sha256_file


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cells (the separator row left out); each row checked to
    have as many cells as its header."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
                current.append(cells)
            else:
                assert len(line.strip("|").split("|")) == len(current[0])
        elif current:
            assert len({len(row) for row in current}) == 1, current
            tables.append(current)
            current = []
    return tables


def test_the_card_parses_and_carries_groups_flips_and_provenance(tmp_path, cli, tiny_model_path, resnet_path, biased_data):
    card = tmp_path / "card" / "README.md"
    card.parent.mkdir()
    out = tmp_path / "report.json"
    result = cli("report", tiny_model_path, biased_data, "--groups", "group", "--baseline", resnet_path,
                 "--workers", "0", "--json", out, "--model-card", card)  # fmt: skip
    assert result.code == 0, result
    report = json.loads(out.read_text())
    text = card.read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    metrics = {item["type"]: item["value"] for item in header["model-index"][0]["results"][0]["metrics"]}
    assert metrics["drop_gap"] == round(report["disparity"]["drop_gap"], 6) and "fairness" in header["tags"]
    tables = _tables(text.split("---\n", 2)[2])
    groups = next(table for table in tables if table[0][0] == "group")
    assert groups[0][:2] == ["group", "n"] and "lost" in groups[0] and "flip rate (95% CI)" in groups[0]
    for row, expected in zip(groups[1:], report["groups"]):
        assert row[0] == expected["group"] and row[1] == str(expected["n"])
        assert f"{100 * expected['accuracy_ci'][0]:.1f}" in row[2]  # the interval beside the value
        assert row[groups[0].index("lost")] == str(expected["flips_lost"])
    provenance = next(table for table in tables if table[0][0] == "file")
    model_row = next(row for row in provenance if row[0] == "model")
    assert model_row[2] == f"`{sha256_file(tiny_model_path)}`" and not model_row[1].strip("`").startswith("/")
    assert "## Settings and provenance" in text and "Wilson score" in text

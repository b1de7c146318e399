"""A run-state.json that is corrupt or from another version is refused with a message saying how to
start over (never a traceback, never a silent rerun over the old files); following it works."""

from __future__ import annotations

import json

from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.flows.run_state import STATE_VERSION

from tiny_runs import QUICK, edit_config, run_folder


def test_corrupt_or_foreign_state_files_are_refused(tmp_path, cli, tiny_model_path, biased_data):
    config = run_folder(tmp_path, "r", tiny_model_path, biased_data, **QUICK)
    run_schedule(load_config(config))
    state_file = config.parent / "run" / "run-state.json"
    good = json.loads(state_file.read_text())
    assert good["version"] == STATE_VERSION

    stages = good["stages"]
    broken_record = {name: {**record, "outputs": {"final.pt": {"sha256": "x"}}} for name, record in stages.items()}
    cases = [
        (state_file.read_bytes()[:40], "is corrupt"),  # cut short
        (b"\xff\xfe{}", "is corrupt"),  # not UTF-8
        (b"[1, 2]", "is corrupt (not a JSON object)"),
        (json.dumps({"stages": stages}).encode(), "another version of fairgrape (no state version"),
        (json.dumps({**good, "version": STATE_VERSION + 1}).encode(), f"(state version {STATE_VERSION + 1}"),
        (json.dumps({**good, "stages": broken_record}).encode(), "a stage record is malformed"),
        (json.dumps({**good, "stages": {"report": {"fingerprint": 3}}}).encode(), "a stage record is malformed"),
        (json.dumps({**good, "config": 3}).encode(), "its config is not a file name"),
    ]
    for content, words in cases:
        state_file.write_bytes(content)
        result = cli("run", config, "-q")
        assert result.code == 2, (content, result)
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.err, result.err
        assert str(state_file) in lines[0] and words in lines[0], (words, lines[0])
        assert f"rm {state_file}" in lines[0] and "--set output=" in lines[0]
        assert state_file.read_bytes() == content and not (state_file.parent / "run.lock").exists()

    state_file.unlink()  # as the message says: start over
    again = cli("run", config, "-q")
    assert again.code == 0, again
    assert json.loads(state_file.read_text())["version"] == STATE_VERSION


def test_a_folder_holding_another_configs_run_is_refused(tmp_path, cli, tiny_model_path, biased_data):
    """Two configs copied from one share its ``output``: the second must not replace the first's
    results without a word. The same config, changed, reruns what the change affects, as ever."""
    config = run_folder(tmp_path, "r", tiny_model_path, biased_data, **QUICK)
    assert cli("run", config, "-q").code == 0
    state_file = config.parent / "run" / "run-state.json"
    assert json.loads(state_file.read_text())["config"] == "config.yaml"
    report = (config.parent / "run" / "report.json").read_bytes()

    baseline = config.parent / "baseline.yaml"  # a copy with one setting changed, the same output
    baseline.write_text(config.read_text().replace("method: magnitude", "method: random"))
    refused = cli("run", baseline, "-q")
    lines = [line for line in refused.err.splitlines() if line.strip()]
    assert refused.code == 2 and len(lines) == 1 and "Traceback" not in refused.err
    assert "holds the run of config.yaml, not of baseline.yaml" in lines[0] and "--set output=" in lines[0]
    assert (config.parent / "run" / "report.json").read_bytes() == report

    elsewhere = cli("run", baseline, "--set", "output=baseline-run", "-q")
    assert elsewhere.code == 0 and (config.parent / "baseline-run" / "report.json").exists()
    edit_config(config, method="random")  # the same file changed: its own folder reruns
    assert cli("run", config, "-q").code == 0
    assert (config.parent / "run" / "report.json").read_bytes() != report


def test_a_state_file_from_before_0_3_without_its_config_name_resumes(tmp_path, cli, tiny_model_path, biased_data):
    config = run_folder(tmp_path, "r", tiny_model_path, biased_data, **QUICK)
    run_schedule(load_config(config))
    state_file = config.parent / "run" / "run-state.json"
    old = json.loads(state_file.read_text())
    del old["config"]
    state_file.write_text(json.dumps(old))
    assert run_schedule(load_config(config)).ran == []
    # stamped at once, though nothing ran: a copy of the config cannot adopt the folder later
    assert json.loads(state_file.read_text())["config"] == "config.yaml"

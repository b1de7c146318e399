"""A run-state.json that is corrupt or from another version is refused with a message saying how to
start over (never a traceback, never a silent rerun over the old files); following it works."""

from __future__ import annotations

import json

from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.flows.run_state import STATE_VERSION

from tiny_runs import QUICK, run_folder


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

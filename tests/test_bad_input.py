"""Bad input never shows a traceback, never runs code, never leaves an output behind.

Each case runs the real entry point and expects exit code 2 and one line on stderr that names the
culprit (file, row, column or flag).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN


def _one_line_error(result, *fragments: str) -> None:
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err and lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def data_copy(tmp_path, biased_data) -> Path:
    target = tmp_path / "data"
    shutil.copytree(biased_data, target)
    return target


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['FAIRGRAPE_MARKER']}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, cli, biased_data, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("FAIRGRAPE_MARKER", str(marker))
    evil = tmp_path / "evil.pt"
    torch.save({"arch": TINY_ARCH, "state_dict": TinyCNN().state_dict(), "extra": _Payload()}, evil)
    result = cli("score", evil, biased_data, "-g", "group", "-q", cwd=tmp_path)
    _one_line_error(result, str(evil), "--trust-checkpoint")
    assert not marker.exists() and not (tmp_path / "importance.safetensors").exists()


def test_whole_pickled_module_needs_trust(tmp_path, cli, biased_data):
    whole = tmp_path / "whole.pt"
    torch.save(TinyCNN(), whole)
    _one_line_error(cli("report", whole, biased_data, "-g", "group", "-q"), "whole.pt", "TinyCNN", "state_dict")
    trusted = cli("report", whole, biased_data, "-g", "group", "-q", "--trust-checkpoint", "--workers", "0")
    assert trusted.code == 0, trusted


def test_missing_image_names_file_and_row(tmp_path, cli, data_copy, tiny_model_path):
    first_train = next(line for line in (data_copy / "labels.csv").read_text().splitlines()[1:] if line.endswith("train"))
    (data_copy / first_train.split(",")[0]).unlink()
    result = cli("score", tiny_model_path, data_copy, "-g", "group", "-q", cwd=tmp_path)
    _one_line_error(result, "labels.csv row 2", first_train.split(",")[0], "--skip-bad-images")
    assert not (tmp_path / "importance.safetensors").exists()
    skipped = cli("score", tiny_model_path, data_copy, "-g", "group", "--skip-bad-images", "--workers", "0", cwd=tmp_path)
    assert skipped.code == 0 and "skipped 1 bad image" in skipped.err


def test_undecodable_image_names_file_and_row(tmp_path, cli, data_copy, tiny_model_path):
    rows = (data_copy / "labels.csv").read_text().splitlines()
    test_row = next(i for i, line in enumerate(rows) if line.endswith(",test"))
    broken = rows[test_row].split(",")[0]
    (data_copy / broken).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    result = cli("report", tiny_model_path, data_copy, "-g", "group", "-q", "--workers", "0", "--json", tmp_path / "r.json")
    _one_line_error(result, f"labels.csv row {test_row + 1}", broken, "cannot read image")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "args,fragments",
    [
        (("-g", "race"), ("--groups race", "no column 'race'", "group, label")),
        (("-g", "group", "--target", "smile"), ("--target smile", "no column 'smile'")),
        (("-g", "group", "--split", "holdout"), ("--split holdout", "train, val")),
    ],
)
def test_unknown_columns_and_splits(tmp_path, cli, biased_data, tiny_model_path, args, fragments):
    result = cli("score", tiny_model_path, biased_data, *args, "-q", cwd=tmp_path)
    _one_line_error(result, *fragments)
    assert not (tmp_path / "importance.safetensors").exists()


def test_class_count_mismatch(tmp_path, cli, biased_data):
    three = tmp_path / "three.pt"
    torch.save({"arch": TINY_ARCH, "num_classes": 3, "state_dict": TinyCNN(num_classes=3).state_dict()}, three)
    _one_line_error(cli("report", three, biased_data, "-g", "group", "-q"), "three.pt", "predicts 3 classes", "'label' has 2")


@pytest.mark.parametrize("which", ["model", "importance", "masks"])
def test_missing_files(tmp_path, cli, which, tiny_model_path, biased_data):
    if which == "model":
        result = cli("score", tmp_path / "nope.pt", biased_data, "-g", "group", "-q", cwd=tmp_path)
        _one_line_error(result, "nope.pt", "does not exist")
    elif which == "importance":
        _one_line_error(cli("prune", "--rate", "0.5", cwd=tmp_path), "importance.safetensors", "fairgrape score")
    else:
        result = cli("finetune", tiny_model_path, biased_data, "--masks", tmp_path / "m.safetensors", "-q", cwd=tmp_path)
        _one_line_error(result, "m.safetensors", "does not exist")


def test_truncated_checkpoint_and_importance(tmp_path, cli, tiny_model_path, biased_data):
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(tiny_model_path.read_bytes()[:500])
    _one_line_error(cli("score", truncated, biased_data, "-g", "group", "-q", cwd=tmp_path), "cut.pt", "truncated")
    assert cli("score", tiny_model_path, biased_data, "-g", "group", "-q", "--max-batches", "1", "--workers", "0", cwd=tmp_path).code == 0
    importance = tmp_path / "importance.safetensors"
    importance.write_bytes(importance.read_bytes()[:-100])
    _one_line_error(cli("prune", "--rate", "0.5", cwd=tmp_path), "importance.safetensors")
    assert not (tmp_path / "masks.safetensors").exists()


def test_importance_for_another_model(tmp_path, cli, tiny_model_path, resnet_path, biased_data):
    assert cli("score", resnet_path, biased_data, "-g", "group", "-q", "--max-batches", "1", "--workers", "0", cwd=tmp_path).code == 0
    _one_line_error(cli("prune", tiny_model_path, "--rate", "0.5", cwd=tmp_path), "importance.safetensors", "does not fit", "tiny.pt")
    assert not (tmp_path / "masks.safetensors").exists() and not (tmp_path / "pruned.pt").exists()


@pytest.mark.parametrize("rate", ["1", "1.5", "-0.1"])
def test_rate_out_of_range_is_refused_before_any_work(tmp_path, cli, rate):
    # no importance file and no model: the rate is checked first
    _one_line_error(cli("prune", "--rate", rate, cwd=tmp_path), f"--rate {float(rate)}", "[0, 1)")


@pytest.mark.parametrize(
    ("flags", "culprit"),
    [(["--scope", "pool"], "--scope pool"), (["--scope", "global", "--min-layer-density", "0.5"], "--min-layer-density 0.5")],
)
def test_prune_options_that_contradict_are_refused_before_any_work(tmp_path, cli, tiny_model_path, flags, culprit):
    _one_line_error(cli("prune", tiny_model_path, "--method", "magnitude", "--rate", "0.9", *flags, cwd=tmp_path), culprit)
    assert not (tmp_path / "masks.safetensors").exists()


def test_outputs_never_overwrite_inputs(tmp_path, cli, tiny_model_path, biased_data):
    model = tmp_path / "model.pt"
    shutil.copy(tiny_model_path, model)
    before = model.read_bytes()
    result = cli("score", model, biased_data, "-g", "group", "-q", "-o", model, cwd=tmp_path)
    _one_line_error(result, "would overwrite the input")
    assert model.read_bytes() == before


def test_debug_shows_the_traceback(tmp_path, cli, biased_data):
    result = cli("score", tmp_path / "nope.pt", biased_data, "-g", "group", "--debug")
    assert result.code == 2 and "Traceback" in result.err and "nope.pt does not exist" in result.err
    # --debug lives on that command's Typer context: the next command, in the same process, shows none
    again = cli("score", tmp_path / "nope.pt", biased_data, "-g", "group")
    assert again.code == 2 and "Traceback" not in again.err and "nope.pt does not exist" in again.err


def test_interrupted_write_leaves_previous_file(tmp_path):
    from fairgrape_cli.io.files import atomic_output

    target = tmp_path / "masks.safetensors"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half of the new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["masks.safetensors"]

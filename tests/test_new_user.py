"""What a new user tripped over (issue 19), each tried again: the CI gate's scale, closed pipes,
the stale-input warning, numbers in report.json, --set errors, file modes, the demo's words and
its charts' axes, and the --groups error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_compare import BASE, make_report, with_history

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.flows import experiment
from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.synthetic import TINY_ARCH, SyntheticSpec
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.method.comparison import compare_reports
from fairgrape_cli.method.metrics import parse_condition
from fairgrape_cli.render.html import history_html

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"


# ------------------------------------------------------------------------------ --fail-if scale


@pytest.mark.parametrize(
    "text,threshold",
    [("accuracy_drop>5pp", 0.05), ("accuracy_drop>5%", 0.05), ("drop_gap >= 2.5 PP", 0.025),
     ("worst_group_accuracy<80%", 0.8), ("accuracy_drop>0.05", 0.05), ("drop_gap>-3pp", -0.03)],
)  # fmt: skip
def test_fail_if_reads_percent_and_points_as_fractions(text, threshold):
    condition = parse_condition(text, has_baseline=True)
    assert condition.threshold == pytest.approx(threshold) and condition.text == text.strip()


@pytest.mark.parametrize(
    "text,hint",
    [("accuracy_drop>5", "write accuracy_drop>0.05 or accuracy_drop>5pp"),
     ("worst_group_accuracy<80", "write worst_group_accuracy<0.8 or worst_group_accuracy<80%"),
     ("accuracy>150%", "between -1 and 1"), ("density<-2", "write density<-0.02")],
)  # fmt: skip
def test_fail_if_refuses_a_fraction_metric_against_a_percent_number(text, hint):
    with pytest.raises(InputError) as error:
        parse_condition(text, has_baseline=True)
    message = str(error.value)
    assert "is a fraction" in message and hint in message and "\n" not in message


def test_fail_if_out_of_range_is_a_usage_error_before_any_work(cli, tiny_model_path, biased_data, tmp_path):
    result = cli("report", tiny_model_path, biased_data, "-g", "group", "--baseline", tiny_model_path,
                 "--fail-if", "accuracy_drop>5", "--json", tmp_path / "r.json")  # fmt: skip
    assert result.code == 2 and "accuracy_drop>5pp" in result.err and len(result.err.strip().splitlines()) == 1
    assert result.out == "" and not (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------------- closed pipes


def _with_reader_gone(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``fairgrape ARGS`` with its stdout a pipe whose reader has already gone (``| head -0``)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "fairgrape_cli", *args], stdout=write, stderr=subprocess.PIPE,
            cwd=cwd, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)


def _in_process_with_reader_gone(monkeypatch, *args: str, cwd: Path) -> int:
    """The same in this process (faster): the exit status ``main`` ends with."""
    from fairgrape_cli.cli import main

    read, write = os.pipe()
    os.close(read)
    stream = open(write, "w", encoding="utf-8")
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["fairgrape", *args])
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        monkeypatch.undo()
        stream.close()  # its descriptor now points at /dev/null: closing flushes nothing into a pipe
    return code


@pytest.fixture
def two_reports(tmp_path) -> Path:
    report = with_history(make_report(BASE, baselines={"light": 0.95, "dark": 0.9}))
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(report))
    return tmp_path


def test_a_closed_stdout_is_not_a_failure(tmp_path):
    # what a shell does, exit included (Python flushes stdout once more as it exits); --help
    # because it starts without torch: compare takes the same path, in process, below
    result = _with_reader_gone("--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("args", [("--help",), ("report", "--help"), ("--version",), ("compare", "a.json", "b.json")])
def test_every_printing_command_ends_well_on_a_closed_stdout(two_reports, monkeypatch, capsys, args):
    assert _in_process_with_reader_gone(monkeypatch, *args, cwd=two_reports) == 0
    assert "Error" not in capsys.readouterr().err


def test_a_closed_stdout_keeps_the_exit_status_of_the_command(two_reports, monkeypatch, tiny_model_path, biased_data):
    assert _in_process_with_reader_gone(monkeypatch, "compare", "missing.json", cwd=two_reports) == 2
    gate = ("report", str(tiny_model_path), str(biased_data), "-g", "group", "--bootstrap", "0", "--workers", "0", "-q")
    assert _in_process_with_reader_gone(monkeypatch, *gate, "--fail-if", "accuracy>=0", cwd=two_reports) == 1
    assert _in_process_with_reader_gone(monkeypatch, *gate, "--fail-if", "accuracy<0", cwd=two_reports) == 0


# ------------------------------------------------------------------------ stale-input warning


@pytest.fixture
def scored(tmp_path, tiny_model_path, biased_data) -> Path:
    shutil.copy(tiny_model_path, tmp_path / "model.pt")
    stages.score(
        model=stages.ModelSource(tmp_path / "model.pt"), data=DataSpec(biased_data, groups="group"),
        output=tmp_path / "importance.safetensors", loading=stages.Loading(batch_size=16, workers=0),
        max_batches=1,
    )  # fmt: skip
    return tmp_path


def test_a_changed_model_is_called_changed_not_another_file(scored, cli):
    checkpoint = torch.load(scored / "model.pt", weights_only=True)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] * 1.5
    torch.save(checkpoint, scored / "model.pt")
    result = cli("prune", "--rate", "0.5", "-q", cwd=scored)
    assert result.code == 0, result
    warning = " ".join(result.err.split())
    assert "was made from model.pt, whose contents have changed since (its sha256 differs)" in warning
    assert "not from" not in warning and str(scored) not in warning


def test_another_model_is_named_beside_the_recorded_one(scored, cli):
    shutil.copy(scored / "model.pt", scored / "other.pt")
    checkpoint = torch.load(scored / "other.pt", weights_only=True)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] * 1.5
    torch.save(checkpoint, scored / "other.pt")
    result = cli("prune", "other.pt", "--rate", "0.5", "-q", "-o", "m.safetensors", cwd=scored)
    assert result.code == 0, result
    assert "was made from model.pt, not from other.pt" in " ".join(result.err.split())


# ------------------------------------------------------------- numbers in JSON, modes of files


def _stringly_numbers(value, where="") -> list[str]:
    """Paths of string values that read as numbers (a JSON file should hold them as numbers)."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _stringly_numbers(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _stringly_numbers(item, f"{where}[{i}]")]
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
        return [f"{where}={value!r}"]
    return []


def test_outputs_follow_the_umask_and_reports_hold_numbers(tmp_path, tiny_model_path, biased_data):
    previous = os.umask(0o027)
    try:
        stages.prune(rate=0.5, model=stages.ModelSource(tiny_model_path), method="magnitude",
                     output=tmp_path / "masks.safetensors", model_output=tmp_path / "pruned.safetensors")  # fmt: skip
        stages.prune(rate=0.5, model=stages.ModelSource(tiny_model_path), method="magnitude",
                     output=tmp_path / "masks2.safetensors", model_output=tmp_path / "pruned.pt")  # fmt: skip
        stages.report(model=stages.ModelSource(tmp_path / "pruned.pt"), data=DataSpec(biased_data, groups="group"),
                      baseline=stages.ModelSource(tiny_model_path), loading=stages.Loading(workers=0),
                      json_output=tmp_path / "report.json")  # fmt: skip
    finally:
        os.umask(previous)
    for name in ("masks.safetensors", "pruned.safetensors", "pruned.pt", "report.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["pruning"] == {
        "method": "magnitude", "rate": 0.5, "scope": "layer", "density": pytest.approx(0.5, abs=0.01),
        "granularity": "weight",
    }  # fmt: skip
    assert _stringly_numbers(report) == []


def test_the_stringly_number_check_sees_one():
    assert _stringly_numbers({"pruning": {"rate": "0.9", "method": "fairgrape"}}) == [".pruning.rate='0.9'"]


# ----------------------------------------------------------------------------- --set errors


@pytest.mark.parametrize(
    "override,message",
    [("finetune.epochs=abc", "--set finetune.epochs=abc: 'finetune.epochs' must be int"),
     ("finetune.epoch=3", "--set finetune.epoch=3: unknown key 'finetune.epoch'"),
     ("rate=2", "--set rate=2: 'rate' must be in (0, 1)"),
     ("method=best", "--set method=best: 'method' must be one of"),
     ("iterations=3", "--set iterations=3: set 'keep_per_iter' or 'iterations'"),
     ("keep_artifacts=some", "--set keep_artifacts=some: 'keep_artifacts' must be one of last, all")],
)  # fmt: skip
def test_set_errors_name_the_set_not_the_file(override, message):
    with pytest.raises(InputError) as error:
        load_config(SAMPLES / "tiny.yaml", overrides=[override])
    assert str(error.value).startswith(message) and "tiny.yaml" not in str(error.value)


def test_the_file_is_still_named_for_its_own_values(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text((SAMPLES / "tiny.yaml").read_text() + "colour: red\n")
    with pytest.raises(InputError, match=r"c\.yaml: unknown key 'colour'"):
        load_config(config, overrides=["finetune.epochs=2"])
    missing = load_config(SAMPLES / "tiny.yaml", overrides=["model=nowhere.pt"])
    assert missing.origin("model") == "--set model=nowhere.pt" and missing.origin("rate") == str(SAMPLES / "tiny.yaml")


# ------------------------------------------------------------------------------------- demo


def test_the_demo_says_whether_it_trains_or_reuses(tmp_path, caplog):
    spec = experiment.ExperimentSpec(
        data=SyntheticSpec(classes=("c0", "c1"), per_split=(("train", 16), ("val", 8), ("test", 8))),
        arch=TINY_ARCH, dense_epochs=1, batch_size=16,
    )  # fmt: skip
    with caplog.at_level("INFO", logger="fairgrape"):
        experiment.prepare(tmp_path, spec)
    first = caplog.text
    assert "training the dense model" in first and "generating the biased dataset" in first and "reusing" not in first
    caplog.clear()
    with caplog.at_level("INFO", logger="fairgrape"):
        experiment.prepare(tmp_path, spec)
    assert "reusing the dataset and the dense model" in caplog.text and "training" not in caplog.text


def test_compared_histories_share_one_accuracy_axis():
    high = with_history(make_report(BASE, baselines=BASE))
    low = with_history(make_report({"light": 0.5, "dark": 0.3}, baselines=BASE))
    for entry in low["history"]:
        entry["groups"] = {group: value - 0.4 for group, value in entry["groups"].items()}
    comparison = compare_reports([high, low], labels=["high", "low"], sources=["h.json", "l.json"])
    page = history_html([high, low], comparison=comparison)
    charts = page.split("<svg")[1:]
    assert len(charts) == 2
    ticks = [re.findall(r'text-anchor="end">(\d+)%</text>', chart) for chart in charts]
    assert ticks[0] == ticks[1] and len(ticks[0]) >= 3  # the same gridlines: the same y range
    alone = re.findall(r'text-anchor="end">(\d+)%</text>', history_html(high).split("<svg")[1])
    assert alone != ticks[0]  # drawn alone, a run still gets an axis that fits it


# --------------------------------------------------------------------------------- --groups


@pytest.mark.parametrize("command", ["score", "report"])
def test_a_missing_groups_flag_lists_the_columns(cli, tiny_model_path, biased_data, command):
    result = cli(command, tiny_model_path, biased_data)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
    assert "--groups is required" in result.err and "columns group, label" in result.err
    assert "e.g. --groups group" in result.err


@pytest.mark.parametrize("command, words", [
    (["report", "m.pt", "data"], "written whole or not at all"),
    (["run", "config.yaml"], "run the same command again to resume"),
])  # fmt: skip
def test_ctrl_c_says_it_interrupted_and_what_is_left(cli, monkeypatch, tmp_path, command, words):
    """Issue 28 item 11: Ctrl-C ended with exit 130 and no word."""
    import fairgrape_cli.flows.pipeline as pipeline
    from fairgrape_cli import stages

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "report", interrupted)
    monkeypatch.setattr(pipeline, "run_schedule", interrupted)
    monkeypatch.setattr("fairgrape_cli.flows.config.load_config", lambda *a, **k: None)
    result = cli(*command, cwd=tmp_path)
    assert result.code == 130
    assert result.err.strip().splitlines()[-1].startswith("interrupted: ") and words in result.err


def test_a_weight_pruned_model_shows_its_nonzero_parameters_beside_the_dense_shape(tmp_path, resnet_path, biased_data, cli):
    """Issue 28 item 9: 'params 11.2 M of 11.2 M dense (100.0%)' after pruning 90% read as nothing pruned."""
    from fairgrape_cli import stages

    stages.prune(model=stages.ModelSource(resnet_path), method="magnitude", rate=0.9,
                 output=tmp_path / "masks.safetensors")  # fmt: skip
    result = cli("report", tmp_path / "pruned.pt", biased_data, "--groups", "group", "--json", tmp_path / "r.json")
    assert result.code == 0, result
    line = next(line for line in result.out.splitlines() if line.startswith("params"))
    assert re.search(r"params 11\.2 M of 11\.2 M dense \(100\.0%\), 1\.\d+ M nonzero \(1\d\.\d%\)", line), line
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0.09 < report["nonzero_params"] / report["params"] < 0.12


def test_finetune_of_a_channel_pruned_model_states_the_density_report_does(tmp_path, resnet_path, biased_data, cli):
    """Issue 28 item 2: finetune printed density 1.0000 where report said 0.2502."""
    from fairgrape_cli import stages

    stages.prune(model=stages.ModelSource(resnet_path), method="magnitude", rate=0.5, granularity="channel",
                 output=tmp_path / "masks.safetensors", model_output=tmp_path / "slim.pt")  # fmt: skip
    tuned = cli("finetune", tmp_path / "slim.pt", biased_data, "--masks", tmp_path / "masks.safetensors",
                "--epochs", "1", "-o", tmp_path / "tuned.pt")  # fmt: skip
    assert tuned.code == 0, tuned
    printed = float(re.search(r"density (\d\.\d+)", tuned.err).group(1))
    report = cli("report", tmp_path / "tuned.pt", biased_data, "-g", "group", "--json", tmp_path / "r.json", "-q")
    assert report.code == 0, report
    assert printed == pytest.approx(json.loads((tmp_path / "r.json").read_text())["density"], abs=1e-4)
    assert printed < 0.5


def test_every_data_command_says_its_image_size_and_where_it_came_from(tmp_path, resnet_path, biased_data, cli):
    """Issue 28 item 5: a plain state dict was read at 224 px without a word, upscaling 32 px images."""
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(resnet_path, weights_only=True)["state_dict"], plain)
    result = cli("report", plain, biased_data, "-g", "group", "--arch", "resnet18")
    assert result.code == 0, result
    assert "image size 224 px (from the default" in result.err
    assert "resized to 224 px" in result.err and "pass --image-size 32" in result.err
    recorded = cli("score", resnet_path, biased_data, "-g", "group", "-o", tmp_path / "i.safetensors")
    assert "image size 32 px (from the checkpoint)" in recorded.err and "warning" not in recorded.err
    overridden = cli("report", resnet_path, biased_data, "-g", "group", "--image-size", "64")
    assert "--image-size 64 overrides the 32 px" in overridden.err and "image size 64 px (from --image-size)" in overridden.err
    # in a run, the config's key (the demo's runs said "--image-size", which nobody had passed)
    from tiny_runs import QUICK, run_folder

    config = run_folder(tmp_path, "r", resnet_path, biased_data, **QUICK)
    ran = cli("run", config)
    assert ran.code == 0 and f"image size 32 px (from {config}: image_size)" in ran.err and "--image-size" not in ran.err
    assert ran.err.count("image size 32 px") == 1  # said once, not by every stage of the run
    overridden = cli("run", config, "--set", "image_size=32", "--set", "output=again")
    assert overridden.code == 0 and "image size 32 px (from --set image_size=32)" in overridden.err


def test_a_report_on_the_images_a_model_was_fine_tuned_on_says_so(tmp_path, resnet_path, cli):
    """Issue 28 item 6: an ImageFolder without a split column was scored, fine-tuned and reported on
    the same images, and nothing said so; the HTML header read 'data data'."""
    from PIL import Image

    data = tmp_path / "data"
    rows = ["path,skin"]
    for i in range(12):
        cls = ("no", "yes")[i % 2]
        (data / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (40 * (i % 3), 90, 200 * (i % 2))).save(data / cls / f"{i}.png")
        rows.append(f"{cls}/{i}.png,{('dark', 'light')[i % 3 == 0]}")
    (data / "groups.csv").write_text("\n".join(rows) + "\n")
    tuned = cli("finetune", resnet_path, data, "--dense", "--epochs", "1", "-o", tmp_path / "tuned.pt", "-q")
    assert tuned.code == 0, tuned
    report = cli("report", tmp_path / "tuned.pt", data, "-g", "skin", "--html", tmp_path / "r.html")
    assert report.code == 0, report
    assert "the images it was fine-tuned on" in report.err and "every image (the data has no split column)" in report.err
    assert "(every image: no split column)" in report.out  # the table's header says which images
    header = re.search(r'<p class="meta">(.*?)</p>', (tmp_path / "r.html").read_text()).group(1)
    assert header.startswith("images: ") and "(every image: no split column)" in header
    # a model fine-tuned elsewhere is judged without the warning
    other = cli("report", resnet_path, data, "-g", "skin")
    assert other.code == 0 and "fine-tuned on" not in other.err

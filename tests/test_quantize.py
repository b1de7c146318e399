"""fairgrape quantize and exported files as models: int8 ONNX with a per-group accuracy control,
report/compare on .onnx, TorchScript and sparse files, bad input in one line (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.io.checkpoints import load_checkpoint
from fairgrape_cli.method.quantization import balanced_sample, control_group_drops

from lopsided import make_lopsided_data, save_lopsided, save_stuck

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _on(folder: Path, model: str = "lop.pt") -> tuple:
    """MODEL and the flags quantize reads a lopsided model and its data with."""
    return folder / model, "--trust-checkpoint", "--data", folder / "data", "--groups", "group"


def _metadata(path: Path) -> dict:
    import onnx

    from fairgrape_cli.io.onnx_models import read_metadata

    return read_metadata(onnx.load(str(path)))


@pytest.fixture(scope="module")
def lopsided(tmp_path_factory) -> Path:
    """lop.pt, stuck.pt and their data. Their architectures live in tests/lopsided.py, a module a
    file may not have imported on its own say: every command on them passes --trust-checkpoint."""
    folder = tmp_path_factory.mktemp("lopsided")
    make_lopsided_data(folder / "data")
    save_lopsided(folder / "lop.pt")
    save_stuck(folder / "stuck.pt")
    return folder


# ------------------------------------------------------------------------------------- method


def test_control_returns_the_most_harmful_layer_first_and_stops_within_the_bound():
    # injected effects: quantizing c costs group 1 ten points, b costs it three, a and d nothing
    cost = {"a": np.array([0.0, 0.0]), "b": np.array([0.0, 0.03]), "c": np.array([0.0, 0.10]), "d": np.zeros(2)}
    reference = np.array([0.9, 0.8])
    calls = []

    def evaluate(float_layers):
        calls.append(float_layers)
        return reference - sum(value for name, value in cost.items() if name not in float_layers)

    result = control_group_drops(layers=list(cost), reference=reference, evaluate=evaluate, max_group_drop=0.05)
    assert result.within and result.ranking[:2] == ["c", "b"]
    assert result.float_layers == ["c"]  # c alone brings group 1 to 0.03 <= 0.05
    assert np.allclose(result.final.drops, [0.0, 0.03])
    assert calls[0] == () and len(calls) == 5 and result.evaluations == 5  # all int8, then each layer alone

    tight = control_group_drops(layers=list(cost), reference=reference, evaluate=evaluate, max_group_drop=0.0)
    assert tight.within and tight.float_layers == ["b", "c"]  # graph order, both needed
    assert np.allclose(tight.final.drops, 0.0)


def test_control_reports_failure_when_every_layer_is_back_and_a_group_still_drops():
    def evaluate(float_layers):
        return np.array([0.9, 0.5])  # something outside the weight layers costs group 1

    result = control_group_drops(layers=["a", "b"], reference=np.array([0.9, 0.9]), evaluate=evaluate,
                                 max_group_drop=0.01)  # fmt: skip
    assert not result.within and set(result.float_layers) == {"a", "b"}


def test_balanced_sample_draws_every_group_equally_and_refuses_an_empty_one():
    groups = np.array([0] * 50 + [1] * 8 + [2] * 30)
    rows, per_group = balanced_sample(groups, ["a", "b", "c"], size=60, seed=0, where="split train")
    assert per_group == 8 and np.bincount(groups[rows]).tolist() == [8, 8, 8]  # the smallest group's size
    assert rows == sorted(rows) and rows == balanced_sample(groups, ["a", "b", "c"], size=60, seed=0, where="")[0]
    rows, per_group = balanced_sample(groups, ["a", "b", "c"], size=12, seed=0, where="")
    assert np.bincount(groups[rows]).tolist() == [4, 4, 4]
    with pytest.raises(InputError, match="split train has no images of group d"):
        balanced_sample(groups, ["a", "b", "c", "d"], size=12, seed=0, where="split train")


# ---------------------------------------------------------------------------- the whole command


def test_max_group_drop_returns_the_harmful_layer_and_the_file_records_it(lopsided, cli, tmp_path):
    plain = tmp_path / "plain.int8.onnx"
    result = cli("quantize", *_on(lopsided), "-o", plain, "-q")
    assert result.code == 0, result
    recorded = _metadata(plain)["fairgrape"]["quantization"]
    assert recorded["float_layers"] == [] and recorded["group_drops"]["majority"] == 0
    assert recorded["group_drops"]["minority"] > 0.3  # the lopsided layer, quantized, costs the minority
    assert recorded["calibration"] == {"method": "minmax", "split": "train", "images": 32, "per_group": 16}

    gated = tmp_path / "gated.int8.onnx"
    result = cli("quantize", *_on(lopsided), "-o", gated,
                 "--max-group-drop", "0.01")  # fmt: skip
    assert result.code == 0, result
    assert "left in float: conv2" in result.out
    meta = _metadata(gated)
    recorded = meta["fairgrape"]["quantization"]
    assert recorded["float_layers"] == ["conv2"] and recorded["max_group_drop"] == 0.01
    assert recorded["group_drops"] == {"majority": 0.0, "minority": 0.0}
    assert meta["fairgrape"]["stage"] == "quantize" and meta["fairgrape"]["checkpoint"].endswith("lop.pt")
    assert meta["classes"] == ["no", "yes"] and meta["image_size"] == 8 and meta["std"] == [1.0, 1.0, 1.0]

    # report reads the .onnx without flags (classes, size, normalisation from its metadata)
    report_json = tmp_path / "gated.json"
    result = cli("report", gated, lopsided / "data", "--groups", "group", "--baseline", lopsided / "lop.pt",
                 "--trust-checkpoint", "--json", report_json, "--bootstrap", "0", "-q")  # fmt: skip
    assert result.code == 0, result
    report = json.loads(report_json.read_text())
    assert [row["accuracy"] for row in report["groups"]] == [1.0, 1.0]
    assert report["file"]["format"] == "onnx" and report["file"]["quantization"]["float_layers"] == ["conv2"]
    assert "1 layer(s) left in float (conv2)" in result.out

    plain_json = tmp_path / "plain.json"
    cli("report", plain, lopsided / "data", "--groups", "group", "--baseline", lopsided / "lop.pt",
        "--trust-checkpoint", "--json", plain_json, "--bootstrap", "0", "-q", "--fail-if", "drop_gap>0.1")  # fmt: skip
    result = cli("compare", report_json, plain_json)
    assert result.code == 0, result
    assert "gated onnx int8" in result.out and "plain onnx int8" in result.out


def test_a_report_on_the_int8_file_has_flips_error_types_intervals_and_a_model_card(lopsided, cli, tmp_path):
    import csv
    from collections import Counter

    plain = tmp_path / "plain.int8.onnx"
    result = cli("quantize", *_on(lopsided), "-o", plain, "-q")
    assert result.code == 0, result
    out = {name: tmp_path / name for name in ("r.json", "r.html", "flips.csv", "card.md")}
    result = cli("report", plain, lopsided / "data", "--groups", "group", "--baseline", lopsided / "lop.pt",
                 "--trust-checkpoint", "--json", out["r.json"], "--html", out["r.html"], "--exemplars", out["flips.csv"],
                 "--model-card", out["card.md"], "--intervals", "bootstrap", "--bootstrap", "50",
                 "--fail-if", "drop_gap.lo>0.1", "-q")  # fmt: skip
    assert result.code == 1, result  # onnxruntime's int8 predictions lose the minority: the gate on .lo holds
    report = json.loads(out["r.json"].read_text())
    assert report["file"]["format"] == "onnx" and report["file"]["quantization"]["float_layers"] == []
    assert "bootstrap" in report["intervals"]["method"] and report["bootstrap"]["resamples"] == 50
    rows = list(csv.DictReader(out["flips.csv"].open()))
    counted = Counter((row["group"], row["flip"]) for row in rows)
    by_group = {group["group"]: group for group in report["groups"]}
    for name, group in by_group.items():
        assert (group["flips_lost"], group["flips_gained"]) == (counted[name, "lost"], counted[name, "gained"])
        assert group["drop"] == pytest.approx((group["flips_lost"] - group["flips_gained"]) / group["n"], abs=1e-12)
    assert by_group["minority"]["flips_lost"] > 0 and by_group["majority"]["flips_lost"] == 0
    assert {row["group"] for row in report["error_types"]["groups"]} == {"majority", "minority"}
    page = out["r.html"].read_text()
    assert "file: onnx, int8 weights" in page and page.count('src="data:image/jpeg;base64,') == min(
        by_group["minority"]["flips_lost"], 12)
    card = out["card.md"].read_text()
    assert "- quantization" in card.split("---")[1] and "| layers left in float | none |" in card
    assert "| file format | onnx |" in card and "## Flips" in card


def test_the_fp32_export_judged_against_its_checkpoint_flips_nothing(biased_data, tiny_model_path, cli, tmp_path):
    exported, report_json = tmp_path / "tiny.onnx", tmp_path / "r.json"
    assert cli("export", tiny_model_path, "-o", exported, "-q").code == 0
    result = cli("report", exported, biased_data, "--groups", "group", "--baseline", tiny_model_path,
                 "--json", report_json, "-q")  # fmt: skip
    assert result.code == 0, result
    report = json.loads(report_json.read_text())
    assert all(row["flips_lost"] == row["flips_gained"] == 0 for row in report["groups"])
    assert report["file"] == {"format": "onnx", "bytes": exported.stat().st_size, "quantization": None}
    assert "intervals" in report and "bootstrap" not in report  # score intervals by default


def test_nothing_left_to_return_exits_1_and_writes_nothing(lopsided, cli, tmp_path):
    output = tmp_path / "stuck.int8.onnx"
    result = cli("quantize", *_on(lopsided, "stuck.pt"), "-o", output,
                 "--max-group-drop", "0.05", "-q")  # fmt: skip
    assert result.code == 1, result
    assert "nothing left to return" in result.err and "minority" in result.err and len(result.err.splitlines()) == 1
    assert not output.exists() and not list(tmp_path.glob("*.onnx*"))


def test_report_on_the_fp32_export_gives_the_checkpoints_numbers(biased_data, tiny_model_path, cli, tmp_path):
    exported = tmp_path / "tiny.onnx"
    assert cli("export", tiny_model_path, "-o", exported, "-q").code == 0
    numbers = {}
    for name, model in (("checkpoint", tiny_model_path), ("onnx", exported)):
        out = tmp_path / f"{name}.json"
        result = cli("report", model, biased_data, "--groups", "group", "--json", out, "-q")
        assert result.code == 0, result
        numbers[name] = json.loads(out.read_text())
    for key in ("groups", "overall", "disparity"):
        assert numbers["onnx"][key] == numbers["checkpoint"][key]
    assert numbers["onnx"]["density"] == pytest.approx(numbers["checkpoint"]["density"])


def test_exported_files_are_models_and_baselines(biased_data, tiny_model_path, cli, tmp_path):
    sparse_file, script, onnx_file = tmp_path / "m.sparse.safetensors", tmp_path / "m.torchscript", tmp_path / "m.onnx"
    for output in (sparse_file, script, onnx_file):
        assert cli("export", tiny_model_path, "-o", output, "-q").code == 0
    quantized = tmp_path / "m.int8.onnx"
    result = cli("quantize", onnx_file, "--data", biased_data, "--groups", "group", "-o", quantized, "-q")
    assert result.code == 0, result
    provenance = _metadata(quantized)["fairgrape"]
    assert provenance["source"] == "m.onnx" and provenance["checkpoint"].endswith("tiny.pt")
    for model, baseline in ((quantized, script), (script, onnx_file), (sparse_file, quantized)):
        result = cli("report", model, biased_data, "--groups", "group", "--baseline", baseline, "--bootstrap", "0", "-q")
        assert result.code == 0, result


@pytest.mark.parametrize("stage", ["score", "finetune"])
def test_training_stages_refuse_onnx_in_one_line(biased_data, tiny_model_path, cli, tmp_path, stage):
    exported = tmp_path / "m.onnx"
    assert cli("export", tiny_model_path, "-o", exported, "-q").code == 0
    result = cli(stage, exported, biased_data, "--groups", "group")
    # (finetune warns first that it has no masks)
    assert result.code == 2 and result.err.strip().splitlines()[-1].startswith("error: "), result
    assert "onnxruntime runs but nothing can train or prune" in result.err and "tiny.pt" in result.err


def test_prune_and_export_refuse_onnx(tiny_model_path, cli, tmp_path):
    exported = tmp_path / "m.onnx"
    assert cli("export", tiny_model_path, "-o", exported, "-q").code == 0
    for args in (("prune", exported, "--rate", "0.5", "--method", "magnitude"),
                 ("export", exported, "-o", tmp_path / "again.torchscript")):  # fmt: skip
        result = cli(*args, cwd=tmp_path)
        assert result.code == 2 and "PyTorch" in result.err and len(result.err.strip().splitlines()) == 1, result


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bound", ["1.5", "-0.1"])
def test_max_group_drop_outside_0_1_is_refused(lopsided, cli, bound, tmp_path):
    result = cli("quantize", *_on(lopsided),
                 "--max-group-drop", bound, "-o", tmp_path / "x.onnx")  # fmt: skip
    assert result.code == 2 and "--max-group-drop" in result.err and "[0, 1]" in result.err, result
    assert len(result.err.strip().splitlines()) == 1


def test_calibration_split_without_a_group_is_refused(lopsided, cli, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "images").symlink_to(lopsided / "data" / "images", target_is_directory=True)
    lines = (lopsided / "data" / "labels.csv").read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if not (line.endswith(",train") and ",minority," in line)]
    (data / "labels.csv").write_text("\n".join(kept) + "\n")
    result = cli("quantize", lopsided / "lop.pt", "--trust-checkpoint", "--data", data, "--groups", "group",
                 "-o", tmp_path / "x.onnx")  # fmt: skip
    assert result.code == 2, result
    assert "--calibration-split train has no images of group minority" in result.err


def test_an_onnx_file_that_is_not_an_image_classifier_is_refused(cli, tmp_path, biased_data):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["tokens"], ["logits"])], "not-images",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", 128])],
        [helper.make_tensor_value_info("logits", TensorProto.INT64, ["batch", 128])],
    )  # fmt: skip
    path = tmp_path / "text.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    (tmp_path / "garbage.onnx").write_bytes(b"not a model at all")
    for bad in (path, tmp_path / "garbage.onnx"):
        for args in (("report", bad, biased_data, "--groups", "group"),
                     ("quantize", bad, "--data", biased_data, "--groups", "group", "-o", tmp_path / "q.onnx")):  # fmt: skip
            result = cli(*args)
            assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
            assert str(bad) in result.err
    assert "not a classifier fairgrape can feed" in cli("report", path, biased_data, "--groups", "group").err


def test_quantizing_a_quantized_file_is_refused(lopsided, cli, tmp_path):
    first = tmp_path / "once.onnx"
    assert cli("quantize", *_on(lopsided), "-o", first, "-q").code == 0
    result = cli("quantize", first, "--data", lopsided / "data", "--groups", "group", "-o", tmp_path / "twice.onnx")
    assert result.code == 2 and "quantized already" in result.err, result


def test_missing_onnxruntime_names_the_extra(cli, monkeypatch, tmp_path, lopsided):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    result = cli("quantize", *_on(lopsided), "-o", tmp_path / "q.onnx")
    assert result.code == 2 and "pip install 'fairgrape[onnx]'" in result.err and "onnxruntime" in result.err, result
    (tmp_path / "m.onnx").write_bytes(b"x")
    result = cli("report", tmp_path / "m.onnx", lopsided / "data", "--groups", "group")
    assert result.code == 2 and "pip install 'fairgrape[onnx]'" in result.err, result


# ------------------------------------------------------------------ pruned, slim and fine-tuned


def test_pruned_slim_and_finetuned_checkpoints_quantize(tiny_model_path, biased_data, cli, tmp_path):
    folder = tmp_path
    stages.prune(rate=0.5, model=stages.ModelSource(tiny_model_path), method="magnitude",
                 output=folder / "masks.safetensors", model_output=folder / "pruned.pt")  # fmt: skip
    stages.prune(rate=0.5, model=stages.ModelSource(tiny_model_path), method="magnitude", granularity="channel",
                 output=folder / "channels.safetensors", model_output=folder / "slim.pt")  # fmt: skip
    result = cli("finetune", folder / "pruned.pt", biased_data, "--masks", folder / "masks.safetensors",
                 "--epochs", "1", "-o", folder / "finetuned.pt", "-q")  # fmt: skip
    assert result.code == 0, result
    for name in ("pruned", "slim", "finetuned"):
        output = folder / f"{name}.int8.onnx"
        result = cli("quantize", folder / f"{name}.pt", "--data", biased_data, "--groups", "group", "-o", output, "-q")
        assert result.code == 0, (name, result)
        loaded = load_checkpoint(output)
        assert loaded.kind == "onnx" and loaded.classes == ["no", "yes"] and loaded.image_size == 32
        if name != "slim":  # the masks stay reachable: report shows their settings
            assert _metadata(output)["fairgrape"]["masks"] == "masks.safetensors"
    slim = load_checkpoint(folder / "slim.int8.onnx")
    dense = load_checkpoint(tiny_model_path)
    from fairgrape_cli.io.checkpoints import prunable_parameters

    slim_weights = prunable_parameters(slim.model)
    assert sum(w.numel() for w in slim_weights.values()) < sum(w.numel() for w in prunable_parameters(dense.model).values())


def test_a_plain_state_dict_quantizes_with_arch_and_the_file_names_the_datas_classes(tiny_model_path, biased_data,
                                                                                       cli, tmp_path):  # fmt: skip
    import torch

    from fairgrape_cli.flows.synthetic import TINY_ARCH

    plain = tmp_path / "weights.pt"
    torch.save(torch.load(tiny_model_path, weights_only=True)["state_dict"], plain)
    int8 = tmp_path / "weights.int8.onnx"
    result = cli("quantize", plain, "--arch", TINY_ARCH, "--data", biased_data, "--groups", "group", "-o", int8,
                 "--image-size", "32", "--calibration-size", "16", "-q")  # fmt: skip
    assert result.code == 0, result
    meta = _metadata(int8)
    assert meta["classes"] == ["no", "yes"] and meta["arch"] == TINY_ARCH  # the data's: the file needs no flags
    assert load_checkpoint(int8).classes == ["no", "yes"]


# ----------------------------------------------------------------------------------- in a run


def test_a_run_ends_with_a_gated_int8_file_and_a_quantize_change_reruns_it_alone(tiny_model_path, biased_data, cli,
                                                                                   tmp_path):  # fmt: skip
    from tiny_runs import QUICK, run_folder

    config = run_folder(tmp_path, "run", tiny_model_path, biased_data,
                        **{**QUICK, "report__bootstrap": 0, "quantize__max_group_drop": 0.05,
                           "quantize__calibration_size": 16})  # fmt: skip
    result = cli("run", config)
    assert result.code == 0, result
    int8 = config.parent / "run" / "final.int8.onnx"
    assert int8.is_file() and f"int8 model: {int8}" in result.err.replace("\n", "")
    assert "per-group accuracy, float vs int8" in result.out and "majority" in result.out
    recorded = _metadata(int8)["fairgrape"]
    assert recorded["stage"] == "quantize" and recorded["source"] == "final.pt"
    assert recorded["quantization"]["max_group_drop"] == 0.05
    assert all(drop <= 0.05 + 1e-9 for drop in recorded["quantization"]["group_drops"].values())
    report = json.loads((config.parent / "run" / "report.json").read_text())
    assert report["model"].endswith("final.pt") and "file" not in report  # the run's report judges final.pt

    again = cli("run", config, "--set", "quantize.calibration=entropy", "-q")
    assert again.code == 0, again
    state = json.loads((config.parent / "run" / "run-state.json").read_text())["stages"]
    assert state["quantize"]["result"]["calibration"]["method"] == "entropy"
    from fairgrape_cli.flows.config import load_config
    from fairgrape_cli.flows.pipeline import run_schedule

    rerun = run_schedule(load_config(config, overrides=["quantize.calibration=entropy"]))
    assert rerun.ran == [] and rerun.quantized.output == int8 and rerun.quantized.groups == ["majority", "minority"]
    changed = run_schedule(load_config(config, overrides=["quantize.calibration=minmax", "quantize.calibration_size=32"]))
    assert changed.ran == ["quantize"], changed.ran


def test_the_python_api_quantizes_and_gates(lopsided, tmp_path):
    import fairgrape
    from fairgrape_cli.stages.quantize import QuantizationFailed

    summary = fairgrape.quantize(model=lopsided / "lop.pt", trust_checkpoint=True, data=lopsided / "data",
                                 groups="group", output=tmp_path / "api.int8.onnx", max_group_drop=0.01)  # fmt: skip
    assert isinstance(summary, fairgrape.QuantizeSummary) and summary.output == tmp_path / "api.int8.onnx"
    assert summary.float_layers == ["conv2"] and summary.groups == ["majority", "minority"]
    assert summary.drops == [0.0, 0.0] and summary.output.stat().st_size == summary.bytes
    with pytest.raises(QuantizationFailed, match="nothing left to return"):
        fairgrape.quantize(model=lopsided / "stuck.pt", trust_checkpoint=True, data=lopsided / "data", groups="group",
                           output=tmp_path / "stuck.int8.onnx", max_group_drop=0.05)  # fmt: skip
    assert not (tmp_path / "stuck.int8.onnx").exists()


# ------------------------------------------------------------------ timm and Hugging Face models


@pytest.mark.parametrize("name", ["timm-vit", "hf-vit", pytest.param("timm-convnet", marks=pytest.mark.slow)])
def test_library_models_quantize_and_their_int8_file_reports_without_flags(name, biased_data, cli, tmp_path):
    pytest.importorskip("timm")
    pytest.importorskip("transformers")
    import zoo_models as zoo

    made = {
        "timm-vit": lambda: (zoo.timm_state_dict_file(tmp_path / "vit_state.pt"),
                             ["--arch", f"timm:{zoo.TIMM_VIT}", "--arch-args", "img_size=32"]),
        "hf-vit": lambda: (zoo.hf_vit_folder(tmp_path / "hf-vit"), []),
        "timm-convnet": lambda: (zoo.timm_training_checkpoint(tmp_path / "checkpoint-3.pth.tar"), []),
    }  # fmt: skip
    model, flags = made[name]()
    int8, report_json = tmp_path / "model.int8.onnx", tmp_path / "r.json"
    result = cli("quantize", model, *flags, "--data", biased_data, "--groups", "group", "-o", int8,
                 "--calibration-size", "16", "-q")  # fmt: skip
    assert result.code == 0, result
    meta = _metadata(int8)
    assert meta["classes"] == ["no", "yes"] and meta["image_size"] == 32
    assert meta["arch"] == {"timm-vit": "timm:test_vit", "hf-vit": "hf:ViTForImageClassification",
                            "timm-convnet": "timm:test_resnet"}[name]  # fmt: skip
    if name == "timm-vit":  # the constructor arguments travel with the file
        assert meta["arch_args"] == {"img_size": 32}
    assert meta["fairgrape"]["checkpoint"] == model.name and meta["fairgrape"]["source_sha256"]
    # the int8 file needs no flags; its baseline, the library model, the flags it always needed
    result = cli("report", int8, biased_data, "--groups", "group", "--split", "val", "--baseline", model, *flags,
                 "--json", report_json, "-q")  # fmt: skip
    assert result.code == 0, result
    report = json.loads(report_json.read_text())
    assert report["file"]["format"] == "onnx" and report["file"]["quantization"]["weights"] == "int8"
    recorded = meta["fairgrape"]["quantization"]
    for row in report["groups"]:  # the file's own record: the same images, the same runtime
        assert row["accuracy"] == pytest.approx(recorded["accuracy"][row["group"]])
        assert row["flips_lost"] is not None
    if name != "timm-convnet":  # timm zero-initialises each block's last BatchNorm: folded, its conv is zeros
        assert 0.9 < report["density"] <= 1.0  # dense: only int8 rounding zeroes weights

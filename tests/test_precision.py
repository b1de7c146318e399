"""--precision: bf16 autocast for fine-tuning and evaluation on CUDA, refused on the CPU."""

from __future__ import annotations

import pytest
import torch
import yaml

from fairgrape_cli.devices import autocast_for, check_precision
from fairgrape_cli.errors import InputError
from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.flows.synthetic import TinyCNN
from fairgrape_cli.io.checkpoints import prunable_parameters
from fairgrape_cli.method.training import train_masked


def test_bf16_on_the_cpu_is_refused_naming_the_flag(cli, tiny_model_path, biased_data, tmp_path):
    for command in (["report", tiny_model_path, biased_data, "--groups", "group"],
                    ["finetune", tiny_model_path, biased_data, "--output", tmp_path / "out.pt"]):  # fmt: skip
        result = cli(*command, "--precision", "bf16", "--device", "cpu", "-q")
        assert result.code == 2 and "--precision bf16 needs a CUDA device" in result.err, result
        assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()
    unknown = cli("report", tiny_model_path, biased_data, "--groups", "group", "--precision", "fp16", "-q")
    assert unknown.code == 2 and "--precision fp16: choose one of fp32, bf16" in unknown.err


def test_a_run_config_asking_bf16_on_the_cpu_fails_before_any_stage(tmp_path, tiny_model_path, biased_data):
    (tmp_path / "model.pt").write_bytes(tiny_model_path.read_bytes())
    config = {"model": "model.pt", "data": str(biased_data), "groups": "group", "rate": 0.5,
              "device": "cpu", "precision": "bf16", "output": "run"}  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match="config.yaml: precision bf16 needs a CUDA device"):
        run_schedule(load_config(tmp_path / "config.yaml"))
    assert not (tmp_path / "run" / "run-state.json").exists()


def test_training_under_bf16_autocast_runs_in_bf16_and_keeps_float32_weights_and_masks():
    """The method's autocast hook, exercised with CPU autocast (the stages allow bf16 on CUDA only)."""
    torch.manual_seed(0)
    model = TinyCNN(num_classes=2)
    weights = prunable_parameters(model)
    masks = {name: torch.rand(weight.shape) < 0.5 for name, weight in weights.items()}
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    targets = torch.arange(12) % 2
    seen = []
    model.features[0].register_forward_hook(lambda module, args, output: seen.append(output.dtype))

    result = train_masked(
        model=model, weights=weights, masks=masks,
        train_batches=lambda epoch: [(images[:6], torch.arange(6)), (images[6:], torch.arange(6, 12))],
        validation=None, prepare=lambda batch: batch.float() / 255, targets=targets,
        epochs=2, lr=1e-2, autocast=autocast_for("bf16", torch.device("cpu")),
    )  # fmt: skip
    assert seen and set(seen) == {torch.bfloat16}
    assert all(torch.isfinite(torch.tensor(record.train_loss)) for record in result.history)
    for name, weight in weights.items():
        assert weight.dtype == torch.float32
        assert (weight[~masks[name]] == 0).all(), name
    check_precision("bf16", torch.device("cuda"))  # allowed where it is meant to run

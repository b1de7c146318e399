"""The rule that keeps a fine-tuning epoch, and that the kept epoch's weights are the ones written."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.method.kept_epoch import KEEP_EPOCH_RULES, KeptEpoch, undominated

# (accuracy, worst group) per epoch: epoch 3 buys 4 worst-group points with 10 overall points
SCORES = [(0.80, 0.50), (0.90, 0.60), (0.89, 0.62), (0.80, 0.66)]


@pytest.mark.parametrize("rule, within, expected", [
    ("last", 0.01, 3), ("accuracy", 0.01, 1), ("worst-group", 0.01, 3),
    ("worst-group-near-best", 0.01, 2), ("worst-group-near-best", 0.0, 1), ("worst-group-near-best", 0.1, 3),
])  # fmt: skip
def test_each_rule_on_a_table(rule, within, expected):
    assert KeptEpoch(rule, within).choose(SCORES, weighs_groups=True) == expected


def test_auto_is_accuracy_for_plain_fine_tuning_and_worst_group_for_group_objectives():
    assert KeptEpoch().choose(SCORES, weighs_groups=False) == 1
    assert KeptEpoch().choose(SCORES, weighs_groups=True) == 3
    assert KeptEpoch("accuracy").choose([(0.5, 0.1), (0.5, 0.4)], weighs_groups=False) == 0  # ties: the first
    with pytest.raises(InputError, match="--keep-epoch best"):
        KeptEpoch("best")
    with pytest.raises(InputError, match="--keep-within"):
        KeptEpoch("worst-group-near-best", 2.0)


scores = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=8)


@given(scores, st.floats(0, 0.2))
def test_every_rule_keeps_an_epoch_whose_weights_training_kept(history, within):
    """Training keeps the weights of the undominated epochs only (and has the last one's)."""
    kept = undominated(history) | {len(history) - 1}
    for rule in KEEP_EPOCH_RULES:
        assert KeptEpoch(rule, within).choose(history, weighs_groups=True) in kept


def test_the_written_model_is_the_kept_epoch(tmp_path, tiny_model_path, biased_data):
    stages.prune(model=stages.ModelSource(tiny_model_path), method="magnitude", rate=0.5,
                 output=tmp_path / "masks.safetensors")  # fmt: skip
    results = {}
    for rule in ("last", "accuracy", "worst-group-near-best"):
        summary = stages.finetune(
            model=stages.ModelSource(tmp_path / "pruned.pt"),
            data=DataSpec(root=biased_data, groups="group"),
            masks=tmp_path / "masks.safetensors",
            output=tmp_path / f"{rule}.pt",
            loading=stages.Loading(batch_size=16, workers=0),
            epochs=3,
            lr=3e-2,
            objective="balanced",
            kept_epoch=KeptEpoch(rule, 0.05),
        )
        history = [(r["val_accuracy"], r["val_worst_group_accuracy"]) for r in summary.history]
        assert summary.best_epoch == 1 + KeptEpoch(rule, 0.05).choose(history, weighs_groups=True)
        results[rule] = summary
        saved = torch.load(tmp_path / f"{rule}.pt", weights_only=True)
        assert saved["fairgrape"]["kept_epoch"]["rule"] == rule
    # the same seed trains the same epochs, so each file holds the weights of its rule's epoch:
    # evaluating the written model gives that epoch's validation accuracy
    for rule, summary in results.items():
        report = stages.report(model=stages.ModelSource(tmp_path / f"{rule}.pt"),
                               data=DataSpec(root=biased_data, groups="group", split="val"),
                               loading=stages.Loading(batch_size=32, workers=0)).report  # fmt: skip
        expected = summary.history[summary.best_epoch - 1]["val_accuracy"]
        assert report.overall.accuracy == pytest.approx(expected, abs=1e-9), rule

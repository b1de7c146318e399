"""Fine-tuning objectives: how groups weigh in each epoch and in each batch's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.flows.config import SCHEMA
from fairgrape_cli.io.artifacts import read_masks
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.method.objectives import (
    OBJECTIVES,
    InverseSizeWeights,
    ObjectiveOptions,
    OnlineGroupDRO,
    TrainingRows,
)

# 90 rows of group 0, 10 of group 1; classes alternate, so each group has both classes
ROWS = TrainingRows(groups=np.array([0] * 90 + [1] * 10), num_groups=2, classes=np.arange(100) % 2)


def per_sample(losses: torch.Tensor):
    """A batch's loss as the training loop hands it to a rule: per sample, or their mean."""
    return lambda reduction: losses if reduction == "none" else losses.mean()


def _epoch(name: str, options: ObjectiveOptions = ObjectiveOptions(), seed: int = 0) -> np.ndarray:
    return OBJECTIVES.choose(name).epoch_rows(ROWS, options, torch.Generator().manual_seed(seed))


def test_erm_draws_every_row_once():
    assert sorted(_epoch("erm").tolist()) == list(range(100))


def test_balanced_sampling_gives_every_group_the_same_rows_per_epoch():
    epoch = _epoch("balanced")
    assert len(epoch) == len(ROWS)
    per_group = np.bincount(ROWS.groups[epoch], minlength=2)
    assert per_group.tolist() == [50, 50]
    minority = np.bincount(epoch[ROWS.groups[epoch] == 1], minlength=100)[90:]
    assert minority.tolist() == [5] * 10  # drawn in full passes: every row equally often
    majority = np.bincount(epoch[ROWS.groups[epoch] == 0], minlength=90)
    assert majority.max() == 1  # the large group is subsampled without repeats
    assert not np.array_equal(epoch, _epoch("balanced", seed=1))


def test_balanced_by_cells_weighs_every_class_and_group_pair_the_same():
    epoch = _epoch("balanced", ObjectiveOptions(balance_unit="cell"))
    cells = ROWS.classes[epoch] * 2 + ROWS.groups[epoch]
    assert np.bincount(cells, minlength=4).tolist() == [25, 25, 25, 25]


def test_balanced_by_weights_keeps_rows_and_weighs_groups_equally():
    options = ObjectiveOptions(balance_by="weights")
    assert sorted(_epoch("balanced", options).tolist()) == list(range(100))
    rule = InverseSizeWeights(ROWS, options, torch.device("cpu"))
    weights = rule.row_weights
    assert float(weights[:90].sum()) == pytest.approx(float(weights[90:].sum()))
    assert float(weights.mean()) == pytest.approx(1.0)
    losses = torch.arange(100, dtype=torch.float32)
    rows = torch.arange(100)
    assert float(rule(per_sample(losses), rows)) == pytest.approx(float((losses * weights).mean()))
    sampling = InverseSizeWeights(ROWS, ObjectiveOptions(), torch.device("cpu"))
    assert float(sampling(per_sample(losses), rows)) == pytest.approx(float(losses.mean()))  # already balanced


def test_group_dro_moves_weight_toward_the_group_with_the_larger_loss():
    rule = OnlineGroupDRO(ROWS, ObjectiveOptions(dro_step=0.5), torch.device("cpu"))
    assert rule.weights() == [0.5, 0.5]
    rows = torch.tensor([0, 1, 2, 95, 96])  # three of group 0, two of group 1
    losses = torch.tensor([0.1, 0.2, 0.3, 1.0, 2.0], requires_grad=True)
    loss = rule(per_sample(losses), rows)
    q = rule.weights()
    assert q[1] > 0.5 > q[0] and sum(q) == pytest.approx(1.0)
    # the loss is the groups' mean losses weighted by the updated q
    assert float(loss) == pytest.approx(q[0] * 0.2 + q[1] * 1.5, rel=1e-5)
    loss.backward()
    assert losses.grad[3] == pytest.approx(q[1] / 2, rel=1e-5)  # each of group 1's two rows
    for _ in range(5):
        rule(per_sample(losses.detach()), rows)
    assert rule.weights()[1] > q[1]  # keeps moving while group 1 is worse off
    expected = 0.5 * np.exp(0.5 * 1.5 * 6) / (0.5 * np.exp(0.5 * 1.5 * 6) + 0.5 * np.exp(0.5 * 0.2 * 6))
    assert rule.weights()[1] == pytest.approx(expected, rel=1e-5)


def test_group_dro_leaves_a_group_absent_from_the_batch_alone():
    rule = OnlineGroupDRO(ROWS, ObjectiveOptions(dro_step=1.0), torch.device("cpu"))
    rule(per_sample(torch.tensor([0.0, 0.0])), torch.tensor([0, 1]))  # only group 0, zero loss
    assert rule.weights() == [0.5, 0.5]


def test_run_configs_offer_every_objective():
    assert set(SCHEMA["finetune"]["objective"].choices) == set(OBJECTIVES)
    assert SCHEMA["final_finetune"]["objective"].choices == SCHEMA["finetune"]["objective"].choices


@pytest.fixture
def magnitude_masks(tmp_path, tiny_model_path):
    stages.prune(model=stages.ModelSource(tiny_model_path), method="magnitude", rate=0.5,
                 output=tmp_path / "masks.safetensors")  # fmt: skip
    return tmp_path


def test_finetune_with_an_objective_keeps_the_epoch_of_best_worst_group_accuracy(magnitude_masks, biased_data):
    masks = read_masks(magnitude_masks / "masks.safetensors").tensors
    summary = stages.finetune(
        model=stages.ModelSource(magnitude_masks / "pruned.pt"),
        data=DataSpec(root=biased_data, groups="group"),
        masks=magnitude_masks / "masks.safetensors",
        output=magnitude_masks / "finetuned.pt",
        loading=stages.Loading(batch_size=16, workers=0),
        epochs=3,
        lr=1e-2,
        objective="group-dro",
        objective_options=ObjectiveOptions(dro_step=1.0),
    )
    history = summary.history
    scores = [(record["val_worst_group_accuracy"], record["val_accuracy"]) for record in history]
    assert summary.best_epoch == 1 + scores.index(max(scores))
    assert all(len(record["group_weights"]) == 2 for record in history)
    assert summary.groups == ["majority", "minority"]
    saved = torch.load(magnitude_masks / "finetuned.pt", weights_only=True)
    assert saved["fairgrape"]["objective"] == "group-dro"
    assert saved["fairgrape"]["objective_options"] == {"dro_step": 1.0}
    for name, weight in saved["state_dict"].items():  # masks still hold exactly
        if name in masks:
            assert (weight[~masks[name]] == 0).all(), name


def test_an_objective_without_groups_is_refused_naming_the_flag(magnitude_masks, biased_data, cli):
    # magnitude masks record no groups, and none were given
    result = cli("finetune", magnitude_masks / "pruned.pt", biased_data, "--masks",
                 magnitude_masks / "masks.safetensors", "--objective", "balanced", "-q")  # fmt: skip
    assert result.code == 2 and "--groups" in result.err and len(result.err.strip().splitlines()) == 1
    assert "has columns" in result.err and "--groups group" in result.err  # the data's columns, named
    unknown = cli("finetune", magnitude_masks / "pruned.pt", biased_data, "--objective", "fair", "-q")
    assert unknown.code == 2 and "--objective fair" in unknown.err
    with pytest.raises(InputError, match="--dro-step"):
        ObjectiveOptions(dro_step=0)


def test_balanced_upsampling_keeps_every_row_and_repeats_the_small_group_up_to_the_largest():
    epoch = _epoch("balanced", ObjectiveOptions(balance_by="upsample"))
    assert len(epoch) == 2 * 90  # two groups, each as many rows as the largest
    counts = np.bincount(epoch, minlength=100)
    assert counts[:90].tolist() == [1] * 90  # every majority row, once
    assert counts[90:].tolist() == [9] * 10  # the minority drawn in full passes: 9 each
    assert not np.array_equal(epoch, _epoch("balanced", ObjectiveOptions(balance_by="upsample"), seed=1))
    cells = _epoch("balanced", ObjectiveOptions(balance_by="upsample", balance_unit="cell"))
    assert np.bincount(ROWS.classes[cells] * 2 + ROWS.groups[cells], minlength=4).tolist() == [45] * 4
    with pytest.raises(InputError, match="balance by 'oversample'"):
        ObjectiveOptions(balance_by="oversample")

"""The constrained objective: one Lagrange multiplier per group holds "no worse than the dense model"."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.method.objectives import Comparison, LagrangianConstraints, ObjectiveOptions, TrainingRows

ROWS = TrainingRows(groups=np.array([0, 0, 0, 1, 1]), num_groups=2, classes=np.zeros(5, int))
CPU = torch.device("cpu")


def _step(rule, losses, reference_losses, right, reference_right):
    losses = torch.tensor(losses, requires_grad=True)
    compared = Comparison(losses, torch.tensor(right), torch.tensor(reference_losses), torch.tensor(reference_right))
    loss = rule(lambda reduction: losses if reduction == "none" else losses.mean(), torch.arange(5), compared)
    return loss, losses


def test_multipliers_grow_for_the_group_worse_than_the_bound_and_stay_zero_for_the_other():
    rule = LagrangianConstraints(ROWS, ObjectiveOptions(constraint_metric="loss", constraint_bound=0.1,
                                                        multiplier_lr=0.5), CPU)  # fmt: skip
    assert rule.weights() == [0.0, 0.0]
    # group 0 as good as the dense model; group 1 worse by 1.0 in loss
    loss, losses = _step(rule, [0.2, 0.2, 0.2, 1.5, 1.5], [0.2, 0.2, 0.2, 0.5, 0.5], [1.0] * 5, [1.0] * 5)
    assert float(loss.detach()) == pytest.approx(np.mean([0.2, 0.2, 0.2, 1.5, 1.5]))  # multipliers were 0
    assert rule.weights() == pytest.approx([0.0, 0.5 * (1.0 - 0.1)])
    loss, losses = _step(rule, [0.2, 0.2, 0.2, 1.5, 1.5], [0.2, 0.2, 0.2, 0.5, 0.5], [1.0] * 5, [1.0] * 5)
    # the Lagrangian: the mean loss plus lambda_1 times group 1's mean loss
    assert float(loss.detach()) == pytest.approx(0.72 + 0.45 * 1.5)
    loss.backward()
    assert losses.grad[3].item() == pytest.approx(1 / 5 + 0.45 / 2)
    assert losses.grad[0].item() == pytest.approx(1 / 5)
    _step(rule, [0.2] * 5, [0.2] * 5, [1.0] * 5, [1.0] * 5)  # group 1 now within the bound by 0.1
    assert rule.weights() == pytest.approx([0.0, 0.9 - 0.5 * 0.1])
    for _ in range(20):  # ... and its multiplier shrinks back to 0, never below
        _step(rule, [0.2] * 5, [0.2] * 5, [1.0] * 5, [1.0] * 5)
    assert rule.weights() == [0.0, 0.0]


def test_the_accuracy_bound_reads_right_and_wrong_not_the_loss():
    rule = LagrangianConstraints(ROWS, ObjectiveOptions(constraint_bound=0.02, multiplier_lr=1.0), CPU)
    # equal losses, but group 1 lost half its accuracy against the dense model
    _step(rule, [0.3] * 5, [0.3] * 5, [1.0, 1.0, 1.0, 0.0, 1.0], [1.0] * 5)
    assert rule.weights() == pytest.approx([0.0, 0.5 - 0.02])


def test_the_excess_drop_form_bounds_a_group_drop_beyond_all_rows_not_the_drop_itself():
    excess = ObjectiveOptions(constraint_form="excess-drop", constraint_bound=0.02, multiplier_lr=1.0)
    # each group, and so all the rows, lost half its accuracy: the drop form binds, the excess form does not
    equal_drops = ([0.3] * 5, [0.3] * 5, [1.0, 0.0, 0.5, 0.0, 1.0], [1.0] * 5)
    rule = LagrangianConstraints(ROWS, excess, CPU)
    _step(rule, *equal_drops)
    assert rule.weights() == pytest.approx([0.0, 0.0])
    drop = LagrangianConstraints(ROWS, ObjectiveOptions(constraint_bound=0.02, multiplier_lr=1.0), CPU)
    _step(drop, *equal_drops)
    assert drop.weights() == pytest.approx([0.48, 0.48])
    # group 1 dropped 0.5, all rows 0.2: its excess is 0.3, group 0's -0.2
    rule = LagrangianConstraints(ROWS, excess, CPU)
    _step(rule, [0.3] * 5, [0.3] * 5, [1.0, 1.0, 1.0, 0.0, 1.0], [1.0] * 5)
    assert rule.weights() == pytest.approx([0.0, 0.3 - 0.02])
    loss, losses = _step(rule, [0.2, 0.2, 0.2, 1.0, 1.0], [0.2] * 5, [1.0] * 5, [1.0] * 5)
    # the proxy of group 1's excess is its mean loss minus the mean loss of the step's rows
    assert float(loss.detach()) == pytest.approx(0.52 + 0.28 * (1.0 - 0.52))
    loss.backward()
    assert losses.grad[3].item() == pytest.approx(1 / 5 + 0.28 * (1 / 2 - 1 / 5))
    assert losses.grad[0].item() == pytest.approx(1 / 5 - 0.28 / 5)


def test_a_group_absent_from_the_step_keeps_its_multiplier():
    rule = LagrangianConstraints(ROWS, ObjectiveOptions(constraint_metric="loss", constraint_bound=0.0), CPU)
    rule.multipliers[1] = 2.0
    losses = torch.tensor([0.1, 0.1])
    compared = Comparison(losses, torch.ones(2), torch.zeros(2), torch.ones(2))
    rule(lambda reduction: losses if reduction == "none" else losses.mean(), torch.tensor([0, 1]), compared)
    assert rule.weights()[1] == 2.0


@pytest.mark.parametrize("options", [dict(constraint_bound=-0.1), dict(constraint_bound=1.5),
                                     dict(constraint_metric="f1"), dict(multiplier_lr=0),
                                     dict(constraint_form="ratio")])  # fmt: skip
def test_settings_outside_their_range_are_refused(options):
    with pytest.raises(InputError, match="--constraint-|--multiplier-lr"):
        ObjectiveOptions(**options)


@pytest.mark.parametrize("objective", ["constrained", "balanced-constrained"])
def test_finetune_constrained_compares_with_the_dense_model_and_records_the_multipliers(
    objective, tmp_path, tiny_model_path, biased_data
):
    stages.prune(model=stages.ModelSource(tiny_model_path), method="magnitude", rate=0.8,
                 output=tmp_path / "masks.safetensors")  # fmt: skip
    summary = stages.finetune(
        model=stages.ModelSource(tmp_path / "pruned.pt"),
        data=DataSpec(root=biased_data, groups="group"),
        masks=tmp_path / "masks.safetensors",
        output=tmp_path / "constrained.pt",
        loading=stages.Loading(batch_size=16, workers=0),
        epochs=2,
        lr=1e-2,
        objective=objective,
        objective_options=ObjectiveOptions(constraint_metric="loss", constraint_bound=0.0, multiplier_lr=1.0,
                                           balance_by="upsample"),  # fmt: skip
    )
    assert summary.teacher is not None and summary.teacher.samefile(tiny_model_path)
    multipliers = [record["group_weights"] for record in summary.history]
    assert all(len(m) == 2 and min(m) >= 0 for m in multipliers)

    with open(biased_data / "labels.csv") as rows:
        train = [row["group"] for row in csv.DictReader(rows) if row["split"] == "train"]
    sizes = [train.count(group) for group in set(train)]
    if objective == "constrained":  # every row once; 80% pruned: some group is worse than the dense model
        assert summary.rows_per_epoch == len(train) and max(max(m) for m in multipliers) > 0
    else:  # upsampled: every group as many rows as the largest
        assert summary.rows_per_epoch == len(sizes) * max(sizes) > len(train)
    saved = torch.load(tmp_path / "constrained.pt", weights_only=True)["fairgrape"]
    upsampled = {"balance_unit": "group", "balance_by": "upsample"} if objective == "balanced-constrained" else {}
    assert saved["objective_options"] == {
        **upsampled, "constraint_bound": 0.0, "constraint_metric": "loss", "constraint_form": "drop",
        "multiplier_lr": 1.0,
    }


def test_balanced_constrained_adds_the_multipliers_to_the_balanced_weighted_loss():
    from fairgrape_cli.method.objectives import OBJECTIVES

    chosen = OBJECTIVES.choose("balanced-constrained")
    options = ObjectiveOptions(balance_by="weights", constraint_metric="loss", constraint_bound=0.0, multiplier_lr=1.0)
    rule = chosen.loss_rule(ROWS, options, CPU)
    # group 1 (2 of 5 rows) weighs 5 / (2 * 2) per row, group 0 5 / (2 * 3): each group half the loss
    loss, _ = _step(rule, [0.2, 0.2, 0.2, 1.0, 1.0], [0.2] * 5, [1.0] * 5, [1.0] * 5)
    assert float(loss.detach()) == pytest.approx(0.5 * 0.2 + 0.5 * 1.0)
    assert rule.weights() == pytest.approx([0.0, 0.8])  # group 1 worse than the dense model by 0.8
    loss, _ = _step(rule, [0.2, 0.2, 0.2, 1.0, 1.0], [0.2] * 5, [1.0] * 5, [1.0] * 5)
    assert float(loss.detach()) == pytest.approx(0.6 + 0.8 * 1.0)
    assert chosen.needs_teacher and chosen.epoch_rows is OBJECTIVES["balanced"].epoch_rows


def test_balanced_constrained_upsamples_its_epochs():
    from fairgrape_cli.method.objectives import OBJECTIVES

    rows = OBJECTIVES["balanced-constrained"].epoch_rows(ROWS, ObjectiveOptions(balance_by="upsample"), torch.Generator().manual_seed(0))
    assert sorted(ROWS.groups[rows].tolist()) == [0, 0, 0, 1, 1, 1]  # every row, group 1 repeated up to 3
    assert set(rows[ROWS.groups[rows] == 0].tolist()) == {0, 1, 2}


def test_finetune_takes_the_constraint_form_as_a_flag_and_records_it(tmp_path, tiny_model_path, biased_data, cli):
    stages.prune(model=stages.ModelSource(tiny_model_path), method="magnitude", rate=0.8,
                 output=tmp_path / "masks.safetensors")  # fmt: skip
    result = cli("finetune", tmp_path / "pruned.pt", biased_data, "--masks", tmp_path / "masks.safetensors",
                 "--groups", "group", "--objective", "constrained", "--constraint-form", "excess-drop",
                 "--epochs", "1", "--batch-size", "16", "--workers", "0", "-o", tmp_path / "tuned.pt", "-q")  # fmt: skip
    assert result.code == 0, result.err
    saved = torch.load(tmp_path / "tuned.pt", weights_only=True)["fairgrape"]
    assert saved["objective_options"]["constraint_form"] == "excess-drop"
    refused = cli("finetune", tmp_path / "pruned.pt", biased_data, "--masks", tmp_path / "masks.safetensors",
                  "--objective", "constrained", "--constraint-form", "ratio", "-o", tmp_path / "no.pt", "-q")
    assert refused.code == 2 and "--constraint-form ratio" in refused.err and not (tmp_path / "no.pt").exists()

"""Distillation from the dense model: the loss, the teacher a fine-tuning learns from, refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fairgrape_cli import stages
from fairgrape_cli.errors import InputError
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.method.distillation import Distillation, distillation_losses, mixed_losses

from conftest import save_native


def test_single_label_distillation_is_the_softened_kl_times_t_squared():
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    t = 3.0
    p, q = F.softmax(teacher / t, 1), F.softmax(student / t, 1)
    by_hand = (p * (p.log() - q.log())).sum(1) * t * t
    torch.testing.assert_close(distillation_losses(student, teacher, temperature=t, multi_label=False), by_hand)
    same = distillation_losses(teacher, teacher, temperature=t, multi_label=False)
    torch.testing.assert_close(same, torch.zeros(5), atol=1e-6, rtol=0)


def test_multi_label_distillation_is_each_attributes_bernoulli_kl_averaged():
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    t = 2.0
    p, q = torch.sigmoid(teacher / t), torch.sigmoid(student / t)
    per_attribute = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
    torch.testing.assert_close(
        distillation_losses(student, teacher, temperature=t, multi_label=True), per_attribute.mean(1) * t * t
    )


def test_a_step_on_the_distillation_loss_moves_the_student_toward_the_teacher():
    teacher = torch.tensor([[3.0, -1.0, 0.5]])
    student = torch.zeros(1, 3, requires_grad=True)
    before = distillation_losses(student, teacher, temperature=2.0, multi_label=False)
    before.sum().backward()
    moved = (student - 0.5 * student.grad).detach()
    after = distillation_losses(moved, teacher, temperature=2.0, multi_label=False)
    assert float(after) < float(before.detach())
    assert int(moved.argmax()) == int(teacher.argmax())
    mixed = mixed_losses(torch.tensor([1.0]), torch.tensor([3.0]), 0.25)
    assert float(mixed) == pytest.approx(0.75 * 1.0 + 0.25 * 3.0)


@pytest.mark.parametrize("weight, temperature", [(-0.1, 4.0), (1.5, 4.0), (0.5, 0.0)])
def test_settings_outside_their_range_are_refused(weight, temperature):
    with pytest.raises(InputError, match="--distill-"):
        Distillation(weight, temperature)


@pytest.fixture
def masks_folder(tmp_path, tiny_model_path):
    stages.prune(model=stages.ModelSource(tiny_model_path), method="magnitude", rate=0.5,
                 output=tmp_path / "masks.safetensors")  # fmt: skip
    return tmp_path


def _finetune(folder, data, **settings):
    return stages.finetune(
        model=stages.ModelSource(folder / "pruned.pt"),
        data=DataSpec(root=data, groups="group"),
        masks=folder / "masks.safetensors",
        output=folder / "distilled.pt",
        loading=stages.Loading(batch_size=16, workers=0),
        epochs=1,
        lr=1e-2,
        **settings,
    )


def test_the_teacher_defaults_to_the_model_the_masks_were_pruned_from(masks_folder, biased_data, tiny_model_path):
    summary = _finetune(masks_folder, biased_data, distillation=Distillation(0.5, 2.0))
    assert summary.teacher is not None and summary.teacher.samefile(tiny_model_path)
    saved = torch.load(masks_folder / "distilled.pt", weights_only=True)["fairgrape"]
    assert saved["distillation"] == {"weight": 0.5, "temperature": 2.0}
    assert saved["teacher_sha256"] == stages.ModelSource(tiny_model_path).load().sha256


def test_distillation_changes_what_is_learned(masks_folder, biased_data):
    plain = _finetune(masks_folder, biased_data)
    (masks_folder / "distilled.pt").rename(masks_folder / "plain.pt")
    _finetune(masks_folder, biased_data, distillation=Distillation(1.0, 4.0))
    first = torch.load(masks_folder / "plain.pt", weights_only=True)["state_dict"]
    second = torch.load(masks_folder / "distilled.pt", weights_only=True)["state_dict"]
    assert plain.teacher is None
    assert any(not torch.equal(first[name], second[name]) for name in first)


def test_a_teacher_with_other_classes_is_refused_before_training(masks_folder, biased_data, cli):
    from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN

    other = save_native(masks_folder / "other.pt", TinyCNN(num_classes=2), TINY_ARCH, classes=("cat", "dog"))
    result = cli("finetune", masks_folder / "pruned.pt", biased_data, "--masks", masks_folder / "masks.safetensors",
                 "--distill-weight", "0.5", "--teacher", other, "-o", masks_folder / "out.pt", "-q")  # fmt: skip
    assert result.code == 2 and "teacher" in result.err and "cat, dog" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (masks_folder / "out.pt").exists()
    wider = save_native(masks_folder / "wider.pt", TinyCNN(num_classes=3), TINY_ARCH, classes=("a", "b", "c"))
    result = cli("finetune", masks_folder / "pruned.pt", biased_data, "--masks", masks_folder / "masks.safetensors",
                 "--distill-weight", "0.5", "--teacher", wider, "-q")  # fmt: skip
    assert result.code == 2 and "3 outputs" in result.err


def test_a_teacher_nothing_uses_or_a_missing_one_is_refused(masks_folder, biased_data, tiny_model_path, cli):
    unused = cli("finetune", masks_folder / "pruned.pt", biased_data, "--masks", masks_folder / "masks.safetensors",
                 "--teacher", tiny_model_path, "-q")  # fmt: skip
    assert unused.code == 2 and "--teacher" in unused.err and "nothing uses it" in unused.err
    dense = cli("finetune", tiny_model_path, biased_data, "--dense", "--distill-weight", "0.5",
                "-o", masks_folder / "d.pt", "-q")  # fmt: skip
    assert dense.code == 2 and "pass --teacher" in dense.err and not (masks_folder / "d.pt").exists()
    out_of_range = cli("finetune", "--masks", masks_folder / "masks.safetensors", "--distill-weight", "2", "-q")
    assert out_of_range.code == 2 and "--distill-weight 2" in out_of_range.err


def test_a_run_distils_from_its_starting_model_and_reruns_only_what_a_lever_changes(tmp_path, tiny_model_path, biased_data):
    import yaml

    from fairgrape_cli.flows.config import load_config
    from fairgrape_cli.flows.pipeline import run_schedule

    from tiny_runs import edit_config, run_folder

    config = run_folder(tmp_path, "run", tiny_model_path, biased_data, method="magnitude", rate=0.5,
                        keep_per_iter=None, finetune__epochs=1, final_finetune__epochs=1,
                        final_finetune__distill_weight=0.5, final_finetune__balance_by="upsample")  # fmt: skip
    first = run_schedule(load_config(config))
    saved = torch.load(tmp_path / "run/run/final.pt", weights_only=True)["fairgrape"]
    assert saved["distillation"]["weight"] == 0.5
    assert (tmp_path / "run/run" / saved["teacher"]).resolve() == (tmp_path / "run/model.pt").resolve()
    assert "iter-01/finetune" in first.ran
    again = run_schedule(load_config(config))
    assert again.ran == []  # unchanged: nothing reruns
    edit_config(config, final_finetune__distill_temperature=2.0)
    changed = run_schedule(load_config(config))
    assert "final_finetune" in changed.ran and "iter-01/finetune" not in changed.ran
    # a teacher named in the config is read relative to the config file
    (tmp_path / "run/dense.pt").write_bytes((tmp_path / "run/model.pt").read_bytes())
    edit_config(config, final_finetune__teacher="dense.pt")
    assert load_config(config).sections["final_finetune"]["teacher"] == str((tmp_path / "run/dense.pt").resolve())
    settings = yaml.safe_load(config.read_text())
    settings["final_finetune"]["distill_weight"] = 3
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(InputError, match="distill_weight"):
        load_config(config)


def test_a_runs_teacher_that_cannot_work_is_refused_before_any_stage(tmp_path, tiny_model_path, biased_data, cli):
    """Missing, unused, or predicting other classes: each refused in one line before the run
    evaluates or prunes anything (issue 23 item 4)."""
    from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN

    from tiny_runs import run_folder

    config = run_folder(tmp_path, "run", tiny_model_path, biased_data, method="magnitude", rate=0.5,
                        keep_per_iter=None, finetune__epochs=1, final_finetune__epochs=1)  # fmt: skip
    save_native(config.parent / "other.pt", TinyCNN(num_classes=2), TINY_ARCH, classes=("cat", "dog"))
    cases = [
        (["final_finetune.distill_weight=0.5", "final_finetune.teacher=nowhere.pt"], "nowhere.pt does not exist"),
        (["finetune.objective=erm", "finetune.teacher=model.pt"], "'finetune.teacher'"),
        (["final_finetune.distill_weight=0.5", "final_finetune.teacher=other.pt"], "cat, dog"),
        (["finetune.constraint_bound=2"], "finetune.constraint_bound"),
        (["final_finetune.constraint_form=ratio"], "final_finetune.constraint_form"),
    ]
    for overrides, words in cases:
        result = cli("run", config, *[item for override in overrides for item in ("--set", override)], "-q")
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert result.code == 2 and len(lines) == 1 and words in lines[0], (overrides, result.err)
        assert not (config.parent / "run" / "run-state.json").exists()
    assert "nothing uses it" in cli("run", config, "--set", "finetune.objective=erm",
                                    "--set", "finetune.teacher=model.pt", "-q").err  # fmt: skip

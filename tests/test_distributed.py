"""torchrun: two CPU processes (gloo) give one process's importance and report, and keep the masks.

Each launch costs a few seconds of process start-up per rank, so one launch of ``fairgrape run``
covers score, prune (rank 0), a group-DRO fine-tune with validation, the copy of the final model
(rank 0) and the sharded evaluations; the single-process numbers are computed in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fairgrape_cli import stages
from fairgrape_cli.distributed import SINGLE, Runtime
from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.io.artifacts import read_masks
from fairgrape_cli.io.data import DataSpec
from fairgrape_cli.method.batches import equal_share_of, group_pure_batches, share_of, share_of_each_group
from fairgrape_cli.method.metrics import Bootstrap

from conftest import assert_close_to_scale

ROOT = Path(__file__).resolve().parent.parent


def torchrun(*args: str, cwd: Path, processes: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "fairgrape_cli", *map(str, args)]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_folder(tmp_path, tiny_model_path, biased_data) -> Path:
    (tmp_path / "model.pt").write_bytes(tiny_model_path.read_bytes())
    (tmp_path / "data").symlink_to(biased_data, target_is_directory=True)
    config = {
        "model": "model.pt", "data": "data", "groups": "group", "image_size": 32, "method": "fairgrape", "rate": 0.5,
        "iterations": 1, "output": "run", "device": "cpu", "workers": 0,
        # batch counts that do not divide by 2: uneven shares, a padded training epoch
        "score": {"batch_size": 8},
        "finetune": {"epochs": 1, "batch_size": 10, "lr": 0.01, "objective": "group-dro"},
        "final_finetune": {"epochs": 0},
        "report": {"batch_size": 5},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_run_under_torchrun_matches_one_process(run_folder, biased_data):
    launched = torchrun("run", "config.yaml", cwd=run_folder)
    assert launched.returncode == 0, launched.stderr[-3000:]
    out = run_folder / "run"

    # importance: what one process scores on the same batches, to float tolerance
    stages.score(
        model=stages.ModelSource(run_folder / "model.pt"),
        data=DataSpec(root=biased_data, groups="group"),
        output=run_folder / "single.safetensors",
        loading=stages.Loading(32, 8, "cpu", 0),
    )
    single, sharded = load_file(run_folder / "single.safetensors"), load_file(out / "iter-01/importance.safetensors")
    assert single.keys() == sharded.keys()
    for name in single:
        assert_close_to_scale(sharded[name], single[name], rtol=1e-5)

    # the report: the same numbers and intervals as one process evaluating the same final model
    one = stages.report(
        model=stages.ModelSource(out / "final.pt"),
        data=DataSpec(root=biased_data, groups="group"),
        baseline=stages.ModelSource(run_folder / "model.pt"),
        loading=stages.Loading(32, 5, "cpu", 0),
        bootstrap=Bootstrap(),
    ).report.to_dict()
    written = json.loads((out / "report.json").read_text())
    for key in ("overall", "groups", "disparity", "density", "split"):
        assert written[key] == one[key], key
    assert written["history"][0]["accuracy"] == one["overall"]["baseline_accuracy"]

    # the fine-tune ran on both ranks and kept the masks; rank 0 alone wrote and printed
    masks = read_masks(out / "iter-01/masks.safetensors").tensors
    final = torch.load(out / "final.pt", weights_only=True)
    history = final["fairgrape"]["history"]
    assert len(history) == 1 and history[0]["val_accuracy"] is not None
    assert len(history[0]["group_weights"]) == 2 and history[0]["group_weights"] != [0.5, 0.5]
    for name, mask in masks.items():
        assert (final["state_dict"][name][~mask] == 0).all(), name
    moved = torch.load(out / "iter-01/pruned.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(final["state_dict"][name], moved[name]) for name in masks)
    assert launched.stdout.count("worst_group_accuracy") == 1, launched.stdout
    assert "rank 1" not in launched.stderr

    # one process resumes the run: every stage is up to date
    resumed = run_schedule(load_config(run_folder / "config.yaml"))
    assert resumed.ran == [] and resumed.report.to_dict()["groups"] == written["groups"]


@pytest.mark.slow
def test_report_and_a_bad_image_on_one_rank_under_torchrun(tmp_path, tiny_model_path, biased_data):
    """The report command's output is one process's; an unreadable image in rank 1's share stops
    both ranks with one message from rank 0 (nobody waits in a collective)."""
    launched = torchrun("report", tiny_model_path, biased_data, "--groups", "group", "--batch-size", "5",
                        "--device", "cpu", "--workers", "0", "--json", "two.json", "-q", cwd=tmp_path)  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    one = stages.report(
        model=stages.ModelSource(tiny_model_path),
        data=DataSpec(root=biased_data, groups="group"),
        loading=stages.Loading(None, 5, "cpu", 0),
    ).report
    assert json.loads((tmp_path / "two.json").read_text()) == json.loads(one.to_json())

    data = tmp_path / "data"
    data.mkdir()
    rows = (biased_data / "labels.csv").read_text().splitlines()
    for row in rows[1:]:
        (data / "images").mkdir(exist_ok=True)
        name = row.split(",")[0]
        (data / name).write_bytes((biased_data / name).read_bytes())
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    train = [row for row in rows[1:] if row.endswith(",train") and ",majority," in row]
    broken = train[8].split(",")[0]  # majority's second batch of 8: rank 1's
    (data / broken).write_bytes(b"not an image")
    failed = torchrun("score", tiny_model_path, data, "--groups", "group", "--batch-size", "8",
                      "--device", "cpu", "--workers", "0", "-q", cwd=tmp_path, timeout=180)  # fmt: skip
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 1" in errors[0] and broken in errors[0], failed.stderr[-3000:]
    assert not (tmp_path / "importance.safetensors").exists()


def test_shares_cover_every_batch_once_and_match_in_length():
    groups = torch.tensor([0] * 30 + [1] * 9 + [2] * 3).numpy()
    batches = group_pure_batches(groups, 3, batch_size=4)
    shares = [share_of_each_group(batches, rank=r, world_size=3) for r in range(3)]
    assert sorted(sum(shares, [])) == sorted(batches)
    for group in range(3):  # every rank gets part of every group large enough
        counts = [sum(1 for g, _ in share if g == group) for share in shares]
        assert max(counts) - min(counts) <= 1
    plain = [[i] for i in range(7)]
    assert sorted(sum((share_of(plain, rank=r, world_size=3) for r in range(3)), [])) == plain
    padded = [equal_share_of(plain, rank=r, world_size=3) for r in range(3)]
    assert [len(share) for share in padded] == [3, 3, 3]
    assert sorted(sum(padded, [])) == sorted(plain + plain[:2])  # the first batches again
    assert equal_share_of(plain, rank=0, world_size=1) == plain


def test_one_process_runtime_does_nothing():
    tensor = torch.ones(3)
    assert SINGLE.sum_(tensor) is tensor and tensor.tolist() == [1, 1, 1]
    assert SINGLE.gather("x") == ["x"] and SINGLE.broadcast(5) == 5 and SINGLE.is_main
    model = torch.nn.Linear(2, 2)
    assert SINGLE.data_parallel(model) is model
    assert list(SINGLE.lockstep(iter([1, 2]))) == [1, 2] and list(SINGLE.agreed([3])) == [3]
    with pytest.raises(ValueError):
        with SINGLE.together():
            raise ValueError("raised as it is")
    assert Runtime(rank=1, world_size=2).distributed and not Runtime(rank=1, world_size=2).is_main


def test_the_plain_cli_path_imports_no_torch_distributed(tmp_path):
    code = ("import sys; from fairgrape_cli.cli import main; sys.argv = ['fairgrape', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'torch.distributed' in sys.modules)")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "False False"


class _TwoRanks(Runtime):
    """Rank ``rank`` of two, the other rank's contribution to each all-reduce given in advance."""

    def __init__(self, rank: int, others: list[torch.Tensor]):
        super().__init__(rank=rank, world_size=2)
        object.__setattr__(self, "others", others)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.add_(self.others.pop(0))


def _losses(per_sample: torch.Tensor):
    return lambda reduction: per_sample if reduction == "none" else per_sample.mean()


def test_group_dro_over_two_ranks_steps_as_one_process_on_the_union_of_their_batches():
    from fairgrape_cli.method.objectives import ObjectiveOptions, OnlineGroupDRO, TrainingRows

    rows = TrainingRows(groups=torch.tensor([0, 0, 0, 1, 1, 1, 0, 1]).numpy(), num_groups=2,
                        classes=torch.zeros(8, dtype=torch.long).numpy())  # fmt: skip
    options, cpu = ObjectiveOptions(dro_step=0.5), torch.device("cpu")
    values = torch.tensor([0.2, 0.4, 0.1, 1.5, 0.9, 1.2, 0.3, 2.0])
    mine, theirs = torch.tensor([0, 1, 3]), torch.tensor([2, 4, 5, 6, 7])

    union = values.clone().requires_grad_()
    one = OnlineGroupDRO(rows, options, cpu)
    one(_losses(union[torch.cat([mine, theirs])]), torch.cat([mine, theirs])).backward()

    def statistics(batch):  # what a rank contributes to the step's all-reduce: sums, then counts
        groups = torch.as_tensor(rows.groups)[batch]
        sums = torch.zeros(2).index_add(0, groups, values[batch])
        return torch.cat([sums, torch.bincount(groups, minlength=2).float()])

    gradients = torch.zeros(8)
    for rank, (batch, other) in enumerate([(mine, theirs), (theirs, mine)]):
        local = values.clone().requires_grad_()
        rule = OnlineGroupDRO(rows, options, cpu, _TwoRanks(rank, [statistics(other)]))
        rule(_losses(local[batch]), batch).backward()
        gradients += local.grad / 2  # DDP averages the ranks' gradients
        assert rule.weights() == pytest.approx(one.weights())
    torch.testing.assert_close(gradients, union.grad)


def test_commands_that_read_no_images_refuse_torchrun_and_only_rank_0_prints(cli, monkeypatch, tiny_model_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = cli("prune", tiny_model_path, "--rate", "0.5", "--method", "magnitude")
    assert result.code == 2 and "fairgrape prune runs in one process" in result.err
    monkeypatch.setenv("RANK", "1")
    quiet = cli("prune", tiny_model_path, "--rate", "0.5", "--method", "magnitude")
    assert quiet.code == 2 and quiet.err == ""

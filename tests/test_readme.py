"""The README's command lines, parsed from README.md and run on a tiny dataset, so the two cannot drift.

Every ``fairgrape`` line of every ```bash block after the Quick start runs in order in one working
directory holding ``model.pt`` and ``data/`` (a manifest with ``label``, ``race`` and ``gender``
columns); a ```yaml block whose first line is ``# NAME: ...`` is written there as NAME first
(at 32 px where it says 224, for speed, as the commands get a small ``--batch-size``).
The Quick start's ``fairgrape demo`` is tested with a smaller dataset in test_demo.py.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


FENCE_LANGUAGES = {"bash", "yaml", "bibtex", "text", "python"}


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block after the Quick start's, in order."""
    text = README.read_text(encoding="utf-8")
    blocks = [(match.group(1), match.group(2)) for match in BLOCK.finditer(text)]
    fence_lines = [line for line in text.splitlines() if line.startswith("```")]
    fences = len(fence_lines)
    # a closing fence with text after it does not close the block on GitHub: the page breaks
    assert all(line == "```" for line in fence_lines[1::2]), [line for line in fence_lines[1::2] if line != "```"]
    # an untagged or otherwise tagged block would be skipped silently: refuse it instead
    assert fences == 2 * len(blocks), "every fenced block in README.md needs a language tag"
    assert {language for language, _ in blocks} <= FENCE_LANGUAGES, {language for language, _ in blocks}
    assert blocks and blocks[0][0] == "bash", "README.md must open with the Quick start bash block"
    return blocks[1:]


def command_lines(text: str) -> list[list[str]]:
    """The ``fairgrape`` invocations of a bash block, with backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line)[1:] for line in joined.splitlines() if line.strip().startswith("fairgrape ")]


@pytest.fixture
def workdir(tmp_path, tiny_model_path, biased_data) -> Path:
    """model.pt and data/ as the README's examples name them: groups in 'race' (and 'gender');
    vit.pt (a timm ViT-Tiny's state dict, 32 px) and hf-vit/ (a Hugging Face ViT folder) for the
    timm and Hugging Face section."""
    from zoo_models import hf_vit_folder, timm_state_dict_file

    shutil.copy(tiny_model_path, tmp_path / "model.pt")
    timm_state_dict_file(tmp_path / "vit.pt", "vit_tiny_patch16_224", img_size=32)
    hf_vit_folder(tmp_path / "hf-vit")
    data = tmp_path / "data"
    data.mkdir()
    (data / "images").symlink_to(biased_data / "images", target_is_directory=True)
    with open(biased_data / "labels.csv", encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    with open(data / "labels.csv", "w", newline="", encoding="utf-8") as target:
        writer = csv.DictWriter(target, ["path", "label", "race", "gender", "split"])
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(
                {"path": row["path"], "label": row["label"], "race": row["group"],
                 "gender": ("Female", "Male")[i % 2], "split": row["split"]}
            )  # fmt: skip
    return tmp_path


def test_readme_has_the_sections_a_newcomer_needs():
    text = README.read_text(encoding="utf-8")
    quick_start = BLOCK.search(text).group(2).strip().splitlines()
    assert len(quick_start) == 2 and quick_start[0].endswith("fairgrape demo") and "pytest" in quick_start[1]
    commands = [args[0] for _, block in readme_blocks() for args in command_lines(block)]
    assert {"score", "prune", "finetune", "report", "run", "compare"} <= set(commands)
    for heading in ("## Your own model and data", "## The iterative schedule", "## A CI gate", "## Citing"):
        assert heading in text


def test_readme_command_lines_run_as_written(workdir, cli):
    ran = []
    for language, text in readme_blocks():
        if language == "yaml":
            name = re.match(r"#\s*([\w.-]+\.ya?ml)", text)
            if name:
                (workdir / name.group(1)).write_text(_small_config(text), encoding="utf-8")
            continue
        if language != "bash":
            continue
        for args in command_lines(text):
            args = _small(args)
            result = cli(*args, cwd=workdir)
            allowed = {0, 1} if "--fail-if" in args else {0}  # a gate may hold on a tiny model
            assert result.code in allowed, (args, result)
            assert "Traceback" not in result.err
            ran.append(args)
    written = [args for language, text in readme_blocks() if language == "bash" for args in command_lines(text)]
    assert len(ran) == len(written) >= 8
    assert {"score", "prune", "finetune", "report", "run", "compare"} <= {args[0] for args in ran}
    assert any("--fail-if" in args for args in ran)
    # what the README says the lines produce is there
    for name in ("importance.safetensors", "masks.safetensors", "pruned.pt", "finetuned.pt", "report.json",
                 "runs/fairgrape/report.json", "runs/magnitude/report.json", "comparison.html",
                 "vit-slim.pt", "pruned/config.json", "finetuned/fairgrape.json", "hf-vit.onnx"):  # fmt: skip
        assert (workdir / name).exists(), name
    history = json.loads((workdir / "runs/fairgrape/report.json").read_text())["history"]
    iterations = [step for step in history if step["stage"] == "iteration"]
    assert [round(step["density"], 3) for step in iterations] == [0.5, 0.25, 0.125, 0.1]


def _small_config(text: str) -> str:
    """A README config as written, at the test data's 32 px rather than a face model's 224 (speed
    only: the two runs of schedule.yaml took some 50 s of the suite's time at 224 px)."""
    return text.replace("image_size: 224", "image_size: 32")


def _small(args: list[str]) -> list[str]:
    """The README's lines as written, plus --batch-size for the stages that take it (speed only)."""
    if args[0] in {"score", "finetune", "report"} and "--batch-size" not in args:
        return [*args, "--batch-size", "16"]
    return args


def test_every_flag_the_readme_names_exists():
    import typer.main

    from fairgrape_cli.cli import app

    known = {"--help"}
    root = typer.main.get_command(app)
    for command in [root, *root.commands.values()]:
        for parameter in command.params:
            known.update(name for name in parameter.opts + parameter.secondary_opts if name.startswith("--"))
    from torch.distributed.run import get_args_parser  # the README's torchrun lines use its flags

    known.update(flag for action in get_args_parser()._actions for flag in action.option_strings)
    benchmarks = README.parent / "benchmarks"  # and its `python benchmarks/NAME.py --flag` lines theirs
    for script in benchmarks.glob("*.py"):
        known.update(re.findall(r"add_argument\(\s*\"(--[a-z-]+)\"", script.read_text(encoding="utf-8")))
    prose = BLOCK.sub("", README.read_text(encoding="utf-8"))  # blocks' fairgrape lines are read below
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", " ".join(re.findall(r"`([^`]*)`", prose))))
    named |= {flag for _, block in readme_blocks() for args in command_lines(block) for flag in args if flag.startswith("--")}
    assert len(named) > 15
    assert named <= known, sorted(named - known)


def test_readme_python_api_example_runs(workdir, monkeypatch, capsys):
    """The Python API section's example, as written, in the folder of the command examples."""
    examples = [text for language, text in readme_blocks() if language == "python" and "import fairgrape\n" in text]
    assert len(examples) == 1
    monkeypatch.chdir(workdir)
    exec(compile(examples[0], "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "drop_gap" in printed and "majority" in printed and "minority" in printed
    report = json.loads((workdir / "api" / "report.json").read_text())
    assert report["density"] == pytest.approx(0.1, abs=0.01) and report["baseline"] == "model.pt"
    assert f"{report['overall']['accuracy']:.1%}" in printed

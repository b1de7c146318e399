"""Every command's help, rendered as a user sees it: flags without a value placeholder, arguments
named in capitals in the usage line, the options score and report need marked, and --version."""

from __future__ import annotations

import re

import pytest
import typer.main

from fairgrape_cli.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per option, whatever the terminal
    monkeypatch.setenv("TERMINAL_WIDTH", "200")


def test_the_app_has_the_commands_the_design_names():
    assert {"score", "prune", "finetune", "report", "run", "compare", "demo"} <= set(COMMANDS)


def _flags(command: str | None) -> list[str]:
    group = typer.main.get_command(app)
    params = (group.commands[command] if command else group).params
    return ["--help"] + [param.opts[0] for param in params if getattr(param, "is_flag", False)]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_flags_without_a_placeholder_and_no_braces(cli, wide, command):
    result = cli(*([command] if command else []), "--help")
    assert result.code == 0, result
    text = result.out
    assert "<bool>" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    flags = _flags(command)
    assert len(flags) >= 2  # --help and --quiet, or --version
    for flag in flags:
        line = next(line for line in text.splitlines() if re.search(rf"│[\s*]*{flag}\b", line))  # its panel row
        assert not re.search(rf"{flag}\s+(-\w\s+)?<", line), line  # nothing between the flag and its help


@pytest.mark.parametrize(
    "command,usage",
    [("score", "fairgrape score [OPTIONS] MODEL DATA"), ("report", "fairgrape report [OPTIONS] MODEL DATA"),
     ("prune", "fairgrape prune [OPTIONS] [MODEL]"), ("finetune", "fairgrape finetune [OPTIONS] [MODEL] [DATA]"),
     ("run", "fairgrape run [OPTIONS] CONFIG"), ("compare", "fairgrape compare [OPTIONS] REPORTS..."),
     ("demo", "fairgrape demo [OPTIONS]")],
)  # fmt: skip
def test_usage_lines_name_arguments_in_capitals(cli, wide, command, usage):
    result = cli(command, "--help")
    assert usage in result.out, result.out[:400]


@pytest.mark.parametrize("command", ["score", "report"])
def test_groups_is_marked_required_where_it_is(cli, wide, command):
    line = next(line for line in cli(command, "--help").out.splitlines() if "│ --groups" in line)
    assert "[required]" in line


def test_groups_is_not_marked_required_where_it_is_optional(cli, wide):
    line = next(line for line in cli("finetune", "--help").out.splitlines() if "│ --groups" in line)
    assert "[required]" not in line


def _option_line(cli, command: str, flag: str) -> str:
    return next(line for line in cli(command, "--help").out.splitlines() if f"│ {flag}" in line)


def test_finetune_groups_says_its_default(cli, wide):
    assert "[default: the groups the masks record]" in _option_line(cli, "finetune", "--groups")


@pytest.mark.parametrize(
    "command,default",
    [("score", "train, else every row"), ("finetune", "train, else every row"),
     ("report", "test, else val, else every row")],
)  # fmt: skip
def test_split_states_each_commands_default(cli, wide, command, default):
    assert f"[default: {default}]" in _option_line(cli, command, "--split")


def test_data_prune_target_offers_one_class_column_only(cli, wide):
    line = _option_line(cli, "data-prune", "--target")
    assert "Class label column" in line and "Smiling" not in line and "'all'" not in line
    assert "'all'" in _option_line(cli, "score", "--target")


def test_a_missing_argument_is_named_as_in_the_usage_line(cli):
    result = cli("score")
    assert result.code == 2 and "Missing argument 'MODEL'" in result.err


def test_version(cli):
    from importlib.metadata import version

    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"fairgrape {version('fairgrape')}"
    assert "--version" in cli("--help").out

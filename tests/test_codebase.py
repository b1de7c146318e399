"""Rules the code is held to so the next engineer can change it safely: no function longer than
a screen (80 lines, docstring included), every public function and class documented (numpydoc
for the Python API), and the shared helpers each rule relies on (one registry, one first line of
an error)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "fairgrape_cli").rglob("*.py"), *(ROOT / "fairgrape").rglob("*.py")])
LONGEST = 80  # lines, from ``def`` to the function's last line


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_no_function_is_longer_than_a_screen(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LONGEST
    ]
    assert not long, f"{_relative(path)}: split into steps that read in one screen: {long}"


def _public(body, prefix=""):
    """The public functions, classes and methods of a module's or class's body (not nested in
    functions: those are their function's business)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield f"{prefix}{node.name}", node
            if isinstance(node, ast.ClassDef):
                yield from _public(node.body, f"{prefix}{node.name}.")


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_every_public_function_and_class_says_what_it_does(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    undocumented = [name for name, node in _public(tree.body) if not ast.get_docstring(node)]
    assert not undocumented, f"{_relative(path)}: give these a docstring: {undocumented}"


def test_the_python_api_is_numpydoc_documented_with_keyword_arguments():
    import fairgrape
    from fairgrape_cli import api

    functions = ["score", "prune", "finetune", "report", "run", "data_prune", "export", "quantize"]
    assert fairgrape.__all__[: len(functions)] == functions
    for name in functions:
        function = getattr(fairgrape, name)
        assert function is getattr(api, name)
        parameters = inspect.signature(function).parameters.values()
        assert all(parameter.kind is inspect.Parameter.KEYWORD_ONLY for parameter in parameters), name
        doc = inspect.getdoc(function)
        assert "Parameters\n----------" in doc and "Returns\n-------" in doc, name
        documented = doc.split("Parameters\n----------")[1].split("Returns\n-------")[0]
        missing = [p.name for p in parameters if p.name not in documented]
        assert not missing, f"{name}: document {missing}"
    import fairgrape_cli

    assert fairgrape_cli.score is fairgrape.score and set(fairgrape_cli.__all__) >= set(functions)


def test_docstrings_cite_the_design_contract_the_repository_holds():
    """Docstrings point to docs/design.md (the contract in the repository), never a DESIGN.md."""
    assert (ROOT / "docs" / "design.md").is_file()
    citing = [_relative(path) for path in SOURCES if "DESIGN.md" in path.read_text(encoding="utf-8")]
    assert not citing, f"cite docs/design.md instead: {citing}"


def test_one_registry_and_one_first_line_of_an_error():
    from fairgrape_cli.errors import InputError, error_summary, first_line
    from fairgrape_cli.method.data_pruning import QUOTAS, WITHIN
    from fairgrape_cli.method.heads import HEADS
    from fairgrape_cli.method.kept_epoch import KEEP_EPOCH_RULES
    from fairgrape_cli.method.objectives import OBJECTIVES
    from fairgrape_cli.method.selection import CRITERIA
    from fairgrape_cli.registry import Registry
    from fairgrape_cli.stages.export import FORMATS

    for registry in (CRITERIA, OBJECTIVES, QUOTAS, WITHIN, HEADS, FORMATS, KEEP_EPOCH_RULES):
        assert isinstance(registry, Registry)
    with pytest.raises(InputError, match=r"^--method best: choose one of fairgrape, taylor, magnitude, random$"):
        CRITERIA.choose("best")
    with pytest.raises(ValueError, match="registered twice"):
        CRITERIA.add("fairgrape", CRITERIA["fairgrape"])
    assert first_line(ValueError("first\nsecond")) == "first" and first_line(KeyError()) == "KeyError"
    assert len(first_line(ValueError("x" * 500))) == 200 and error_summary(ValueError("bad\nmore")) == "ValueError: bad"
    copies = [_relative(path) for path in SOURCES if "splitlines()[0]" in path.read_text(encoding="utf-8")]
    assert copies == ["fairgrape_cli/errors.py"], copies

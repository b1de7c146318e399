"""The package's layers import downwards only, and no modules import each other in a circle.

Read from the code with ``ast`` (every import, including those inside functions), so a lazy import
cannot hide an arrow that points the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fairgrape_cli"
NAME = "fairgrape_cli"

# Layer of each top-level folder or module, highest first. Modules of one layer may import each
# other; a module may import any layer below its own. method and render share a rank but are
# separate rooms: neither imports the other.
LAYERS = {
    "cli": ("cli", 6), "__main__": ("cli", 6),
    "commands": ("commands", 5), "api": ("api", 5),
    "flows": ("flows", 4),
    "stages": ("stages", 3),
    "method": ("method", 2), "render": ("render", 2),
    "io": ("io", 1),
    "errors": ("foundation", 0), "devices": ("foundation", 0), "_progress": ("foundation", 0),
    "distributed": ("foundation", 0), "registry": ("foundation", 0),
}  # fmt: skip
# The package's own __init__ is its public facade (``fairgrape_cli.score`` ...): it may reach
# the stages, lazily, and nothing imports it for anything else.
FACADE = NAME


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its code."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == NAME}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != NAME:
                continue
            for alias in node.names:  # ``from . import stages`` imports a module, not a name
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in MODULES else target)
    return {_nearest_module(target) for target in found} - {name}


def _nearest_module(target: str) -> str:
    while target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def layer_of(name: str) -> tuple[str, int]:
    parts = name.split(".")
    if len(parts) == 1:
        return ("facade", 99)
    return LAYERS[parts[1]]


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_belongs_to_a_layer():
    unplaced = [name for name in MODULES if name != FACADE and name.split(".")[1] not in LAYERS]
    assert not unplaced, f"place these modules in LAYERS (or move them into a layer's folder): {unplaced}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    layer, rank = layer_of(name)
    wrong = []
    for target in sorted(GRAPH[name]):
        target_layer, target_rank = layer_of(target)
        if target == FACADE:
            wrong.append(f"{target} (the facade is for users, not for the package's own modules)")
        elif target_layer == "commands" and layer != "cli" and layer != "commands":
            wrong.append(f"{target} (only cli.py imports commands)")
        elif target_layer != layer and target_rank >= rank:
            wrong.append(f"{target} ({target_layer} is not below {layer})")
    assert not wrong, f"{name} ({layer}) imports upwards or sideways: {', '.join(wrong)}"


def test_no_import_cycles():
    """No two modules import each other, directly or through others (strongly connected parts)."""
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                cycles.append(sorted(part))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"modules importing each other: {cycles}"


def test_the_checker_sees_lazy_and_relative_imports():
    """The graph is read right: a lazy import inside a function and ``from .. import x`` count."""
    assert "fairgrape_cli.stages" in GRAPH["fairgrape_cli.flows.steps"]  # from .. import stages
    assert "fairgrape_cli.method.scoring" in GRAPH["fairgrape_cli.stages.score"]  # inside score()
    assert "fairgrape_cli.io.checkpoints" in GRAPH["fairgrape_cli.stages._inputs"]  # from ..io import x


@pytest.mark.parametrize(
    "folder", sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
)
def test_each_folder_says_what_lives_there(folder):
    docstring = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
    assert docstring and "import" in docstring.lower(), f"{folder}/__init__.py: say what lives there and what it may import"

"""The import graph of src/deepbelief has no cycles.

The graph is built from the source with ``ast``, not by importing: every ``import`` and
``from ... import`` statement counts, at module level or inside a function (a function-
level import that closes a cycle is a cycle that only waits for the call). Names are
resolved as Python does: ``from deepbelief.x import y`` is an edge to ``deepbelief.x.y``
if that is a module (a submodule of a package), else to ``deepbelief.x``; relative
imports are resolved against the importing module's package.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "deepbelief"


def module_files() -> dict[str, Path]:
    """Module name -> file, for every .py file of the package (packages as their __init__)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The package modules an import statement in ``module`` loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: strip ``level`` components (the package itself counts as one)
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    found = [f"{stem}.{a.name}" for a in node.names if f"{stem}.{a.name}" in known]
    return found + ([stem] if len(found) < len(node.names) or not found else [])


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            for target in _targets(node, module, is_package, known):
                # an import of a.b.c names a module of ours: the longest known prefix
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [m0, m1, ..., m0], or None (depth-first search, colouring)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "deepbelief.rbm" in graph["deepbelief.training"]  # from deepbelief.rbm import RBM
    assert "deepbelief.units.base" in graph["deepbelief.units.binary"]  # from a submodule
    assert "deepbelief.units.joint" in graph["deepbelief.units"]  # a package's __init__
    # the resolver itself, on imports that the package may not contain today
    known = {"deepbelief", "deepbelief.a", "deepbelief.p", "deepbelief.p.q"}
    for src, module, is_pkg, want in [
        ("from deepbelief import a", "deepbelief.p.q", False, ["deepbelief.a"]),
        ("from . import q", "deepbelief.p", True, ["deepbelief.p.q"]),
        ("from .q import f", "deepbelief.p", True, ["deepbelief.p.q"]),
        ("from ..a import f", "deepbelief.p.q", False, ["deepbelief.a"]),
        ("import deepbelief.p.q", "deepbelief.a", False, ["deepbelief.p.q"]),
    ]:
        node = ast.parse(src).body[0]
        assert _targets(node, module, is_pkg, known) == want, src


def test_function_level_imports_count():
    graph = {"a": {"b"}, "b": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]
    tree = ast.parse("def f():\n    from deepbelief.rbm import RBM\n")
    assert [t for n in ast.walk(tree) for t in _targets(n, "deepbelief.x", False, {"deepbelief.rbm"})] == [
        "deepbelief.rbm"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)

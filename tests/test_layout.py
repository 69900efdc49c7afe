"""The layout a newcomer relies on: packages import downwards only, no module imports
itself back through another (function-level imports included: they only hide a
circle), and no source file outgrows a read.

Order, lowest first: hiertcn (the model) < stream (the worker, its tools) < benchmarks
< tests. A package may import from the ones before it, never from the ones after.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("hiertcn", "stream", "benchmarks")
LAYERS = ("hiertcn", "stream", "benchmarks", "tests")
MAX_LINES = 400  # outside tests/: about one screenful of outline, a sitting's read


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the packages and tests."""
    out = {}
    for top in (*PACKAGES, "tests"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules `path` imports, anywhere in it (function bodies too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` imports pkg.mod when it is a module, else a name of pkg
            names.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                         else node.module for a in node.names)
    return {n for n in names if n in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, known) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    found = cycles(graph())
    assert not found, "modules that import each other (directly or round a loop): " + \
        "; ".join(" <-> ".join(c) for c in found)


def test_packages_import_downwards_only():
    upward = []
    for name, targets in graph().items():
        layer = LAYERS.index(name.split(".")[0])
        upward += [f"{name} imports {t}" for t in sorted(targets)
                   if LAYERS.index(t.split(".")[0]) > layer]
    assert not upward, "imports against the layering hiertcn < stream < benchmarks < tests:\n" + \
        "\n".join(upward)


@pytest.mark.parametrize("top", [*PACKAGES, "deploy"])
def test_no_oversized_source_file(top):
    long = {str(p.relative_to(REPO)): n for p in sorted((REPO / top).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by responsibility (over {MAX_LINES} lines): {long}"


def test_the_checker_sees_a_circle_and_the_imports():
    """The checks above would pass on an empty graph: prove they see real edges."""
    edges = graph()
    assert "stream.worker.recommend" in edges["stream.worker.agents"]
    assert any(t.startswith("hiertcn.") for t in edges["stream.worker.recommend"])
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The module picture: no import cycle inside ``leo`` and ``solvers``, and ``solvers``
(the MILP layer) imports nothing from ``leo``.

The graph is read from the source with ``ast``, every import counted (inside functions
and under ``TYPE_CHECKING`` too): an import moved into a function to dodge a cycle is
still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("leo", "solvers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The known module ``name`` names (a module, or a package's ``__init__``), if any."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules ``module`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from pkg import mod" imports the module pkg.mod when there is one
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        for name in names:
            target = _resolve(name, known)
            if target is not None and target != module:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {m: _imports(m, p, known) for m, p in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without the edges from a package's ``__init__`` to its own modules (a
    package that re-exports its modules is not in a cycle with them unless they import
    the package back, which the module edges show)."""
    return {m: {t for t in ts if not (m in PACKAGES and t.startswith(m + "."))} for m, ts in graph.items()}


def test_finder_sees_cycles_and_imports_inside_functions(tmp_path):
    """The detector itself: imports inside functions and under TYPE_CHECKING count, and
    a cycle through one is found."""
    src = tmp_path / "a.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import leo.c\n"
                   "def f():\n    from leo import b\n    return b\n")
    known = {"leo": Path(), "leo.a": src, "leo.b": Path(), "leo.c": Path()}
    assert _imports("leo.a", src, known) == {"leo", "leo.b", "leo.c"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None


def test_no_import_cycle_in_leo_or_solvers():
    cycle = find_cycle(_package_edges(import_graph()))
    assert cycle is None, " -> ".join(cycle or [])


def test_solvers_import_nothing_from_leo():
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.split(".")[0] == "solvers"
                 for t in ts if t.split(".")[0] == "leo")
    assert not bad, bad


@pytest.mark.parametrize("a, b", [("solvers.cuts", "solvers.highs_backend")])
def test_cuts_and_the_highs_backend_are_independent(a, b):
    graph = import_graph()
    assert b not in graph[a] and a not in graph[b]


#: Layers that must not reach into others: io reads and writes networks whatever is asked of
#: them; the audit re-checks a certificate with none of the prover's code.
FORBIDDEN = {
    "leo.io": ("leo.reduction", "leo.queries", "leo.stability", "leo.bab", "leo.search"),
    "leo.certify.audit": ("leo.bounds", "leo.search", "leo.bab", "leo.stability", "leo.reduction", "leo.queries",
                          "solvers"),
    "leo.core": ("leo.io", "leo.bounds", "leo.search", "leo.bab", "leo.stability", "leo.queries", "leo.reduction",
                 "leo.certify", "leo.cli", "leo.api"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer):
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m == layer or m.startswith(layer)
                 for t in ts for f in FORBIDDEN[layer] if t == f or t.startswith(f + "."))
    assert not bad, bad


#: One concept per module, one idea per function: the sizes at which a review asks for a split.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_no_module_is_over_the_size_limit():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_no_function_is_over_the_size_limit():
    long = {}
    for m, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    long[f"{m}.{node.name}"] = n
    assert not long, long

"""The package's layers, read from the code's own imports (no module is imported or run).

    theory, rundir  <-  simulators, llm_rl  <-  integrations, figures  <-  reproduce  <-  cli

A package may import only the packages of the layers below it (and itself); ``simulators`` and
``llm_rl`` never import each other; ``theory`` and ``rundir`` import none of ours; within ``theory``
only ``symbolic.py`` imports sympy. No two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, set[str]] = {
    "theory": set(),
    "rundir": set(),
    "simulators": {"theory", "rundir"},
    "llm_rl": {"theory", "rundir"},
    "integrations": {"theory", "rundir", "llm_rl"},
    "figures": {"theory", "rundir", "simulators", "llm_rl"},
    "reproduce": {"theory", "rundir", "simulators", "llm_rl", "figures", "integrations"},
    "cli": {"theory", "rundir", "simulators", "llm_rl", "figures", "reproduce", "integrations"},
}


def _modules(packages=ALLOWED) -> dict[str, Path]:
    mods = {}
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of every module ``name`` imports (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _internal_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        edges = set()
        for target in _imports(name, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            # a package's __init__ importing its own submodules is a re-export, not a dependency
            if target and target != name and not target.startswith(name + "."):
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring package re-exports."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if v.startswith(w + "."):  # a module importing its own package's __init__
                continue
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_every_package_folder_is_a_declared_layer():
    folders = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks", "docs"}
    assert folders == set(ALLOWED), f"undeclared or missing layers: {folders ^ set(ALLOWED)}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_lower_layers(package):
    bad = []
    for name, path in _modules([package]).items():
        for target in _imports(name, path):
            top = target.split(".")[0]
            if top in ALLOWED and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, "\n".join(bad)


def test_only_theory_symbolic_imports_sympy():
    bad = [str(p.relative_to(ROOT)) for n, p in _modules(["theory"]).items()
           if n != "theory.symbolic" and any(t.split(".")[0] == "sympy" for t in _imports(n, p))]
    assert not bad


def test_no_import_cycles():
    assert _cycles(_internal_graph()) == []


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert _cycles(graph) == [["a.x", "a.y", "a.z"]]


def test_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    (tmp_path / "theory").mkdir()
    (tmp_path / "theory" / "bad.py").write_text("from llm_rl import trainer\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="theory/bad.py imports llm_rl"):
        test_imports_only_lower_layers("theory")

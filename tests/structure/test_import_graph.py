"""No import cycle inside ``yarn_gateway/`` (issue 16). The graph is built from the source with
``ast`` and counts every import: at module level, inside functions (deferred) and under
``TYPE_CHECKING``, since each is a dependency a reader has to follow."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module name -> the modules of the same package it imports."""
    base = package_dir.parent
    files = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                prefix = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join([*prefix, *([node.module] if node.module else [])])
                candidates = [target, *(f"{target}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            graph[name].update(c for c in candidates if c in files and c != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_yarn_gateway_has_no_import_cycle() -> None:
    graph = module_graph(ROOT / "yarn_gateway")
    assert len(graph) > 50 and graph["yarn_gateway.kernels.registry"]  # the graph really was built
    assert cycles(graph) == []


def test_the_check_finds_a_cycle_through_a_deferred_or_type_only_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import C\n")
    (pkg / "c.py").write_text("def f():\n    from .sub.b import x\n")
    (pkg / "d.py").write_text("from . import a\n")
    assert cycles(module_graph(pkg)) == [["pkg.c", "pkg.sub.b"]]
    (pkg / "c.py").write_text("C = 1\n")  # the type-only import is all that is left: no cycle
    assert cycles(module_graph(pkg)) == []

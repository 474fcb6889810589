"""No control flow decided by the text of an exception (issue 16): errors that callers tell
apart are types or typed attributes. This reads the package's source with ``ast`` and flags,
wherever an exception is in hand (an ``except ... as name`` body, or a parameter annotated as an
exception), a membership test, a ``startswith``-style call or a regular expression applied to it,
to ``str()`` of it, to one of its attributes, or to a variable computed from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "yarn_gateway", ROOT / "client" / "yarn_gateway_client", ROOT / "launchers" / "python"]
TEXT_METHODS = {"startswith", "endswith", "find", "rfind", "index", "count", "__contains__"}
REGEX_FUNCS = {"search", "match", "fullmatch", "findall", "finditer"}


def _is_exception_annotation(node: ast.expr | None) -> bool:
    if node is None:
        return False
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    return any(name.endswith(("Error", "Exception")) for name in names)


def _uses(node: ast.AST, tainted: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in tainted for n in ast.walk(node))


def _scan(body: list[ast.stmt], tainted: set[str], where: str, out: list[str]) -> None:
    tainted = set(tainted)
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Assign) and _uses(node.value, tainted):
                tainted |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                if any(_uses(c, tainted) for c in node.comparators):
                    out.append(f"{where}:{node.lineno}: membership test on an exception's text")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in TEXT_METHODS and _uses(node.func.value, tainted):
                    out.append(f"{where}:{node.lineno}: .{node.func.attr}() on an exception's text")
                elif node.func.attr in REGEX_FUNCS and any(_uses(a, tainted) for a in node.args[1:2]):
                    out.append(f"{where}:{node.lineno}: a regular expression on an exception's text")


def findings(source: str, filename: str) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ExceptHandler) and node.name:
            _scan(node.body, {node.name}, filename, out)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = [a for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)
                      if _is_exception_annotation(a.annotation)]
            if params:
                _scan(node.body, {a.arg for a in params}, filename, out)
    return sorted(set(out))


def test_the_package_decides_nothing_by_an_exceptions_text() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            found += findings(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("code", [
    'try:\n    f()\nexcept OSError as exc:\n    if "404" in str(exc):\n        pass\n',
    'try:\n    f()\nexcept OSError as e:\n    text = str(e)\n    if text.startswith("No active"):\n        pass\n',
    'def g(exc: BaseException, t: float) -> int:\n    detail = str(exc) or "x"\n'
    '    return 504 if "within" in detail else 500\n',
    'import re\ntry:\n    f()\nexcept ValueError as e:\n    m = re.search("line ([0-9]+)", e.args[0])\n',
])
def test_the_checker_flags_text_matching(code: str) -> None:
    assert findings(code, "sample.py")


@pytest.mark.parametrize("code", [
    'try:\n    f()\nexcept OSError as exc:\n    if exc.errno == 2:\n        pass\n    log(f"failed: {exc}")\n',
    'def g(exc: BaseException) -> int:\n    return 504 if isinstance(exc, TimeoutError) or exc.timed_out else 500\n',
    'def g(text: str) -> bool:\n    return "queue" in text\n',
])
def test_the_checker_lets_typed_decisions_pass(code: str) -> None:
    assert not findings(code, "sample.py")

"""The package stays in small rooms (issue 30): no module of ``search/`` over 500 lines and
no function over 60, read from the source. A module that grows past them is split along its
concerns (docs/architecture.md), not waved through here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "search"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def long_modules(root: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    """``path: N lines`` for every module of ``root`` over ``limit`` lines."""
    out = []
    for path in sorted(root.rglob("*.py")):
        n = len(path.read_text().splitlines())
        if n > limit:
            out.append(f"{path.relative_to(root.parent)}: {n} lines")
    return out


def long_functions(source: str, name: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``name:line function: N lines`` for every function (methods and nested ones too)
    longer than ``limit`` lines, decorators left out."""
    out = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{name}:{node.lineno} {node.name}: {n} lines")
    return out


def test_no_module_is_over_500_lines():
    found = long_modules(PACKAGE)
    assert not found, "split these along their concerns: " + "; ".join(found)


def test_no_function_is_over_60_lines():
    found = [hit for path in sorted(PACKAGE.rglob("*.py"))
             for hit in long_functions(path.read_text(), str(path.relative_to(PACKAGE.parent)))]
    assert not found, "split these into named steps: " + "; ".join(found)


def test_the_guards_see_a_long_module_and_a_long_function(tmp_path):
    """The checks can fail: a made-up module of 501 lines holding a 61-line function."""
    body = "def long():\n" + "    x = 1\n" * 60
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "big.py").write_text(body + "\n" * (501 - body.count("\n")))
    assert long_modules(tmp_path / "pkg") == ["pkg/big.py: 501 lines"]
    assert long_functions(body, "big.py") == ["big.py:1 long: 61 lines"]
    assert long_functions("def short():\n    return 1\n", "s.py") == []

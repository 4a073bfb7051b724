"""The import graph of the ``search`` package, read from the source (nothing is imported but
the packages' lazy-export tables), and the layer each module belongs to.

Used by tests/test_layers.py (no cycle, no arrow pointing up a layer) and by
``python tests/import_graph.py`` which prints the graph as Mermaid for docs/architecture.md.
Every import counts: module-level, function-local (often a cycle broken by hand) and
``TYPE_CHECKING`` ones.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "search"

#: The layers, lowest first: a module may import its own layer and the ones below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("search._lazy", "search.catalog", "search.config", "search.display",
              "search.filenames", "search.paths", "search.storage", "search.cluster",
              "search.robustness_table")),
    ("data", ("search.data",)),
    ("model", ("search.model",)),
    ("train", ("search.train",)),
    ("tune", ("search.tune",)),
    ("after-search", ("search.evaluate", "search.study", "search.leaderboard")),
    ("report/CLI", ("search.report", "search.export", "search.predict", "search.cli",
                    "search.cli_tools", "search.experiment", "search.run", "search")),
)


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a module (the longest matching prefix wins)."""
    best, length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    if best is None:
        raise KeyError(f"{module} is in no layer of tests/import_graph.py: add it to LAYERS")
    return best


def _lazy_target(package: str, name: str) -> str | None:
    """Where a package's lazy export ``name`` really lives (its ``_EXPORTS`` table)."""
    exports = getattr(importlib.import_module(package), "_EXPORTS", {})
    return exports.get(name)


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The ``search`` modules ``module`` imports, wherever in the file the import stands."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif base in known and (target := _lazy_target(base, alias.name)):
                    out.add(target)
                else:
                    out.add(base)
    out.discard(module)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    """module -> the package modules it imports."""
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import that points up a layer: (importer, imported)."""
    return sorted((a, b) for a, targets in edges.items() for b in targets
                  if layer_of(b) > layer_of(a))


def mermaid(edges: dict[str, set[str]]) -> str:
    """The graph between packages and top-level modules, one subgraph per layer."""
    def unit(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else module

    arrows = sorted({(unit(a), unit(b)) for a, t in edges.items() for b in t
                     if unit(a) != unit(b) and unit(a) != PACKAGE})
    units = sorted({u for pair in arrows for u in pair})
    lines = ["flowchart BT"]
    for index, (name, _) in enumerate(LAYERS):
        members = [u for u in units if layer_of(u) == index]
        if members:
            lines.append(f'  subgraph L{index}["{index}. {name}"]')
            lines += [f"    {u.replace('.', '_')}[{u}]" for u in members]
            lines.append("  end")
    lines += [f"  {a.replace('.', '_')} --> {b.replace('.', '_')}" for a, b in arrows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    edges = graph()
    print(mermaid(edges))
    problems = [*(f"cycle: {' <-> '.join(c)}" for c in cycles(edges)),
                *(f"up a layer: {a} -> {b}" for a, b in upward(edges))]
    print("\n".join(problems) or "no cycle, no import pointing up a layer", file=sys.stderr)

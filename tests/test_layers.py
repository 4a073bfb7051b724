"""The package's imports point one way: no cycle, and no module imports a layer above its own
(data -> model -> train -> tune -> after-search -> report/CLI; docs/architecture.md), the
guard Ray keeps in its own test_circular_imports.py. Read from the source, so a cycle
broken by a function-local import still counts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "import_graph", Path(__file__).with_name("import_graph.py"))
import_graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = import_graph
_spec.loader.exec_module(import_graph)


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return import_graph.graph()


def test_no_import_cycle(edges):
    found = import_graph.cycles(edges)
    assert not found, "import cycles in search/: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_points_up_a_layer(edges):
    found = import_graph.upward(edges)
    names = [name for name, _ in import_graph.LAYERS]
    assert not found, "imports pointing up a layer: " + "; ".join(
        f"{a} ({names[import_graph.layer_of(a)]}) -> {b} ({names[import_graph.layer_of(b)]})"
        for a, b in found)


def test_every_module_has_a_layer(edges):
    for module in edges:
        import_graph.layer_of(module)  # KeyError names a module added outside the layers


def test_the_guards_see_a_cycle_and_an_upward_import():
    """The checks can fail: a made-up graph with both faults is caught."""
    fake = {"search.config": {"search.tune.tables"}, "search.tune.tables": {"search.config"}}
    assert import_graph.cycles(fake) == [["search.config", "search.tune.tables"]]
    assert import_graph.upward(fake) == [("search.config", "search.tune.tables")]


def test_the_architecture_doc_shows_the_current_graph(edges):
    doc = (import_graph.ROOT / "docs" / "architecture.md").read_text()
    assert import_graph.mermaid(edges) in doc, (
        "docs/architecture.md is out of date: paste the output of "
        "'python tests/import_graph.py' into its graph")

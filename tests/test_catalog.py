"""The metric catalogue (search/catalog.py) is where a metric's name and direction are written:
every key the metric functions return is in it, and no module of ``search/`` spells a metric's
name as a bare string instead of importing it (both checks shown to fail)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from search import catalog
from search.train import metrics

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / "search"
#: Files that still spell metric names, each with the names and why. search/cli.py and
#: search/cli_tools.py are being split by another change: switch them, then empty this.
PENDING: dict[str, set[str]] = {}


def _returned_keys() -> set[str]:
    """Every key the metric functions return, on a split with both classes and on one without."""
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2])
    keys: set[str] = set()
    for labels in (y, np.ones_like(y)):
        keys |= set(metrics.detector_metrics(labels, p))
        keys |= set(metrics.threshold_metrics(labels, p))
        keys |= set(metrics.calibration(labels, p))
        keys |= set(metrics.majority_baseline(labels))
    return keys


def missing_from_catalog(keys: set[str]) -> list[str]:
    """The keys whose metric the catalogue lacks (``f1_at_threshold`` needs ``f1``)."""
    return sorted(k for k in keys if catalog.lookup(k) is None)


def test_every_key_the_metric_functions_return_is_in_the_catalogue():
    keys = _returned_keys()
    assert {"auc", "tp", "f1_at_threshold", "baseline_f1", "ece", "n"} <= keys
    assert missing_from_catalog(keys) == []
    # The check can fail: a key the catalogue does not know is named.
    assert missing_from_catalog(keys | {"made_up_score"}) == ["made_up_score"]


def test_directions_come_from_the_registry():
    assert catalog.mode("val_auc") == "max" and catalog.mode("val_eer") == "min"
    assert catalog.mode("test_fp_at_threshold") == "min"
    assert catalog.mode("val_tpr_at_fpr_1pct") == "max"  # a TPR, whatever its name says
    assert catalog.mode("val_fpr_at_tpr_95pct") == "min"
    assert catalog.mode("val_eer@frames") == "min" and catalog.mode("latency_ms") == "min"
    assert catalog.mode("train_loss") == "min" and catalog.mode("val_baseline_f1") == "max"
    assert catalog.mode("val_unknown") == "max"  # a name it lacks: higher is better
    lower = {m.name for m in catalog.METRICS.values() if m.lower_is_better}
    assert lower == {"eer", "ece", "log_loss", "loss", "train_loss", "fpr_at_tpr_95pct", "fp",
                     "fn", "auc_drop", *catalog.COSTS}
    assert all(name == m.name and m.label for name, m in catalog.METRICS.items())


def test_the_column_groups_hold_only_catalogued_names():
    groups = [catalog.STUDY_COLUMNS, catalog.EXTRA_COLUMNS, catalog.CONFUSION,
              catalog.SPLIT_COLUMNS, catalog.EPOCH_COLUMNS, catalog.ROBUSTNESS_METRICS,
              catalog.RANKING_COLUMNS, catalog.DECISION, catalog.THRESHOLD_FREE,
              catalog.OPERATING_POINTS, catalog.SOURCE_METRICS]
    assert all(catalog.lookup(name) for group in groups for name in group)
    assert set(catalog.OPERATING_POINTS) <= set(metrics.OPERATING_POINTS)


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants of a module, class or function."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _all_lists(tree: ast.AST) -> set[int]:
    """The ids of the strings in ``__all__ = [...]`` (a function may share a metric's name)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            out |= {id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    return out


def bare_metric_names(root: Path, pending: dict[str, set[str]]) -> list[str]:
    """``file:line: 'name'`` for every string constant under ``root`` (but the catalogue)
    that is a catalogued metric's name in any form (``auc``, ``val_auc``, ``f1_at_threshold``,
    ``best_val_baseline_f1``); docstrings, comments and ``__all__`` do not count."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if rel == "search/catalog.py":
            continue
        tree = ast.parse(path.read_text(), rel)
        skip = _docstrings(tree) | _all_lists(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in skip and catalog.lookup(node.value) is not None
                    and node.value not in pending.get(rel, ())):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_no_metric_name_is_spelled_outside_the_catalogue():
    assert bare_metric_names(SEARCH, PENDING) == []


def test_the_guard_names_a_bare_metric_name(tmp_path):
    package = tmp_path / "search"
    package.mkdir()
    (package / "catalog.py").write_text('AUC = "auc"\n')  # the catalogue may spell it
    (package / "mod.py").write_text('"""auc in a docstring."""\n__all__ = ["eer"]\n'
                                    'x = {}\n# x["auc"] in a comment\n'
                                    'y = x["auc"]\nz = x.get("best_val_f1_at_threshold")\n'
                                    'w = "area"\n')
    assert bare_metric_names(package, {}) == ["search/mod.py:5: 'auc'",
                                              "search/mod.py:6: 'best_val_f1_at_threshold'"]
    assert bare_metric_names(package, {"search/mod.py": {"auc"}}) == [
        "search/mod.py:6: 'best_val_f1_at_threshold'"]


@pytest.mark.parametrize("name, base", [("val_auc@frames", "auc"), ("best_val_tp", "tp"),
                                        ("test_baseline_accuracy", "accuracy"),
                                        ("balanced_accuracy_at_threshold", "balanced_accuracy")])
def test_base_of_any_form(name, base):
    assert catalog.base_of(name) == base

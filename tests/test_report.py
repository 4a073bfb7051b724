"""``deepfake-search report``: one static page whose every figure loads in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from search.predict import cross_dataset_markdown
from search.report import markdown_to_html, write_report
from search.tune.importance import param_importances

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOP_FILES = ("experiment.json", "trials.parquet", "trials.csv", "history.parquet",
             "leaderboard.md", "test_metrics.json", "optuna.db")


@pytest.fixture(scope="module")
def report(tiny_search: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a copy of the tiny search's tables (checkpoints stay where they are),
    with a cross-dataset matrix added, so the shared results folder is left untouched."""
    results = tmp_path_factory.mktemp("report") / tiny_search.name
    results.mkdir()
    for name in TOP_FILES:
        if (tiny_search / name).is_file():
            shutil.copy(tiny_search / name, results / name)
    cell = {"accuracy_at_threshold": 0.81, "auc": 0.88, "n": 120, "positive_rate": 0.67,
            "f1_at_threshold": 0.86, "baseline_accuracy": 0.67, "threshold": 0.5,
            "in_domain": True}
    matrix = {"split": "test", "rows": {"demo_shards (demo)": {"model": "export", "cells": {
        "demo_shards (demo)": cell,
        "frames_shards (folders)": {**cell, "accuracy_at_threshold": 0.4, "auc": 0.55,
                                    "in_domain": False}}}}}
    (results / "cross_dataset.json").write_text(json.dumps(matrix))
    (results / "cross_dataset.md").write_text(cross_dataset_markdown(matrix))
    return write_report(results)


def test_report_page_and_figures(report: Path) -> None:
    assert report.name == "report.html" and report.parent.name == "report"
    page = report.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    for name in ("confusion.png", "curves.png", "learning.png", "search.png",
                 "cross_dataset.png"):
        assert name in sources, name
    for src in sources:
        assert (report.parent / src).stat().st_size > 1000, src
    for needle in ("Leaderboard", "<table", "Confusion matrices", "ROC", "Learning curves",
                   "Parameter importances", "Cross-dataset", "trained on \\ tested on"):
        assert needle in page, needle
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_importances_fail_softly(tmp_path: Path) -> None:
    (tmp_path / "optuna.db").write_bytes(b"this is not a database")
    assert isinstance(param_importances(tmp_path / "optuna.db", "tiny"), str)
    assert "no optuna.db" in param_importances(tmp_path / "missing" / "optuna.db", "tiny")


def test_markdown_tables_become_html() -> None:
    out = markdown_to_html("# Title\n\nSome `code` and **bold**.\n\n| a | b |\n|---|---|\n"
                           "| x | 0.5 |\n\n- one\n- two <b>\n")
    assert "<h2>Title</h2>" in out and "<code>code</code>" in out
    assert "<th>a</th>" in out and '<td class="num">0.5</td>' in out
    assert "<li>two &lt;b&gt;</li>" in out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y chromium) so the report cannot be checked in a browser")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """Every <img> has loaded with real pixels once the page's load event has fired."""
    probe = report.parent / "_probe.html"
    script = ("<script>window.addEventListener('load', function () {"
              "var imgs = Array.from(document.images);"
              "var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });"
              "document.body.setAttribute('data-images', imgs.length + '/' + ok.length);"
              "});</script>")
    probe.write_text(report.read_text().replace("</body>", script + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--virtual-time-budget=10000"]
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [CHROMIUM, *flags, f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()],
                capture_output=True, text=True, timeout=120, check=True).stdout
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([CHROMIUM, *flags, f"--user-data-dir={profile}",
                            f"--screenshot={tmp_path / 'report.png'}", "--window-size=1200,3000",
                            report.as_uri()], capture_output=True, timeout=120, check=True)
    finally:
        probe.unlink()
    found = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert found, "the load event never fired"
    total, loaded = map(int, found.groups())
    assert total >= 5 and loaded == total
    assert (tmp_path / "report.png").stat().st_size > 50_000  # a page, not a blank screen

"""Committed results name no machine (issue 28): every path a results folder records is
relative to the repository or to the results folder, so a fresh clone reads and re-runs it.
The writers record paths that way (:func:`search.filenames.portable_path`), and this test
fails on an absolute path in any file under ``results/`` (parquet: its key-value metadata)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from search.config import ExperimentConfig, load_config
from search.evaluate.cross import write_matrix
from search.filenames import portable_experiment, portable_path
from search.paths import project_root

RESULTS = project_root() / "results"
#: An absolute path of a machine: /tmp/..., /home/..., /work/... at the start of a token
#: (a quote, a space, a backtick, '=' or '(' before it). /dev/zero and /proc are inputs the
#: robustness table names on purpose, and URIs (s3://, sqlite:///) never match.
ABSOLUTE = re.compile(r"""(?:^|(?<=[\s"'`(=:,\[{]))/(?:tmp|work|home|root|Users|mnt|opt|srv|"""
                      r"""var|data|private|Volumes|scratch|nfs|media|usr|run)(?=/|\b)""")
SKIP = {".png", ".db", ".journal", ".jpg", ".onnx", ".safetensors", ".pt"}


def _results_files() -> list[Path]:
    """The files under results/ that git tracks (all of them outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "results"], cwd=project_root(), text=True,
                                capture_output=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return [p for p in RESULTS.rglob("*") if p.is_file()]
    return [project_root() / name for name in listed]


def _text(path: Path) -> str:
    if path.suffix == ".parquet":
        meta = pq.read_metadata(path).metadata or {}
        return "\n".join(v.decode(errors="replace") for k, v in meta.items()
                         if k != b"ARROW:schema")
    return path.read_text(errors="replace")


def test_no_committed_result_holds_an_absolute_path() -> None:
    found = []
    for path in _results_files():
        if path.suffix in SKIP or not path.is_file():
            continue
        text = _text(path)
        found += [f"{path.relative_to(project_root())}: {text[m.start():m.start() + 60]!r}"
                  for m in ABSOLUTE.finditer(text)]
    assert not found, "absolute paths in results/ (record them relative):\n" + "\n".join(found)


def test_the_pattern_catches_what_it_must() -> None:
    """The checker can fail: a machine's path is caught, a URI or a ratio is not."""
    for text in ('"shards": "/work/main/datasets/x"', "--out /tmp/x", "`/home/u/r`"):
        assert ABSOLUTE.search(text), text
    for text in ("s3://bucket/x", "sqlite:///results/x/optuna.db", "1/2", "img/s", "/dev/zero",
                 "under /proc"):
        assert not ABSOLUTE.search(text), text


def test_writers_record_paths_relative_to_the_project_or_the_results_folder(
        tmp_path: Path) -> None:
    root = project_root()
    assert portable_path(root / "datasets" / "x" / "shards") == "datasets/x/shards"
    assert portable_path(root.parent / "shared" / "data") == "../shared/data"
    assert portable_path(tmp_path / "trial_a" / "ckpt", tmp_path) == "trial_a/ckpt"
    assert portable_path("s3://bucket/x") == "s3://bucket/x"
    assert portable_path("datasets/x") == "datasets/x"
    cfg = load_config(None, [f"data.shards={root / 'datasets' / 'x'}",
                             f"cluster.storage_path={root / 'results'}"])
    tree = portable_experiment(cfg.to_dict())
    assert (tree["data"]["shards"], tree["cluster"]["storage_path"]) == ("datasets/x", "results")
    assert ExperimentConfig().to_dict()["data"] == portable_experiment(
        ExperimentConfig().to_dict())["data"]
    matrix = {"split": "test", "rows": {"a": {"model": str(tmp_path / "trial_a" / "c"), "cells": {
        "x": {"shards": str(root / "datasets" / "x"), "n": 1, "positive_rate": 0.5, "auc": 0.5,
              "accuracy_at_threshold": 0.5, "f1_at_threshold": 0.5, "baseline_accuracy": 0.5,
              "threshold": 0.5}}}}}
    write_matrix(tmp_path, matrix)
    saved = json.loads((tmp_path / "cross_dataset.json").read_text())
    assert saved["rows"]["a"]["model"] == "trial_a/c"
    assert saved["rows"]["a"]["cells"]["x"]["shards"] == "datasets/x"

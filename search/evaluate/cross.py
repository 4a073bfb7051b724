"""The cross-dataset matrix: a model on several prepared sets, trained-on x tested-on.

``deepfake-search evaluate --cross`` and the search's own cross-source step write it as
``cross_dataset.json`` (the format, owned here with :mod:`search.evaluate.matrix`'s tables)
and ``cross_dataset.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.display import markdown_table, number
from search.evaluate.matrix import DETAIL_COLUMNS, NOTE, detail_table, matrix_table, models
from search.evaluate.scoring import evaluate_model
from search.filenames import (
    CROSS_JSON,
    CROSS_MD,
    EXPERIMENT,
    TRIALS_CSV,
    TRIALS_PARQUET,
    json_safe,
    portable_path,
)
from search.model.folder import ModelInfo, read_model_info


# ------------------------------------------------------------------ the cross-dataset matrix
def find_results_dir(model_dir: str | Path) -> Path | None:
    """The results folder a model folder lives in (an export/ or a trial checkpoint), if any."""
    here = Path(model_dir).expanduser().resolve()
    for parent in [here, *here.parents][:5]:
        if (parent / EXPERIMENT).is_file() and (
                (parent / TRIALS_PARQUET).is_file() or (parent / TRIALS_CSV).is_file()):
            return parent
    return None


def _recorded_results_dir(info: ModelInfo) -> Path | None:
    """The results folder an export was made from (config.json's ``results_dir``), when it is
    still a results folder on this machine: ``export --out`` may put the model anywhere."""
    recorded = (info.meta or {}).get("results_dir")
    return find_results_dir(recorded) if recorded and Path(recorded).is_dir() else None


def cross_dataset_markdown(matrix: dict[str, Any]) -> str:
    """The trained-on x tested-on table (cells: accuracy / AUC) and a per-set detail table:
    the same tables as the report's (:mod:`search.evaluate.matrix`), as markdown."""
    grid = matrix_table(matrix)
    out = ["# Cross-dataset evaluation", "", NOTE.format(split=matrix["split"]), "",
           markdown_table(list(grid.columns), grid.to_numpy().tolist()), "",
           "## Details", "",
           markdown_table(DETAIL_COLUMNS, detail_table(matrix).to_numpy().tolist(), number),
           "", "Models: " + "; ".join(f"{t}: `{m}`" for t, m in models(matrix).items()), ""]
    return "\n".join(out)


def _load_matrix(json_path: Path, split: str) -> dict[str, Any]:
    """The matrix written there before for the same split (its rows are kept), else a new one."""
    if json_path.is_file():
        try:
            old = json.loads(json_path.read_text())
            if old.get("split") == split:
                return old
        except json.JSONDecodeError:
            pass
    return {"split": split, "rows": {}}


def cross_dataset(model_dir: str | Path, sets: Sequence[str | Path], split: str = "test", *,
                  out_dir: str | Path | None = None, threshold: float | None = None,
                  threshold_rule: str | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a model on several prepared sets and write the cross-dataset matrix.

    The matrix goes to ``<results>/cross_dataset.md`` (and ``.json``) when the model lives in
    a results folder or was exported from one that is still here, else next to the model;
    rows of earlier runs there (models trained on other sets) are kept, so the matrix fills
    up one model at a time.
    """
    if not sets:
        raise ValueError("cross-dataset evaluation needs at least one prepared set")
    info = read_model_info(model_dir)
    if out_dir is None:
        out_dir = (find_results_dir(info.directory) or _recorded_results_dir(info)
                   or info.directory.parent)
    out_dir = Path(out_dir)
    json_path = out_dir / CROSS_JSON
    matrix = _load_matrix(json_path, split)
    row = matrix["rows"].setdefault(info.train_name, {"model": str(info.directory), "cells": {}})
    row["model"] = str(info.directory)
    for shards in sets:
        metrics, _ = evaluate_model(info.directory, shards, split, threshold=threshold,
                                    threshold_rule=threshold_rule)
        row["cells"][metrics["data"]] = json_safe(metrics)
    return matrix, write_matrix(out_dir, matrix)


def write_matrix(out_dir: Path, matrix: dict[str, Any]) -> Path:
    """``cross_dataset.json`` and ``.md`` in ``out_dir`` (the one writer of both), every
    model and shard folder recorded by :func:`search.filenames.portable_path`: relative to
    ``out_dir`` or the project, so the files name no machine. Returns the ``.md``'s path."""
    for row in matrix.get("rows", {}).values():
        row["model"] = portable_path(row.get("model", ""), out_dir)
        for cell in row.get("cells", {}).values():
            if isinstance(cell, dict) and "shards" in cell:
                cell["shards"] = portable_path(cell["shards"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CROSS_JSON).write_text(json.dumps(matrix, indent=1) + "\n")
    md_path = out_dir / CROSS_MD
    md_path.write_text(cross_dataset_markdown(matrix))
    return md_path



__all__ = ["cross_dataset", "cross_dataset_markdown", "find_results_dir", "write_matrix"]

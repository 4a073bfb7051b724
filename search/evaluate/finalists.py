"""The stage after the search: what is done with its finalists, once its trials are done.

The search (:mod:`search.tune`) ends at its tables; this stage takes their finalists (the
best trial of each architecture) and scores each one's test split once, the only time the
test split is seen, with its robustness under perturbations from the same pass, the
cross-source matrix when the search scored other sources, and its ONNX latency measured on
this machine. :mod:`search.study` runs it at a search's end; ``deepfake-search evaluate``
uses the same scoring (:mod:`search.evaluate.scoring`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from search.config import ExperimentConfig
from search.evaluate.cross import write_matrix
from search.evaluate.scoring import evaluate_remote, finalist_remote
from search.filenames import (
    ROBUSTNESS,
    TEST_METRICS,
    TEST_PREDICTIONS,
    json_safe,
)
from search.model.latency import checkpoint_latency
from search.train.driver import TrialData, resolve_data


def evaluate_finalists(cfg: ExperimentConfig, exp_dir: Path, finalists: pd.DataFrame,
                       data: TrialData | None = None,
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(test metrics, robustness) of the finalists, written to the results folder with their
    test predictions (and, with extra sources, the cross-dataset matrix).

    Robustness: each finalist under JPEG re-compression and down-up scaling (a detector that
    dies under compression is not deployable, whatever its clean AUC). One pass over the
    test split a finalist gives both: the test metrics come from its clean scores.
    ``data``: the search's resolved sets (resolved here when not given)."""
    data = data or resolve_data(cfg)
    shards = data.train.location
    test: dict[str, dict[str, Any]] = {}
    robust: dict[str, Any] = {}
    for _, row in finalists.iterrows():
        tid = str(row["trial_id"])
        test[tid], preds, robust[tid] = finalist_remote(row["checkpoint"], shards, "test")
        preds.to_csv(Path(row["checkpoint"]) / TEST_PREDICTIONS, index=False)
    (exp_dir / TEST_METRICS).write_text(json.dumps(test, indent=1))
    (exp_dir / ROBUSTNESS).write_text(json.dumps(json_safe(robust), indent=1))
    if cfg.data.extra_sources:
        write_source_matrix(exp_dir, source_matrix(data, finalists, test))
    return test, robust


def finalist_latency(finalists: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each finalist's ONNX latency per image (:mod:`search.model.latency`), measured here, on the
    driver's machine, once the trials are done: the clean figure (the trials' own were
    measured while they shared their machines). A model that cannot be measured is
    recorded with why (``error``), without costing the search its tables."""
    out: dict[str, dict[str, Any]] = {}
    for _, row in finalists.iterrows():
        try:
            out[str(row["trial_id"])] = checkpoint_latency(row["checkpoint"]).to_dict()
        except Exception as err:  # an export failure must not lose the finished search
            warnings.warn(f"no latency for trial {row['trial_id']}: {err}", stacklevel=2)
            out[str(row["trial_id"])] = {"error": str(err)[:300]}
    return out


def source_matrix(data: TrialData, finalists: pd.DataFrame,
                  test: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The finalists' cross-dataset matrix, made by the search itself: one row per finalist,
    one column per source (the training one, already scored on test, then every extra
    source's test split), each at the finalist's own validation threshold; the format of
    ``evaluate --cross`` (cross_dataset.json), so the report's Cross-dataset section shows it."""
    own = data.train.name
    matrix: dict[str, Any] = {"split": "test", "rows": {}}
    # Sources whose test split holds images (their manifests were read with the search's).
    scored = {name: prepared.location for name, prepared in data.extra.items()
              if prepared.rows("test")}
    for _, row in finalists.iterrows():
        tid = str(row["trial_id"])
        cells = {own: {**test[tid], "in_domain": True}} if tid in test else {}
        for name, folder in scored.items():
            metrics, _ = evaluate_remote(row["checkpoint"], folder, "test")
            cells[name] = {**metrics, "in_domain": False}
        label = f"{own}: {row.get('arch')} trial {tid}"  # trained on, then which finalist
        matrix["rows"][label] = {"model": str(row["checkpoint"]), "cells": json_safe(cells)}
    return matrix


def write_source_matrix(exp_dir: Path, matrix: dict[str, Any]) -> None:
    """``cross_dataset.json`` and ``.md`` in the results folder."""
    write_matrix(exp_dir, matrix)



__all__ = ["evaluate_finalists", "finalist_latency", "source_matrix", "write_source_matrix"]

"""``config.json`` of an exported folder: how to rebuild and feed the model, its threshold,
the exact training data (by manifest hash) and which trial, epoch and results folder it
came from. ``predict`` and ``evaluate`` rebuild the model from this file alone.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pandas as pd

from search import catalog
from search.config import ExperimentConfig
from search.data.layouts import LABEL_NAMES
from search.data.manifest import load_manifest, manifest_hash
from search.data.sets import dataset_name
from search.filenames import ONNX as ONNX_FILE
from search.filenames import json_safe, portable_experiment, portable_path
from search.model.folder import EXPORT_FORMAT
from search.model.onnx import ONNX_OPSET
from search.model.registry import layer_kwargs
from search.model.weights import describe_weights

THRESHOLD_RULE = "F1-optimal on validation"


def _training_data(cfg: ExperimentConfig) -> dict[str, Any]:
    """What the model was trained on, from the shards' manifest (best effort)."""
    shards = cfg.data.shards
    info: dict[str, Any] = {"shards": portable_path(shards),
                            "name": dataset_name(shards) if shards else "unknown"}
    try:
        manifest = load_manifest(shards)
    except Exception as err:  # shards on another machine: export anyway, say so
        info["note"] = f"manifest not readable at export time: {err}"
        return info
    opts = manifest.get("options", {})
    info.update({
        "manifest_hash": manifest_hash(shards), "layout": manifest.get("layout"),
        "source": portable_path(opts.get("source") or ""), "image_size": manifest.get("image_size"),
        "counts": manifest.get("counts"), "groups": manifest.get("groups"),
        "skipped": len(manifest.get("skipped", [])), "splits": opts.get("splits"),
        "seed": opts.get("seed"), "ratio": cfg.data.ratio,
    })
    return info


def saved_threshold(epoch_metrics: dict[str, Any]) -> tuple[float, str]:
    """The checkpoint's validation threshold and its rule (0.5 when there was none)."""
    threshold = epoch_metrics.get(catalog.val(catalog.THRESHOLD))
    if threshold is None or not math.isfinite(float(threshold)):
        return 0.5, "default 0.5 (validation had no FAKE image to tune on)"
    return float(threshold), THRESHOLD_RULE


def folder_config(cfg: ExperimentConfig, meta: dict[str, Any], row: pd.Series, *,
                   threshold: float, rule: str, selected_by: dict[str, Any], parameters: int,
                   onnx_diff: float, checkpoint: Path, results_dir: Path,
                   calibration: dict[str, Any] | None = None,
                   operating_points: list[dict[str, Any]] | None = None,
                   latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config.json``: how to rebuild and feed the model, its threshold, the exact training
    data, and which trial, epoch and results folder it came from."""
    epoch_metrics = meta.get("metrics", {})
    return {
        "format": EXPORT_FORMAT,
        "arch": cfg.model.arch,
        "layers": layer_kwargs(cfg.model),
        "model": dataclasses.asdict(cfg.model),
        "pretrained_weights": describe_weights(cfg.model.arch, cfg.model.pretrained),
        "input": meta["input"],
        "output": "one logit per image; p_fake = sigmoid(logit); FAKE when p_fake >= threshold; "
                  "p_calibrated = sigmoid(logit / calibration.temperature)",
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        catalog.THRESHOLD: threshold,
        "threshold_rule": rule,
        "calibration": calibration,
        "operating_points": operating_points or [],
        "training_data": _training_data(cfg),
        "experiment": cfg.search.name,
        "trial_id": str(row["trial_id"]),
        "epoch": int(meta.get("epoch", epoch_metrics.get("epoch", 0))),
        "params": {k: json_safe(row[k]) for k in ("arch", "ratio", "lr", "batch_size")
                   if k in row and not pd.isna(row[k])},
        "selected_by": selected_by,
        "parameters": parameters,
        "onnx": {"file": ONNX_FILE, "opset": ONNX_OPSET, "max_abs_diff": onnx_diff,
                 "inputs": ["image"], "outputs": ["logit", "p_fake"]},
        "latency": latency,  # of model.onnx on the exporting machine (search.model.latency)
        "source_checkpoint": portable_path(checkpoint, results_dir),  # in results_dir
        "results_dir": portable_path(results_dir),
        "experiment_config": portable_experiment(cfg.to_dict()),
    }


__all__ = ["THRESHOLD_RULE", "folder_config", "saved_threshold"]

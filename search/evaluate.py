"""Evaluation: a trained model on prepared splits, with the full detector metric set.

One module for both ways a model is evaluated:

- a trial's checkpoint on one split (:func:`evaluate_checkpoint`, :func:`evaluate_remote`):
  the finalists' test-split numbers after a search (the test split is never seen while
  choosing), as a Ray task so that on a GPU cluster it lands on a GPU node;
- a model folder (exported or a checkpoint) on one or several prepared sets
  (:func:`evaluate_model`, :func:`cross_dataset`): ``deepfake-search evaluate`` and its
  trained-on x tested-on matrix, written as ``cross_dataset.md`` / ``.json``;
- a model under perturbations (:func:`evaluate_robustness`): AUC after JPEG re-compression
  (quality 75, 50) and a downscale-upscale by 2, and its drop;
- a search's finalist (:func:`evaluate_finalist`, :func:`finalist_remote`): its test metrics,
  predictions and robustness from one pass over the test split.

Models are rebuilt by :func:`search.predict.build_torch_model`, the one loader of every
command; predictions stream from the shards through the training stream (Ray Data).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch
from numpy.typing import ArrayLike

from search import storage
from search.cluster import connect
from search.data.images import down_up, recompress_jpeg
from search.data.prepare import manifest_hash, verify_shards
from search.data.stream import Normalize, eval_dataset
from search.fmt import markdown_table, number
from search.formats import (
    CONFIG,
    CROSS_JSON,
    CROSS_MD,
    EXPERIMENT,
    TRIALS_CSV,
    TRIALS_PARQUET,
    json_safe,
)
from search.predict import (
    GIVEN_RULE,
    ModelFolderError,
    ModelInfo,
    build_torch_model,
    dataset_name,
    load_model,
    read_model_info,
)
from search.report.cross import DETAIL_COLUMNS, NOTE, detail_table, matrix_table, models
from search.train.metrics import ECE_BINS, detector_metrics
from search.train.worker import predict_split, score_batch

#: The fix a broken checkpoint's error names (export and the test evaluation read them).
RETRAIN = "pick another trial (--trial) or re-train"
#: How format_metrics names detector_metrics' operating points.
OPERATING_LABELS = {"TPR at FPR 1%": "tpr_at_fpr_1pct", "TPR at FPR 5%": "tpr_at_fpr_5pct",
                    "FPR at TPR 95%": "fpr_at_tpr_95pct"}
#: Logical CPUs of a new local cluster: Ray Data's read tasks and decode actors each need
#: whole CPUs, so a small machine gets at least four.
LOCAL_CPUS = max(4, os.cpu_count() or 1)


# ------------------------------------------------------------------ one checkpoint, one split
def load_checkpoint_model(checkpoint_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """A trial's model rebuilt from its checkpoint folder (safetensors + config.json), in
    eval mode on CPU, and that config.json (``experiment``, ``input``, ``metrics``)."""
    model, info = _checkpoint(checkpoint_dir)
    return model, info.meta


def _checkpoint(checkpoint_dir: str | Path) -> tuple[Any, ModelInfo]:
    """A trial's model and its folder's description; an exported model is refused."""
    info = read_model_info(checkpoint_dir, fix=RETRAIN)
    if info.kind != "checkpoint":
        raise ModelFolderError(f"{info.directory / CONFIG} is an exported model's config, not "
                               f"a checkpoint's: {RETRAIN}")
    return build_torch_model(info, fix=RETRAIN), info


def _input(info: ModelInfo) -> dict[str, Any]:
    """The ``input`` entry (size, mean, std) a model folder was trained with."""
    return {"input": {"input_size": info.input_size, "mean": list(info.mean),
                      "std": list(info.std)}}


def _test_threshold(meta: dict[str, Any]) -> float | None:
    """The threshold a checkpoint's test metrics are read at: its validation one, if saved."""
    return meta.get("metrics", {}).get("val_threshold")


def predict_shards(model: Any, meta: dict[str, Any], shards: str | Path, split: str,
                   *, batch_size: int = 128) -> pd.DataFrame:
    """``id, label, p_fake`` for every row of ``split``, streamed through Ray Data."""
    spec = meta["input"]
    ds = eval_dataset(shards, split, size=spec["input_size"], batch_size=batch_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ids, labels, probs = predict_split(model.to(device), ds, batch_size=batch_size, device=device,
                                       normalize=Normalize(spec["mean"], spec["std"]),
                                       amp=device.type == "cuda")
    return pd.DataFrame({"id": ids, "label": labels, "p_fake": probs})


def evaluate_checkpoint(checkpoint_dir: str | Path, shards: str | Path, split: str = "test",
                        *, threshold: float | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics and predictions of one checkpoint on one split (in this process)."""
    model, meta = load_checkpoint_model(checkpoint_dir)
    if threshold is None:
        threshold = _test_threshold(meta)
    preds = predict_shards(model, meta, shards, split)
    metrics = detector_metrics(preds["label"].to_numpy(), preds["p_fake"].to_numpy(),
                               threshold=threshold)
    return metrics, preds


def _on_a_gpu(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` as a Ray task on a GPU when the cluster has one, else here."""
    if ray.cluster_resources().get("GPU", 0) < 1:
        # No GPU to move to: evaluate here rather than hold a CPU that Ray Data's own read
        # tasks need (on a small cluster that wait never ends).
        return fn(*args, **kwargs)
    return ray.get(ray.remote(num_cpus=0.01, num_gpus=1)(fn).remote(*args, **kwargs))


def evaluate_remote(checkpoint_dir: str, shards: str, split: str = "test",
                    threshold: float | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`evaluate_checkpoint` as a Ray task, on a GPU when the cluster has one."""
    return _on_a_gpu(evaluate_checkpoint, checkpoint_dir, shards, split, threshold=threshold)


# ------------------------------------------------------------------ a model folder, any set
def evaluate_model(model_dir: str | Path, shards: str | Path, split: str = "test", *,
                   threshold: float | None = None, threshold_rule: str | None = None,
                   batch_size: int = 128) -> tuple[dict[str, Any], pd.DataFrame]:
    """Full detector metrics of a model folder on a prepared split, at the model's threshold
    (or ``threshold``, whose rule ``threshold_rule`` names: ``given`` by default).

    Returns ``(metrics, predictions)``; ``metrics`` is ``detector_metrics`` plus ``split``,
    ``data`` (the set's name), ``in_domain`` (the set the model was trained on) and
    ``threshold_rule``. Joins or starts Ray (:func:`search.cluster.connect`) to stream the
    shards.
    """
    shards = storage.absolute(shards)
    verify_shards(shards)  # a missing, truncated or changed shard: a clear error before Ray
    model, info = load_model(model_dir)
    connect(num_cpus=LOCAL_CPUS)
    preds = predict_shards(model, _input(info), shards, split, batch_size=batch_size)
    thr = info.threshold if threshold is None else float(threshold)
    rule = threshold_rule or (info.threshold_rule if threshold is None else GIVEN_RULE)
    metrics: dict[str, Any] = detector_metrics(preds["label"].to_numpy(),
                                               preds["p_fake"].to_numpy(), threshold=thr)
    metrics.update({"split": split, "data": dataset_name(shards), "shards": str(shards),
                    "threshold_rule": rule,
                    "in_domain": bool(info.train_hash) and manifest_hash(shards) == info.train_hash})
    return metrics, preds


def format_metrics(metrics: dict[str, Any], info: ModelInfo) -> str:
    """The metric set, confusion matrix and majority baseline as readable text (a missing
    value, ``None`` or NaN, is a dash)."""
    def f(v: Any) -> str:
        return number(v, ".4f")

    n, pos = int(metrics["n"]), float(metrics["positive_rate"])
    fake = round(n * pos)
    thr = metrics["threshold"]
    rule = metrics.get("threshold_rule") or (
        info.threshold_rule if math.isclose(thr, info.threshold) else GIVEN_RULE)
    lines = [
        f"{metrics['data']} [{metrics['split']}]: n={n} (REAL {n - fake}, FAKE {fake})"
        + ("  — the model's own data set (held-out split)" if metrics.get("in_domain") else ""),
        f"threshold {thr:.4g} ({rule})", "",
        f"{'metric':<18} {'at 0.5':>8} {'at thr':>8} {'majority':>9}",
    ]
    for name in ("accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy"):
        base = metrics.get(f"baseline_{name}")
        lines.append(f"{name:<18} {f(metrics[name]):>8} {f(metrics[f'{name}_at_threshold']):>8} "
                     f"{f(base) if base is not None else '':>9}")
    lines += ["", "threshold-free: " + ", ".join(
        f"{k} {f(metrics[k])}" for k in ("auc", "ap", "eer", "log_loss")),
        "operating points: " + ", ".join(
            f"{label} {f(metrics.get(k))}" for label, k in OPERATING_LABELS.items()),
        f"calibration: ece {f(metrics.get('ece'))} (p_fake, {ECE_BINS} equal-width bins)", "",
        f"confusion matrix at threshold {thr:.4g} (FAKE = positive):",
        f"{'':>12} {'pred REAL':>10} {'pred FAKE':>10}",
        f"{'true REAL':>12} {metrics['tn_at_threshold']:>10} {metrics['fp_at_threshold']:>10}",
        f"{'true FAKE':>12} {metrics['fn_at_threshold']:>10} {metrics['tp_at_threshold']:>10}"]
    return "\n".join(lines)


# ------------------------------------------------------------------ robustness
CLEAN = "clean"
#: The perturbations finalists are scored under: name -> what it does to one decoded
#: HxWx3 uint8 image at the model's input size (before normalisation).
PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "jpeg_q75": partial(recompress_jpeg, quality=75),
    "jpeg_q50": partial(recompress_jpeg, quality=50),
    "downup_x2": partial(down_up, factor=2),
}


def perturbed_predictions(model: Any, meta: dict[str, Any], shards: str | Path, split: str, *,
                          conditions: Mapping[str, Callable[[np.ndarray], np.ndarray]] = PERTURBATIONS,
                          batch_size: int = 128) -> pd.DataFrame:
    """``id, label`` and one p_fake column per condition (``clean`` first), sorted by id.

    One pass over the split: each batch is decoded once, then scored as it is and after
    each perturbation by the scoring step of every evaluation (``score_batch``), so the
    ``clean`` column is :func:`evaluate_checkpoint`'s p_fake.
    """
    spec = meta["input"]
    ds = eval_dataset(shards, split, size=spec["input_size"], batch_size=batch_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    score = partial(score_batch, model, device=device, amp=device.type == "cuda",
                    normalize=Normalize(spec["mean"], spec["std"]))
    columns: dict[str, list[np.ndarray]] = {CLEAN: [], **{name: [] for name in conditions}}
    ids: list[str] = []
    labels: list[np.ndarray] = []
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2):
        images = batch["image"]
        columns[CLEAN].append(score(images))
        for name, perturb in conditions.items():
            columns[name].append(score(np.stack([perturb(img) for img in images])))
        labels.append(np.asarray(batch["label"]).astype(np.int64))
        ids.extend(str(i) for i in batch["id"])
    if not ids:
        raise ValueError(f"the {split} split of {shards} has no image to evaluate")
    frame = pd.DataFrame({"id": ids, "label": np.concatenate(labels),
                          **{name: np.concatenate(parts) for name, parts in columns.items()}})
    return frame.sort_values("id", kind="stable", ignore_index=True)


def robustness_summary(y_true: ArrayLike, scores: Mapping[str, ArrayLike],
                       threshold: float) -> dict[str, dict[str, float]]:
    """Per condition: ``auc``, ``auc_drop`` (clean AUC minus this one: positive is worse),
    ``balanced_accuracy`` at ``threshold`` (the model's own, as deployed) and the
    ``tpr_at_fpr_5pct`` operating point. ``scores`` must hold ``clean``."""
    if CLEAN not in scores:
        raise ValueError(f"scores need a {CLEAN!r} entry to measure the drop against")
    out: dict[str, dict[str, float]] = {}
    for name, p in scores.items():
        m = detector_metrics(y_true, p, threshold=threshold)
        out[name] = {"auc": m["auc"], "balanced_accuracy": m["balanced_accuracy_at_threshold"],
                     "tpr_at_fpr_5pct": m["tpr_at_fpr_5pct"]}
    for m in out.values():
        m["auc_drop"] = out[CLEAN]["auc"] - m["auc"]
    return out


def evaluate_robustness(model_dir: str | Path, shards: str | Path, split: str = "test", *,
                        conditions: Mapping[str, Callable[[np.ndarray], np.ndarray]] = PERTURBATIONS,
                        threshold: float | None = None,
                        batch_size: int = 128) -> dict[str, Any]:
    """A model folder (exported or a checkpoint) on a prepared split, clean and under each
    perturbation: ``split``, ``data``, ``n``, ``threshold`` and ``conditions`` (condition ->
    :func:`robustness_summary`'s figures). A detector whose AUC collapses under JPEG
    re-compression reads the codec, not the manipulation, and is not deployable."""
    shards = storage.absolute(shards)
    verify_shards(shards)
    info = read_model_info(model_dir, fix=RETRAIN)
    model = build_torch_model(info, fix=RETRAIN)
    connect(num_cpus=LOCAL_CPUS)  # joins the running cluster (a search, a Ray task) as it is
    preds = perturbed_predictions(model, _input(info), shards, split, conditions=conditions,
                                  batch_size=batch_size)
    thr = info.threshold if threshold is None else float(threshold)
    return _robustness(preds, conditions, thr, split, shards)


def _robustness(preds: pd.DataFrame, conditions: Collection[str], threshold: float, split: str,
                shards: str | Path) -> dict[str, Any]:
    """:func:`evaluate_robustness`'s result from :func:`perturbed_predictions`' frame."""
    summary = robustness_summary(preds["label"].to_numpy(),
                                 {name: preds[name].to_numpy() for name in (CLEAN, *conditions)},
                                 threshold)
    return {"split": split, "data": dataset_name(shards), "n": len(preds),
            "threshold": threshold, "conditions": summary}


# ------------------------------------------------------------------ a search's finalist
def evaluate_finalist(checkpoint_dir: str | Path, shards: str | Path, split: str = "test", *,
                      conditions: Mapping[str, Callable[[np.ndarray], np.ndarray]] = PERTURBATIONS,
                      batch_size: int = 128,
                      ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """``(metrics, predictions, robustness)`` of a trial's checkpoint from one pass over the
    split: :func:`evaluate_checkpoint`'s metrics and ``id, label, p_fake`` (read off the
    ``clean`` column of :func:`perturbed_predictions`: the same scoring step) and
    :func:`evaluate_robustness`'s figures. The split is decoded and scored clean once,
    not once for the test metrics and again for the robustness table."""
    shards = storage.absolute(shards)
    verify_shards(shards)
    model, info = _checkpoint(checkpoint_dir)
    scored = perturbed_predictions(model, _input(info), shards, split, conditions=conditions,
                                   batch_size=batch_size)
    preds = scored[["id", "label", CLEAN]].rename(columns={CLEAN: "p_fake"})
    metrics = detector_metrics(preds["label"].to_numpy(), preds["p_fake"].to_numpy(),
                               threshold=_test_threshold(info.meta))
    return metrics, preds, _robustness(scored, conditions, info.threshold, split, shards)


def finalist_remote(checkpoint_dir: str, shards: str, split: str = "test",
                    ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """:func:`evaluate_finalist` as a Ray task, on a GPU when the cluster has one (what the
    search runs for each finalist once its trials are done)."""
    return _on_a_gpu(evaluate_finalist, checkpoint_dir, shards, split)


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
    the same tables as the report's (:mod:`search.report.cross`), as markdown."""
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
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(matrix, indent=1) + "\n")
    md_path = out_dir / CROSS_MD
    md_path.write_text(cross_dataset_markdown(matrix))
    return matrix, md_path


__all__ = ["CLEAN", "LOCAL_CPUS", "OPERATING_LABELS", "PERTURBATIONS", "RETRAIN", "cross_dataset",
           "cross_dataset_markdown", "evaluate_checkpoint", "evaluate_finalist", "evaluate_model",
           "evaluate_remote", "evaluate_robustness", "finalist_remote", "find_results_dir",
           "format_metrics", "load_checkpoint_model", "perturbed_predictions", "predict_shards",
           "robustness_summary"]

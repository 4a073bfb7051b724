"""Scoring a trained model on prepared splits, with the full detector metric set.

- a trial's checkpoint on one split (:func:`evaluate_checkpoint`, :func:`evaluate_remote`):
  the finalists' test-split numbers after a search (the test split is never seen while
  choosing), as a Ray task so that on a GPU cluster it lands on a GPU node;
- a model folder (exported or a checkpoint) on a prepared set (:func:`evaluate_model`):
  ``deepfake-search evaluate``;
- a model under perturbations (:func:`evaluate_robustness`): AUC after JPEG re-compression
  (quality 75, 50) and a downscale-upscale by 2, and its drop;
- a search's finalist (:func:`evaluate_finalist`, :func:`finalist_remote`): its test metrics,
  predictions and robustness from one pass over the test split.

Models are rebuilt by the model layer's one loader (:mod:`search.model.folder`);
predictions stream from the shards through the training stream (Ray Data) and are scored by
the inference step the training loop validates with (:mod:`search.model.inference`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch
from numpy.typing import ArrayLike

from search import catalog, storage
from search.cluster import connect
from search.data.images import down_up, recompress_jpeg
from search.data.manifest import manifest_hash, verify_shards
from search.data.sets import dataset_name
from search.data.stream import Normalize, eval_dataset
from search.display import number
from search.model.checkpoint import RETRAIN, load_checkpoint, load_checkpoint_model
from search.model.folder import (
    GIVEN_RULE,
    ModelInfo,
    build_torch_model,
    load_model,
    read_model_info,
)
from search.model.inference import predict_split, score_batch
from search.train.metrics import ECE_BINS, detector_metrics

#: How format_metrics names detector_metrics' operating points.
OPERATING_LABELS = {catalog.METRICS[k].label: k for k in catalog.OPERATING_POINTS}
#: Logical CPUs of a new local cluster: Ray Data's read tasks and decode actors each need
#: whole CPUs, so a small machine gets at least four.
LOCAL_CPUS = max(4, os.cpu_count() or 1)


def _input(info: ModelInfo) -> dict[str, Any]:
    """The ``input`` entry (size, mean, std) a model folder was trained with."""
    return {"input": {"input_size": info.input_size, "mean": list(info.mean),
                      "std": list(info.std)}}


def _test_threshold(meta: dict[str, Any]) -> float | None:
    """The threshold a checkpoint's test metrics are read at: its validation one, if saved."""
    return meta.get("metrics", {}).get(catalog.val(catalog.THRESHOLD))


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

    n, pos = int(metrics[catalog.N]), float(metrics[catalog.POSITIVE_RATE])
    fake = round(n * pos)
    thr = metrics[catalog.THRESHOLD]
    tp, tn, fp, fn = (metrics[catalog.at_threshold(k)] for k in catalog.CONFUSION)
    rule = metrics.get("threshold_rule") or (
        info.threshold_rule if math.isclose(thr, info.threshold) else GIVEN_RULE)
    lines = [
        f"{metrics['data']} [{metrics['split']}]: n={n} (REAL {n - fake}, FAKE {fake})"
        + ("  — the model's own data set (held-out split)" if metrics.get("in_domain") else ""),
        f"threshold {thr:.4g} ({rule})", "",
        f"{'metric':<18} {'at 0.5':>8} {'at thr':>8} {'majority':>9}",
    ]
    for name in catalog.DECISION:
        base = metrics.get(catalog.baseline(name))
        at_thr = metrics[catalog.at_threshold(name)]
        lines.append(f"{name:<18} {f(metrics[name]):>8} {f(at_thr):>8} "
                     f"{f(base) if base is not None else '':>9}")
    lines += ["", "threshold-free: " + ", ".join(
        f"{k} {f(metrics[k])}" for k in catalog.THRESHOLD_FREE),
        "operating points: " + ", ".join(
            f"{label} {f(metrics.get(k))}" for label, k in OPERATING_LABELS.items()),
        f"calibration: ece {f(metrics.get(catalog.ECE))} (p_fake, {ECE_BINS} equal-width bins)", "",
        f"confusion matrix at threshold {thr:.4g} (FAKE = positive):",
        f"{'':>12} {'pred REAL':>10} {'pred FAKE':>10}",
        *(f"{row:>12} {counts[0]:>10} {counts[1]:>10}"
          for row, counts in (("true REAL", (tn, fp)), ("true FAKE", (fn, tp))))]
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
        # Balanced accuracy at the model's own threshold (as deployed), not at 0.5.
        out[name] = {catalog.AUC: m[catalog.AUC],
                     catalog.BALANCED_ACCURACY: m[catalog.BALANCED_ACCURACY_AT_THRESHOLD],
                     catalog.TPR_AT_FPR_5PCT: m[catalog.TPR_AT_FPR_5PCT]}
    for m in out.values():
        m[catalog.AUC_DROP] = out[CLEAN][catalog.AUC] - m[catalog.AUC]
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
    return {"split": split, "data": dataset_name(shards), catalog.N: len(preds),
            catalog.THRESHOLD: threshold, "conditions": summary}


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
    model, info = load_checkpoint(checkpoint_dir)
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


__all__ = ["CLEAN", "LOCAL_CPUS", "OPERATING_LABELS", "PERTURBATIONS", "evaluate_checkpoint",
           "evaluate_finalist", "evaluate_model", "evaluate_remote", "evaluate_robustness",
           "finalist_remote", "format_metrics", "perturbed_predictions", "predict_shards",
           "robustness_summary"]

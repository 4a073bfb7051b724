"""Deepfake-detection metrics as pure functions: numpy in, plain Python numbers out.

DEEPFAKE (label 1) is the positive class; inputs are ``y_true`` (0/1) and ``p_fake``
(probabilities in [0, 1], i.e. ``sigmoid(logit)``). A prediction is FAKE when
``p_fake >= threshold`` (the same convention as scikit-learn's curves). Outputs are Python
``int``/``float`` so they go straight into JSON, Ray Tune reports and result tables.

Degenerate inputs do not raise: zero divisions give 0.0, and threshold-free metrics that
need both classes (``auc``, ``ap``, ``eer``) are NaN when ``y_true`` holds a single class.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "confusion",
    "threshold_metrics",
    "eer",
    "best_f1_threshold",
    "majority_baseline",
    "detector_metrics",
]

DEFAULT_THRESHOLD = 0.5
#: Probabilities are clipped to [EPS, 1 - EPS] for log loss so 0/1 predictions stay finite.
EPS = 1e-7


def _labels(y: ArrayLike, name: str) -> np.ndarray:
    """``y`` as a flat int array of 0/1, or a ValueError saying what is wrong."""
    arr = np.asarray(y).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty: metrics need at least one sample")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 (REAL) and 1 (DEEPFAKE)")
    return arr.astype(np.int64)


def _probs(p: ArrayLike, n: int) -> np.ndarray:
    """``p`` as a flat float array in [0, 1] of length ``n``."""
    arr = np.asarray(p, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise ValueError(f"p_fake has {arr.size} values but y_true has {n}")
    if not np.isfinite(arr).all():
        raise ValueError("p_fake contains NaN or inf")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"p_fake must be probabilities in [0, 1], got range [{arr.min():.4g}, "
            f"{arr.max():.4g}]; apply sigmoid to logits first"
        )
    return arr


def _inputs(y_true: ArrayLike, p_fake: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(y, p)`` pair."""
    y = _labels(y_true, "y_true")
    return y, _probs(p_fake, y.size)


def _div(num: float, den: float) -> float:
    """``num / den`` with 0.0 for an empty denominator (zero-division rule)."""
    return float(num) / float(den) if den else 0.0


def _two_classes(y: np.ndarray) -> bool:
    """True when both REAL and DEEPFAKE occur (needed by ROC/PR-based metrics)."""
    return bool(y.min() == 0 and y.max() == 1)


def confusion(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, int]:
    """Confusion counts with DEEPFAKE as positive: ``tp``, ``tn``, ``fp``, ``fn``."""
    y = _labels(y_true, "y_true")
    pred = _labels(y_pred, "y_pred")
    if pred.size != y.size:
        raise ValueError(f"y_pred has {pred.size} values but y_true has {y.size}")
    return {
        "tp": int(np.sum((y == 1) & (pred == 1))),
        "tn": int(np.sum((y == 0) & (pred == 0))),
        "fp": int(np.sum((y == 0) & (pred == 1))),
        "fn": int(np.sum((y == 1) & (pred == 0))),
    }


def _from_counts(c: dict[str, int]) -> dict[str, float]:
    """Accuracy, precision, recall, F1, specificity, balanced accuracy from counts."""
    tp, tn, fp, fn = c["tp"], c["tn"], c["fp"], c["fn"]
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    specificity = _div(tn, tn + fp)
    # Mean recall over the classes present (scikit-learn's rule for a single-class y_true).
    per_class = [r for r, support in ((recall, tp + fn), (specificity, tn + fp)) if support]
    return {
        "accuracy": _div(tp + tn, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "specificity": specificity,
        "balanced_accuracy": float(sum(per_class) / len(per_class)),
    }


def threshold_metrics(
    y_true: ArrayLike, p_fake: ArrayLike, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, float]:
    """Metrics of the hard decision ``p_fake >= threshold``, plus the confusion counts (ints)."""
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    y, p = _inputs(y_true, p_fake)
    counts = confusion(y, (p >= threshold).astype(np.int64))
    return {**_from_counts(counts), **counts}


def eer(y_true: ArrayLike, p_fake: ArrayLike) -> float:
    """Equal error rate: where FPR meets FNR on the ROC curve, linearly interpolated.

    NaN when ``y_true`` has a single class (FPR or FNR is undefined).
    """
    y, p = _inputs(y_true, p_fake)
    if not _two_classes(y):
        return math.nan
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    diff = (1.0 - tpr) - fpr  # FNR - FPR: starts at 1 (fpr=0, tpr=0), ends at -1
    i = int(np.argmax(diff <= 0.0))
    if diff[i] == 0.0 or i == 0:
        return float(fpr[i])
    # Crossing between points i-1 and i: both rates are linear along the segment.
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def best_f1_threshold(y_true: ArrayLike, p_fake: ArrayLike) -> float:
    """Threshold maximising F1 over scikit-learn's precision-recall curve.

    Ties go to the lowest such threshold. NaN when ``y_true`` has no DEEPFAKE sample
    (F1 is 0 at every threshold, so there is no optimum).
    """
    y, p = _inputs(y_true, p_fake)
    if not y.any():
        return math.nan
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(thresholds[int(np.argmax(f1))])


def majority_baseline(y_true: ArrayLike) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of always predicting the majority class.

    Ties go to REAL (scikit-learn's ``DummyClassifier("most_frequent")`` rule). The bar a
    detector must clear on an imbalanced split, e.g. 1:2 REAL:FAKE gives accuracy 0.667.
    """
    y = _labels(y_true, "y_true")
    majority = int(2 * int(y.sum()) > y.size)
    m = _from_counts(confusion(y, np.full_like(y, majority)))
    return {k: m[k] for k in ("accuracy", "precision", "recall", "f1")}


def detector_metrics(
    y_true: ArrayLike, p_fake: ArrayLike, *, threshold: float | None = None
) -> dict[str, float]:
    """Every detector metric in ONE flat dict (the per-epoch report and table columns).

    * at 0.5: ``accuracy``, ``precision``, ``recall``, ``f1``, ``specificity``,
      ``balanced_accuracy``, ``tp``, ``tn``, ``fp``, ``fn``;
    * threshold-free: ``auc`` (ROC), ``ap`` (average precision), ``eer``, ``log_loss``;
    * ``threshold`` (the F1-optimal one, or the given one, e.g. chosen on validation and
      applied to test) and the threshold metrics there as ``<name>_at_threshold``; when it
      is undefined (no DEEPFAKE sample, or a NaN threshold passed on) 0.5 is used;
    * ``baseline_accuracy|precision|recall|f1`` (majority class), ``n``, ``positive_rate``.
    """
    y, p = _inputs(y_true, p_fake)
    both = _two_classes(y)
    out: dict[str, float] = {"n": int(y.size), "positive_rate": float(y.mean())}
    out.update(threshold_metrics(y, p, DEFAULT_THRESHOLD))
    out["auc"] = float(roc_auc_score(y, p)) if both else math.nan
    out["ap"] = float(average_precision_score(y, p)) if both else math.nan
    out["eer"] = eer(y, p)
    out["log_loss"] = float(log_loss(y, np.clip(p, EPS, 1.0 - EPS), labels=[0, 1]))
    thr = best_f1_threshold(y, p) if threshold is None else float(threshold)
    if math.isnan(thr):
        thr = DEFAULT_THRESHOLD
    out["threshold"] = thr
    out.update({f"{k}_at_threshold": v for k, v in threshold_metrics(y, p, thr).items()})
    out.update({f"baseline_{k}": v for k, v in majority_baseline(y).items()})
    return out

"""Deepfake-detection metrics as pure functions: numpy in, plain Python numbers out.

DEEPFAKE (label 1) is the positive class; inputs are ``y_true`` (0/1) and ``p_fake``
(probabilities in [0, 1], i.e. ``sigmoid(logit)``). A prediction is FAKE when
``p_fake >= threshold`` (the same convention as scikit-learn's curves). Outputs are Python
``int``/``float`` so they go straight into JSON, Ray Tune reports and result tables.

Degenerate inputs do not raise: zero divisions give 0.0, and metrics that need both classes
(``auc``, ``ap``, ``eer``, the operating points ``tpr_at_fpr``/``fpr_at_tpr``/
``threshold_at_fpr`` and ``fit_temperature``) are NaN when ``y_true`` holds a single class.

Operating points are read off the empirical ROC curve without interpolation: every point is
a rule ``p_fake >= t`` that can actually be deployed (an interpolated point would need a
randomised decision), and tied scores move together, as one threshold flags all of them.
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

from search import catalog
from search.catalog import (
    AP,
    AUC,
    ECE,
    EER,
    FN,
    FP,
    FPR_AT_TPR_95PCT,
    LOG_LOSS,
    THRESHOLD,
    TN,
    TP,
    TPR_AT_FPR_1PCT,
    TPR_AT_FPR_5PCT,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "calibration",
    "confusion",
    "threshold_metrics",
    "eer",
    "best_f1_threshold",
    "majority_baseline",
    "tpr_at_fpr",
    "fpr_at_tpr",
    "threshold_at_fpr",
    "expected_calibration_error",
    "logit",
    "fit_temperature",
    "OPERATING_POINTS",
    "ECE_BINS",
    "TEMPERATURE_BOUNDS",
    "detector_metrics",
]

DEFAULT_THRESHOLD = 0.5
#: Probabilities are clipped to [EPS, 1 - EPS] for log loss so 0/1 predictions stay finite.
EPS = 1e-7
#: ``detector_metrics``' operating points: key (named in search.catalog) -> (function, rate).
OPERATING_POINTS = {TPR_AT_FPR_1PCT: ("tpr_at_fpr", 0.01), TPR_AT_FPR_5PCT: ("tpr_at_fpr", 0.05),
                    FPR_AT_TPR_95PCT: ("fpr_at_tpr", 0.95)}
ECE_BINS = 15
#: Temperatures ``fit_temperature`` searches between (a separable split pushes T to a bound).
TEMPERATURE_BOUNDS = (0.01, 100.0)


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
        TP: int(np.sum((y == 1) & (pred == 1))),
        TN: int(np.sum((y == 0) & (pred == 0))),
        FP: int(np.sum((y == 0) & (pred == 1))),
        FN: int(np.sum((y == 1) & (pred == 0))),
    }


def _from_counts(counts: dict[str, int]) -> dict[str, float]:
    """Accuracy, precision, recall, F1, specificity, balanced accuracy from counts."""
    tp, tn, fp, fn = (counts[k] for k in catalog.CONFUSION)
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    specificity = _div(tn, tn + fp)
    # Mean recall over the classes present (scikit-learn's rule for a single-class y_true).
    per_class = [r for r, support in ((recall, tp + fn), (specificity, tn + fp)) if support]
    return {
        catalog.ACCURACY: _div(tp + tn, tp + tn + fp + fn),
        catalog.PRECISION: precision,
        catalog.RECALL: recall,
        catalog.F1: _div(2 * tp, 2 * tp + fp + fn),
        catalog.SPECIFICITY: specificity,
        catalog.BALANCED_ACCURACY: float(sum(per_class) / len(per_class)),
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
    return {k: m[k] for k in catalog.BASELINE_METRICS}


# ------------------------------------------------------------------ operating points
def _rate(value: float, name: str) -> float:
    """A target rate in [0, 1], or a ValueError naming it."""
    if not (isinstance(value, (int, float, np.floating)) and 0.0 <= float(value) <= 1.0):
        raise ValueError(f"{name} must be a rate between 0 and 1, not {value!r}")
    return float(value)


def _roc_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, tp, fp) of every rule ``p >= t``, strictest first: ``t = inf`` (nothing
    flagged), then each distinct score, highest first (ties flagged together)."""
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # the last sample of each distinct score
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(1 - ys)[last]
    return np.r_[np.inf, ps[last]], np.r_[0, tp], np.r_[0, fp]


def _allowed_by_fpr(y: np.ndarray, p: np.ndarray, fpr: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(thresholds, tp, index of the loosest rule whose FPR <= ``fpr``)."""
    thr, tp, fp = _roc_counts(y, p)
    n_neg = y.size - int(y.sum())
    # Counts, not rates: 1/20 <= 0.05 must hold whatever the float rounding of either side.
    ok = fp <= fpr * n_neg * (1 + 1e-12) + 1e-9
    return thr, tp, int(np.flatnonzero(ok)[-1])  # fp is non-decreasing; index 0 has fp = 0


def tpr_at_fpr(y_true: ArrayLike, p_fake: ArrayLike, fpr: float) -> float:
    """The highest TPR (recall of DEEPFAKE) of a rule ``p_fake >= t`` whose FPR is at most
    ``fpr``: how many fakes are caught when at most that share of real images is flagged.

    NaN when ``y_true`` has a single class.
    """
    fpr = _rate(fpr, "fpr")
    y, p = _inputs(y_true, p_fake)
    if not _two_classes(y):
        return math.nan
    _, tp, i = _allowed_by_fpr(y, p, fpr)
    return float(tp[i] / y.sum())


def fpr_at_tpr(y_true: ArrayLike, p_fake: ArrayLike, tpr: float) -> float:
    """The lowest FPR of a rule ``p_fake >= t`` whose TPR is at least ``tpr``: the share of
    real images flagged when that share of fakes must be caught.

    NaN when ``y_true`` has a single class.
    """
    tpr = _rate(tpr, "tpr")
    y, p = _inputs(y_true, p_fake)
    if not _two_classes(y):
        return math.nan
    _, tp, fp = _roc_counts(y, p)
    n_pos = int(y.sum())
    i = int(np.flatnonzero(tp >= tpr * n_pos * (1 - 1e-12) - 1e-9)[0])  # the last rule has tp = n_pos
    return float(fp[i] / (y.size - n_pos))


def threshold_at_fpr(y_true: ArrayLike, p_fake: ArrayLike, fpr: float) -> float:
    """The threshold ``t`` of the rule ``p_fake >= t`` with the highest TPR among those whose
    FPR on these labels (validation) is at most ``fpr``: the lowest such score.

    ``t`` is one of the scores, so the rule flags that sample and its ties. ``inf`` when only
    flagging nothing meets the target (the top-scored image is REAL and one false positive is
    already too many); NaN when ``y_true`` has a single class.
    """
    fpr = _rate(fpr, "fpr")
    y, p = _inputs(y_true, p_fake)
    if not _two_classes(y):
        return math.nan
    thr, _, i = _allowed_by_fpr(y, p, fpr)
    return float(thr[i])


# ------------------------------------------------------------------ calibration
def expected_calibration_error(y_true: ArrayLike, p_fake: ArrayLike, bins: int = ECE_BINS) -> float:
    """Expected calibration error of ``p_fake`` read as the probability of DEEPFAKE.

    ``bins`` equal-width bins over [0, 1] (left-closed, the last one closed: ``p = 1`` is in
    it); ECE = sum over bins of (share of samples in the bin) x |share of DEEPFAKE in the bin
    - mean p_fake in the bin|. This is the positive-class form, not the max-probability
    (top-label) one: ``p_fake`` is the number a detector's user reads and thresholds, and the
    top-label form folds ``p`` and ``1 - p`` together, so a model over-confident on fakes
    and under-confident on reals can look calibrated there. Defined for a single class too.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, not {bins!r}")
    y, p = _inputs(y_true, p_fake)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    gap = np.abs(np.bincount(index, weights=y, minlength=bins)
                 - np.bincount(index, weights=p, minlength=bins))  # n_b * |acc_b - conf_b|
    return float(gap.sum() / y.size)


def logit(p_fake: ArrayLike) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to [EPS, 1 - EPS] (|logit| <= 16.1): the logits
    behind saved probabilities (float32's sigmoid rounds to exactly 1.0 above about 16.6)."""
    p = np.clip(np.asarray(p_fake, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _nll(y: np.ndarray, z: np.ndarray, temperature: float) -> float:
    """Mean negative log likelihood of ``sigmoid(z / T)`` (stable for any logit)."""
    s = z / temperature
    return float(np.mean(np.logaddexp(0.0, s) - y * s))  # -log sigmoid(s) if y else -log(1 - ...)


def fit_temperature(y_true: ArrayLike, logits: ArrayLike, *,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature ``T`` minimising the NLL of ``sigmoid(logit / T)`` on these labels.

    Temperature scaling (Guo et al., 2017): one parameter, so ranking, AUC and every
    threshold's decisions stay as they are and only the probabilities change. The NLL is
    convex in ``1 / T`` (logistic regression with one weight and no bias), hence unimodal in
    ``log T``: a golden-section search over ``log T`` within ``bounds`` finds it to 1e-9.
    A separable split (every FAKE above every REAL) pushes ``T`` to the lower bound. NaN when
    ``y_true`` has a single class (nothing to calibrate against).
    """
    y = _labels(y_true, "y_true")
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if z.size != y.size:
        raise ValueError(f"logits has {z.size} values but y_true has {y.size}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or inf")
    lo, hi = (math.log(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must be two positive numbers, low < high, not {bounds!r}")
    if not _two_classes(y):
        return math.nan
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = _nll(y, z, math.exp(c)), _nll(y, z, math.exp(d))
    while b - a > 1e-9:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = _nll(y, z, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = _nll(y, z, math.exp(d))
    return float(math.exp((a + b) / 2.0))


def calibration(y_true: ArrayLike, p_fake: ArrayLike) -> dict[str, float]:
    """How well ``p_fake`` reads as a probability: ``log_loss`` (mean NLL, ``p`` clipped to
    [EPS, 1 - EPS]) and ``ece`` (:func:`expected_calibration_error`)."""
    y, p = _inputs(y_true, p_fake)
    return {LOG_LOSS: float(log_loss(y, np.clip(p, EPS, 1.0 - EPS), labels=[0, 1])),
            ECE: expected_calibration_error(y, p)}


def detector_metrics(
    y_true: ArrayLike, p_fake: ArrayLike, *, threshold: float | None = None
) -> dict[str, float]:
    """Every detector metric in ONE flat dict (the per-epoch report and table columns).

    * at 0.5: ``accuracy``, ``precision``, ``recall``, ``f1``, ``specificity``,
      ``balanced_accuracy``, ``tp``, ``tn``, ``fp``, ``fn``;
    * threshold-free: ``auc`` (ROC), ``ap`` (average precision), ``eer``, ``log_loss``,
      ``ece`` (:func:`expected_calibration_error`), and the operating points
      ``tpr_at_fpr_1pct``, ``tpr_at_fpr_5pct`` (TPR at FPR <= 1% / 5%) and
      ``fpr_at_tpr_95pct`` (FPR at TPR >= 95%);
    * ``threshold`` (the F1-optimal one, or the given one, e.g. chosen on validation and
      applied to test) and the threshold metrics there as ``<name>_at_threshold``; when it
      is undefined (no DEEPFAKE sample, or a NaN threshold passed on) 0.5 is used;
    * ``baseline_accuracy|precision|recall|f1`` (majority class), ``n``, ``positive_rate``.
    """
    y, p = _inputs(y_true, p_fake)
    both = _two_classes(y)
    out: dict[str, float] = {catalog.N: int(y.size), catalog.POSITIVE_RATE: float(y.mean())}
    out.update(threshold_metrics(y, p, DEFAULT_THRESHOLD))
    out[AUC] = float(roc_auc_score(y, p)) if both else math.nan
    out[AP] = float(average_precision_score(y, p)) if both else math.nan
    out[EER] = eer(y, p)
    out.update(calibration(y, p))
    rates = {"tpr_at_fpr": tpr_at_fpr, "fpr_at_tpr": fpr_at_tpr}
    out.update({key: rates[name](y, p, target) for key, (name, target) in OPERATING_POINTS.items()})
    thr = best_f1_threshold(y, p) if threshold is None else float(threshold)
    if math.isnan(thr):
        thr = DEFAULT_THRESHOLD
    out[THRESHOLD] = thr
    out.update({catalog.at_threshold(k): v for k, v in threshold_metrics(y, p, thr).items()})
    out.update({catalog.baseline(k): v for k, v in majority_baseline(y).items()})
    return out

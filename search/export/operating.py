"""Operating points: the threshold for a target false-positive rate, chosen on validation.

For each ``--target-fpr`` the threshold with the highest validation TPR at validation
FPR <= the target is kept, with what it gives on validation (where it was chosen) and on
test (the honest figure).
"""

from __future__ import annotations

import math
from typing import Any

from search import catalog
from search.model.checkpoint import Predictions
from search.model.folder import sigmoid
from search.train.metrics import logit, threshold_at_fpr, threshold_metrics


def rate_percent(rate: float) -> str:
    return f"{rate * 100:.3g}%"


def _at_threshold(preds: Predictions, threshold: float) -> dict[str, Any]:
    """The operating point a threshold gives on one split: FPR, TPR and the counts."""
    m = threshold_metrics(*preds, threshold)
    fp, tn = m[catalog.FP], m[catalog.TN]
    return {"fpr": fp / (fp + tn) if tn + fp else math.nan,
            "tpr": m[catalog.RECALL], catalog.PRECISION: m[catalog.PRECISION],
            catalog.F1: m[catalog.F1],
            catalog.BALANCED_ACCURACY: m[catalog.BALANCED_ACCURACY],
            **{k: m[k] for k in (catalog.TP, catalog.FP, catalog.TN, catalog.FN)}}


def operating_point(target_fpr: float, val: Predictions, test: Predictions | None,
                    temperature: float | None = None) -> dict[str, Any]:
    """The threshold with the highest validation TPR at validation FPR <= ``target_fpr``,
    and what it gives on validation and test; a ValueError when no FAKE is caught there."""
    threshold = threshold_at_fpr(*val, target_fpr)
    n_real = int((val[0] == 0).sum())
    if math.isnan(threshold):
        raise ValueError("--target-fpr needs REAL and FAKE images in the validation split, "
                         f"and it has {n_real} REAL of {val[0].size}")
    at_val = _at_threshold(val, threshold) if math.isfinite(threshold) else {"tpr": 0.0}
    if at_val["tpr"] == 0.0:
        raise ValueError(f"at FPR <= {rate_percent(target_fpr)} on validation this model "
                         f"catches no FAKE image (the validation split has {n_real} REAL "
                         "images, and its top-scored ones are REAL): choose a larger "
                         "--target-fpr")
    return {"target_fpr": target_fpr, catalog.THRESHOLD: threshold,
            "rule": f"FPR <= {rate_percent(target_fpr)} on validation (highest TPR)",
            "p_calibrated": float(sigmoid(logit(threshold), temperature)) if temperature else None,
            "validation": at_val, "test": _at_threshold(test, threshold) if test else None}


def check_targets(targets: Any) -> list[float]:
    out = []
    for t in targets or ():
        value = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else math.nan
        if not 0.0 < value < 1.0:
            raise ValueError(f"--target-fpr must be a rate between 0 and 1 (0.01 is 1%), not {t!r}")
        out.append(value)
    return sorted(set(out))


__all__ = ["check_targets", "operating_point", "rate_percent"]

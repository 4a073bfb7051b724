"""The finalists' robustness (``robustness.json``) as tables: AUC clean and under each
perturbation, and its drop (pandas only: the report and the leaderboard both show it).

The file maps a trial id to what :func:`search.evaluate.evaluate_robustness` returned for
its checkpoint: ``split``, ``n``, ``threshold`` and ``conditions`` (condition -> ``auc``,
``auc_drop``, ``balanced_accuracy``, ``tpr_at_fpr_5pct``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import pandas as pd

from search import catalog

NOTE = ("Each finalist's {split} split, scored clean and after perturbing the decoded images "
        "before normalisation: JPEG re-compression at quality 75 and 50, and a downscale by 2 "
        "and back (bilinear). `drop` is the clean AUC minus the perturbed one: a detector whose "
        "AUC collapses under compression reads the codec, not the manipulation, and will not "
        "survive a re-shared image. Balanced accuracy is at the model's own threshold.")
#: Readable names of the conditions :data:`search.evaluate.PERTURBATIONS` defines.
CONDITIONS = {"clean": "clean", "jpeg_q75": "JPEG quality 75", "jpeg_q50": "JPEG quality 50",
              "downup_x2": "downscale x2 and back"}
COLUMNS = ("trial", "condition", *(catalog.label(k) for k in catalog.ROBUSTNESS_METRICS))

DECIMALS = 3  # every figure of the table, as the leaderboard prints its metrics

Robustness = Mapping[str, Mapping[str, Any]]  # trial id -> evaluate_robustness's result


def _rounded(value: Any) -> Any:
    """``value`` at :data:`DECIMALS` decimals, a tiny negative one as ``0.0`` (not ``-0.0``);
    missing values as they are. Unrounded, a drop of -0.0001413 (a perturbation that
    helped by noise) printed in full beside three-decimal figures (``display.compact``)."""
    if not isinstance(value, numbers.Real) or not math.isfinite(value):
        return value
    return round(float(value), DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def robustness_table(robustness: Robustness,
                     labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (finalist, condition), clean first; ``labels`` names the trials (e.g.
    ``"resnet50 · a1"``), else the trial id is shown. Figures are rounded to
    :data:`DECIMALS` decimals: the table is for reading (the file keeps full precision)."""
    rows = []
    for tid, result in robustness.items():
        for name, m in (result.get("conditions") or {}).items():
            figures = (m.get(k) for k in catalog.ROBUSTNESS_METRICS)
            rows.append([(labels or {}).get(tid, tid), CONDITIONS.get(name, name),
                         *(_rounded(v) for v in figures)])
    return pd.DataFrame(rows, columns=list(COLUMNS), dtype=object)


def worst_drop(result: Mapping[str, Any]) -> float | None:
    """The largest AUC drop over a finalist's perturbations (None when none was measured):
    one number for a leaderboard column."""
    drops = [m.get(catalog.AUC_DROP) for name, m in (result.get("conditions") or {}).items()
             if name != "clean"]
    drops = [float(d) for d in drops if d is not None and not math.isnan(float(d))]
    return max(drops) if drops else None


def split_of(robustness: Robustness) -> str:
    """The split the finalists were perturbed on (``test`` unless the file says otherwise)."""
    return next((str(r["split"]) for r in robustness.values() if r.get("split")), "test")


__all__ = ["COLUMNS", "CONDITIONS", "DECIMALS", "NOTE", "Robustness", "robustness_table", "split_of",
           "worst_drop"]

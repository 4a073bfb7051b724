"""Temperature scaling of an exported model, fitted on its validation predictions.

One temperature ``T`` (``p_calibrated = sigmoid(logit / T)``, applied by ``predict``) is
fitted on validation, never on test; ECE and NLL before and after are kept for both splits
so the model card can show what ``T`` changed.
"""

from __future__ import annotations

import math
from typing import Any

from search import catalog
from search.model.checkpoint import Predictions
from search.model.folder import sigmoid
from search.train.metrics import calibration, fit_temperature, logit

CALIBRATION_METHOD = ("temperature scaling: one T minimising the NLL of sigmoid(logit / T) "
                      "on validation")


def _calibration_figures(preds: Predictions, temperature: float) -> dict[str, float]:
    """ECE and NLL (``log_loss``: :func:`~search.train.metrics.calibration`) before and
    after ``T``."""
    y, p = preds
    before, after = calibration(y, p), calibration(y, sigmoid(logit(p), temperature))
    return {catalog.N: int(y.size),
            "ece_before": before[catalog.ECE], "ece_after": after[catalog.ECE],
            "nll_before": before[catalog.LOG_LOSS], "nll_after": after[catalog.LOG_LOSS]}


def calibrate(val: Predictions | None, test: Predictions | None) -> dict[str, Any] | None:
    """Temperature scaling fitted on validation (``logit`` recovers the logits from the
    saved p_fake), with ECE and NLL before and after on validation and test; None when
    there is nothing to fit on (no predictions, or a single class)."""
    if val is None:
        return None
    temperature = fit_temperature(val[0], logit(val[1]))
    if not math.isfinite(temperature):
        return None
    return {"method": CALIBRATION_METHOD, "temperature": temperature, "fitted_on": "validation",
            "validation": _calibration_figures(val, temperature),
            "test": _calibration_figures(test, temperature) if test is not None else None}


__all__ = ["CALIBRATION_METHOD", "calibrate"]

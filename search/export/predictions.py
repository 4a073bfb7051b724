"""The predictions an export fits on and reports: validation and test, of one checkpoint.

Validation predictions are saved with every checkpoint; test ones come from the search's
test evaluation, or are made once here (and kept in the checkpoint). From them come the
temperature (:mod:`.calibration`), the operating points (:mod:`.operating`) and the test
metrics the card states.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.data.manifest import verify_shards
from search.evaluate.scoring import LOCAL_CPUS, evaluate_checkpoint
from search.export.calibration import calibrate
from search.export.operating import operating_point
from search.filenames import TEST_METRICS, TEST_PREDICTIONS, VAL_PREDICTIONS, checkpoint_in
from search.model.checkpoint import Predictions, read_predictions
from search.train.metrics import detector_metrics


def test_metrics(results_dir: Path, trial_id: str, checkpoint: Path,
                  finalist_checkpoint: str, threshold: float) -> dict[str, Any] | None:
    """The trial's test-split metrics, when the search evaluated this very checkpoint."""
    path = results_dir / TEST_METRICS
    if path.is_file() and checkpoint == checkpoint_in(results_dir, finalist_checkpoint):
        test = json.loads(path.read_text()).get(trial_id)
        if test:
            return test
    preds = checkpoint / TEST_PREDICTIONS
    if preds.is_file():
        frame = pd.read_csv(preds)
        return detector_metrics(frame["label"].to_numpy(), frame["p_fake"].to_numpy(),
                                threshold=threshold)
    return None


def fetch_test_predictions(checkpoint: Path, shards: str | None) -> tuple[Predictions | None, str]:
    """The checkpoint's test-split predictions and where they came from: its
    ``test_predictions.csv``, else one evaluation of the test split of ``shards`` (kept in
    the checkpoint for the next export), else None and why not."""
    found = read_predictions(checkpoint / TEST_PREDICTIONS)
    if found is not None:
        return found, "the search's test evaluation"
    if not shards:
        return None, "the experiment names no shards"
    try:
        verify_shards(shards)
    except (OSError, ValueError) as err:
        return None, f"the test split could not be read ({str(err)[:200]})"
    from search.cluster import connect

    connect(num_cpus=LOCAL_CPUS)
    _, preds = evaluate_checkpoint(checkpoint, shards, "test")
    with contextlib.suppress(OSError):  # a read-only results folder: evaluated, not kept
        preds.to_csv(checkpoint / TEST_PREDICTIONS, index=False)
    return (preds["label"].to_numpy(np.int64), preds["p_fake"].to_numpy(np.float64)), \
        "evaluated once at export"


def deployment(checkpoint: Path, shards: str, targets: Sequence[float], *,
                verbose: bool) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(temperature calibration, one operating point per target FPR) of a checkpoint, from
    its validation predictions (and test ones, made once when targets need them)."""
    val_preds = read_predictions(checkpoint / VAL_PREDICTIONS)
    if targets and val_preds is None:
        raise ValueError(f"{checkpoint} has no {VAL_PREDICTIONS}: --target-fpr chooses its "
                         "threshold on the validation predictions; export another trial")
    test_preds, test_source = (fetch_test_predictions(checkpoint, shards) if targets
                               else (read_predictions(checkpoint / TEST_PREDICTIONS), ""))
    if targets and test_preds is None and verbose:
        print(f"no test figures for the operating points: {test_source}")
    calibration = calibrate(val_preds, test_preds)
    temperature = calibration["temperature"] if calibration else None
    return calibration, [operating_point(t, val_preds, test_preds, temperature) for t in targets]


__all__ = ["deployment", "fetch_test_predictions", "test_metrics"]

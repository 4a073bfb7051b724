"""``export_model``: one trial's checkpoint made into a self-contained model folder.

The steps, each in its own module: check ``--out`` (:mod:`.install`), choose the trial
(:mod:`.choose`), fit the temperature and operating points on its predictions
(:mod:`.predictions`), then in a staging folder beside ``--out``: copy the weights, write
and check the ONNX twin (:mod:`.onnx`), ``config.json`` (:mod:`.describe`),
``metrics.json``, reload the folder and compare, write the card (:mod:`.card`), and only
then move the files in (:mod:`.install`): a failed export leaves ``--out`` as it was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from search import catalog
from search.config import config_from_dict
from search.export.card import model_card
from search.export.choose import choose_trial
from search.export.describe import folder_config, saved_threshold
from search.export.install import CARD, METRICS_FILE, check_out, install
from search.export.onnx import onnx_twin, same_outputs
from search.export.operating import check_targets
from search.export.predictions import deployment, test_metrics
from search.filenames import CONFIG, WEIGHTS, file_sha256, json_safe
from search.filenames import ONNX as ONNX_FILE
from search.model.checkpoint import load_checkpoint_model
from search.model.folder import build_torch_model, read_model_info

EXPORT_DIR = "export"


def export_model(results_dir: str | Path, *, trial_id: str | None = None,
                 metric: str | None = None, out: str | Path | None = None,
                 target_fpr: Sequence[float] = (), verbose: bool = True) -> Path:
    """Export the best trial by validation ``metric`` (or ``trial_id``) to ``out``
    (default ``<results_dir>/export``) and return that folder; see the module docstring.

    ``target_fpr`` (rates such as 0.01) adds one operating point each; test predictions
    are then made once when the checkpoint has none.
    """
    targets = check_targets(target_fpr)
    results_dir = Path(results_dir).expanduser().resolve()
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    given = bool(out)
    out = Path(out).expanduser().resolve() if out else results_dir / EXPORT_DIR
    check_out(out, given=given)  # first: nothing is read or made for an output that fails
    row, checkpoint, metric, mode = choose_trial(results_dir, trial_id=trial_id, metric=metric)
    model, meta = load_checkpoint_model(checkpoint)
    cfg = config_from_dict(meta["experiment"])
    epoch_metrics = meta.get("metrics", {})
    threshold, rule = saved_threshold(epoch_metrics)
    calibration, points = deployment(checkpoint, cfg.data.shards, targets, verbose=verbose)
    test = test_metrics(results_dir, str(row["trial_id"]), checkpoint, str(row["checkpoint"]),
                        threshold)
    metrics = {"validation": catalog.strip_split(epoch_metrics), "test": test,
               catalog.THRESHOLD: threshold,
               "threshold_rule": rule, "calibration": calibration, "operating_points": points}
    size = int(meta["input"]["input_size"])

    out.parent.mkdir(parents=True, exist_ok=True)
    # A short name: out's own name plus a prefix could pass the file system's limit.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        shutil.copyfile(checkpoint / WEIGHTS, staging / WEIGHTS)
        diff, latency = onnx_twin(model, size, staging / ONNX_FILE, verbose=verbose,
                                  spec=meta["input"])
        config = folder_config(
            cfg, meta, row, threshold=threshold, rule=rule,
            selected_by={"metric": metric, "mode": mode,
                         "value": json_safe(epoch_metrics.get(metric))},
            parameters=int(sum(p.numel() for p in model.parameters())), onnx_diff=diff,
            checkpoint=checkpoint, results_dir=results_dir, calibration=calibration,
            operating_points=points, latency=latency)
        (staging / CONFIG).write_text(json.dumps(json_safe(config), indent=1) + "\n")
        (staging / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=1) + "\n")
        # Reload check: the folder alone must rebuild the very same model.
        same_outputs(model, build_torch_model(read_model_info(staging)), size)
        files = {name: file_sha256(staging / name) for name in (WEIGHTS, ONNX_FILE, CONFIG,
                                                             METRICS_FILE)}
        (staging / CARD).write_text(model_card(json_safe(config), json_safe(metrics), files))
        install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


__all__ = ["EXPORT_DIR", "export_model"]

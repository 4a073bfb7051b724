"""The transfer study's table (issue 19): one row per option family, read off a finished
``examples/transfer-cpu.yaml`` search, every figure measured here from the kept checkpoints.

    python examples/transfer_table.py results/transfer-cpu \
        --frames ../shared/data/ffpp_celebdf_frames

A family is the input transform (rgb, npr, highpass) and whether the FAKE class was partly
or wholly synthetic (synthetic > 0), and how: self-blends or cross-face part splices, with
or without colour matching (data.synthetic_kind). Its row is its best trial by the search's own
metric (``val_auc@ciplab``: CIPLAB's selection part), at that trial's best kept epoch; one
more row is what in-source selection (``val_auc``) over the same search picks. Each row:
in-source test AUC (deepfake_faces' test split), on CIPLAB's test part AUC, balanced
accuracy and TPR at 5% FPR, AUC on the 32 FF++/Celeb-DF frames (never selected on), and
the in-source test AUC under JPEG 50 and a 2x down-up. Written to ``transfer.md`` and
``transfer.json`` in the results folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.display import markdown_table
from search.evaluate.scoring import LOCAL_CPUS, evaluate_checkpoint, evaluate_robustness
from search.filenames import EXPERIMENT
from search.predict import predict_paths
from search.train.metrics import detector_metrics
from search.tune.tables import best_checkpoint

HEADER = ["family", "selected by", "trial", "epoch", "in-source test AUC", "CIPLAB AUC",
          "CIPLAB bal. acc.", "CIPLAB TPR@5%FPR", "frames AUC", "JPEG 50 AUC", "down-up AUC"]


def family(row: pd.Series) -> str:
    """``rgb``, ``npr + self_blend 0.5``, ``rgb + splice_matched 1``, ...: the option family
    of a trial (input transform, and which synthetic FAKEs at what share)."""
    share = float(row.get("synthetic") or 0.0)
    kind = row.get("synthetic_kind")
    kind = kind if isinstance(kind, str) and kind else "self_blend"
    return row.get("input_transform", "rgb") + (f" + {kind} {share:g}" if share else "")


def frames_auc(checkpoint: Path, frames: Path) -> float:
    """AUC over every frame (labels from the REAL/ and FAKE/ folders)."""
    scored = predict_paths(checkpoint, [frames])
    labels = np.array([1 if "/FAKE/" in p else 0 for p in scored["path"]])
    return float(detector_metrics(labels, scored["p_fake"].to_numpy())["auc"])


def measure(checkpoint: Path, train: str, ciplab: str, frames: Path) -> dict[str, Any]:
    """Every column of one row, measured on the checkpoint."""
    own, _ = evaluate_checkpoint(checkpoint, train, "test")
    other, _ = evaluate_checkpoint(checkpoint, ciplab, "test")
    robust = evaluate_robustness(checkpoint, train, "test")["conditions"]
    return {"in-source test AUC": own["auc"], "CIPLAB AUC": other["auc"],
            "CIPLAB bal. acc.": other["balanced_accuracy_at_threshold"],
            "CIPLAB TPR@5%FPR": other["tpr_at_fpr_5pct"], "frames AUC": frames_auc(checkpoint, frames),
            "JPEG 50 AUC": robust["jpeg_q50"]["auc"], "down-up AUC": robust["downup_x2"]["auc"]}


def rows(results: Path, frames: Path) -> list[dict[str, Any]]:
    experiment = json.loads((results / EXPERIMENT).read_text())
    metric = experiment["search"]["metric"]
    train, ciplab = experiment["data"]["shards"], experiment["data"]["extra_sources"]["ciplab"]
    trials = pd.read_parquet(results / "trials.parquet")
    trials = trials[trials["status"] != "ERROR"].assign(family=lambda t: t.apply(family, axis=1))
    picks = []
    for fam, group in trials.groupby("family", sort=True):
        best = group.sort_values(f"best_{metric}", ascending=False).iloc[0]
        picks.append((fam, metric, best))
    in_source = trials.sort_values("best_val_auc", ascending=False).iloc[0]
    picks.append((in_source["family"], "val_auc", in_source))
    out = []
    for fam, by, row in picks:
        checkpoint, metrics = best_checkpoint(results, str(row["trial_id"]), by, "max")
        if checkpoint is None:
            continue
        out.append({"family": fam, "selected by": by, "trial": str(row["trial_id"]),
                    "epoch": int(metrics.get("epoch", 0)),
                    **measure(checkpoint, train, ciplab, frames)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--frames", type=Path, required=True)
    args = parser.parse_args()
    from search.cluster import connect

    connect(num_cpus=LOCAL_CPUS)
    table = rows(args.results.resolve(), args.frames.resolve())
    (args.results / "transfer.json").write_text(json.dumps(table, indent=1) + "\n")
    text = markdown_table(HEADER, [[r[h] for h in HEADER] for r in table])
    (args.results / "transfer.md").write_text("# Transfer: one row per option family\n\n"
                                              + text + "\n")
    print(text)


if __name__ == "__main__":
    main()

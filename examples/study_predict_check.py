"""Does the study's exported winner score people it never saw as its test AUC says (issue 26)?

    python examples/study_predict_check.py [--results results/study-cpu] [--backend onnx]

The test split of ``deepfake_faces`` holds identities that no trial trained or was selected
on (prepare's grouped split keeps a FAKE with the REAL video it came from). This runs
``predict`` with the exported model folder (``<results>/export``) on those people's ORIGINAL
224-px files under ``../shared/data/deepfake_faces`` (not the prepared shards: predict
resizes them itself, as a user's photos would be), and compares the AUC with the test AUC
the export recorded (``export/metrics.json``). PASS when they are within 0.03.

Writes ``<results>/predict_check.md``; a rerun replaces it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "deepfake_faces"
TOLERANCE = 0.03


def test_people(shards: Path) -> pd.DataFrame:
    """``id, label, path`` of the test split's original files (every one must exist)."""
    frame = pd.concat([pd.read_parquet(f, columns=["id", "label"])
                       for f in sorted(shards.glob("test-*.parquet"))], ignore_index=True)
    frame["path"] = [str(SOURCE / i) for i in frame["id"]]
    missing = [p for p in frame["path"] if not Path(p).is_file()]
    if missing:
        sys.exit(f"{len(missing)} test files missing under {SOURCE} (first: {missing[0]})")
    return frame


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from search.predict import predict_paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "results" / "study-cpu"))
    parser.add_argument("--backend", default="onnx", choices=["torch", "onnx"])
    args = parser.parse_args()
    results = Path(args.results)
    export = results / "export"
    config = json.loads((export / "config.json").read_text())
    recorded = json.loads((export / "metrics.json").read_text())["test"]
    shards = ROOT / config["training_data"]["shards"] if not Path(
        config["training_data"]["shards"]).is_absolute() else Path(config["training_data"]["shards"])
    files = test_people(shards)
    started = time.perf_counter()
    scores = predict_paths(export, files["path"], backend=args.backend)
    wall = time.perf_counter() - started
    failed = int(scores["error"].notna().sum())
    auc = float(roc_auc_score(files["label"], scores["p_fake"].to_numpy()))
    gap = abs(auc - float(recorded["auc"]))
    verdict = "PASS" if gap <= TOLERANCE and not failed else "FAIL"
    page = [
        "# The exported winner on people it never saw", "",
        f"{dt.date.today().isoformat()}, {platform.node() or 'this machine'} "
        f"({platform.machine()}, {platform.processor() or 'cpu'}), "
        f"`python examples/study_predict_check.py --backend {args.backend}`: "
        f"{wall:.0f} s for {len(files):,} images.", "",
        f"Model: `{config['arch']}` (trial {config['trial_id']}, epoch {config['epoch']}), "
        f"input {config['input']['input_size']} px, mean {config['input']['mean']}, "
        f"std {config['input']['std']}.", "",
        "| what | AUC | images |", "|---|---|---|",
        f"| test split as the search scored it (prepared shards) | {recorded['auc']:.4f} | "
        f"{recorded.get('n', len(files)):,} |",
        f"| `predict --backend {args.backend}` on the original 224-px files | {auc:.4f} | "
        f"{len(files) - failed:,} scored, {failed} failed |", "",
        f"**{verdict}**: the difference is {gap:.4f} (allowed {TOLERANCE}). REAL "
        f"{int((files['label'] == 0).sum()):,}, FAKE {int((files['label'] == 1).sum()):,}; "
        f"mean p_fake {np.nanmean(scores['p_fake']):.3f}.", ""]
    (results / "predict_check.md").write_text("\n".join(page))
    print("\n".join(page))
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()

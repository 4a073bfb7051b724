"""The study's tables, done right: per-trial rows, per-epoch history and the leaderboard.

Pure functions over what Tune returns (a ``ResultGrid``) and what the trials wrote
(checkpoints with their metrics), so the same code serves a finished, a resumed and a
partly failed search.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from search.formats import CONFIG, TRAIN_RUNS, TRIAL_PREFIX

#: The columns of the study's table, then the ones it needed to be read correctly.
STUDY_COLUMNS = ("accuracy", "precision", "recall", "f1")
EXTRA_COLUMNS = ("auc", "ap", "eer", "balanced_accuracy", "threshold", "f1_at_threshold",
                 "baseline_accuracy", "baseline_f1")
CONFUSION = ("tp", "tn", "fp", "fn")


def _better(a: float, b: float, mode: str) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return True
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    return a > b if mode == "max" else a < b


def trial_checkpoints(experiment_dir: str | Path, trial_id: str) -> list[Path]:
    """Checkpoint folders a trial's Train run left (each holds config.json with metrics)."""
    run = Path(experiment_dir) / TRAIN_RUNS / f"{TRIAL_PREFIX}{trial_id}"
    return sorted(p for p in run.glob("checkpoint_*") if (p / CONFIG).is_file())


def best_checkpoint(experiment_dir: str | Path, trial_id: str, metric: str,
                    mode: str) -> tuple[Path | None, dict[str, Any]]:
    """(folder, metrics) of a trial's best kept checkpoint by ``metric``."""
    best: tuple[Path | None, dict[str, Any]] = (None, {})
    for path in trial_checkpoints(experiment_dir, trial_id):
        metrics = json.loads((path / CONFIG).read_text()).get("metrics", {})
        if best[0] is None or _better(metrics.get(metric), best[1].get(metric), mode):
            best = (path, metrics)
    return best


def _trial_id(result: Any) -> str:
    tid = (result.metrics or {}).get("trial_id")
    return str(tid) if tid else Path(result.path).name


def collect(results: Sequence[Any], *, experiment_dir: str | Path, metric: str, mode: str,
            max_epochs: int, param_names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history) from Tune results: one row per trial, one row per trial-epoch."""
    rows, history = [], []
    for result in results:
        tid = _trial_id(result)
        params = {k: result.config.get(k) for k in param_names if k in result.config}
        frame = result.metrics_dataframe
        if frame is not None and len(frame) and "epoch" in frame:
            # A resumed trial can repeat epochs in Tune's log: keep each epoch's last report.
            frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
            history.append(frame.assign(trial_id=tid))
        else:
            frame = pd.DataFrame()
        epochs = int(frame["epoch"].max()) if len(frame) else 0
        # A trial's own budget when the space searches ``epochs``, else the experiment's.
        budget = int(result.config.get("epochs", max_epochs))
        if result.error is not None:
            status = "ERROR"
        elif epochs < budget:
            status = "STOPPED_EARLY"
        else:
            status = "COMPLETED"
        row: dict[str, Any] = {"trial_id": tid, "status": status, **params,
                               "epochs": epochs,
                               "wall_time_s": float(frame["time_total_s"].max())
                               if "time_total_s" in frame else float("nan")}
        if len(frame):
            last = frame.iloc[-1]
            row.update({k: last[k] for k in frame.columns if k.startswith("val_")})
            row["train_loss"] = last.get("train_loss")
            if metric in frame:
                scores = frame[metric]
                pos = scores.idxmax() if mode == "max" else scores.idxmin()
                if pd.isna(pos):
                    pos = frame.index[-1]
                best = frame.loc[pos]
                row["best_epoch"] = int(best["epoch"])
                row.update({f"best_{k}": best[k] for k in frame.columns if k.startswith("val_")})
        if result.error is not None:
            row["error"] = str(result.error).strip().splitlines()[-1][:300]
        ckpt, _ = best_checkpoint(experiment_dir, tid, metric, mode)
        row["checkpoint"] = str(ckpt) if ckpt else ""
        rows.append(row)
    trials = pd.DataFrame(rows)
    if len(trials) and f"best_{metric}" in trials:
        trials = trials.sort_values(f"best_{metric}", ascending=(mode == "min"),
                                    na_position="last", ignore_index=True)
    hist = pd.concat(history, ignore_index=True) if history else pd.DataFrame()
    keep = ["trial_id", "epoch", "train_loss", "lr", "train_images", "epoch_time_s",
            "train_time_s", "data_wait_s", "data_first_batch_s", "eval_time_s", "time_total_s",
            "timestamp",
            *sorted(c for c in hist.columns if c.startswith("val_"))]
    hist = hist[[c for c in keep if c in hist.columns]] if len(hist) else hist
    return trials, hist


def finalists(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The best trial of each architecture (rows already sorted best first)."""
    ok = trials[(trials["status"] != "ERROR") & trials["checkpoint"].astype(bool)]
    if f"best_{metric}" in ok:
        ok = ok[ok[f"best_{metric}"].notna()]
    return ok.drop_duplicates("arch", keep="first") if "arch" in ok else ok.head(1)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def leaderboard(trials: pd.DataFrame, *, metric: str, mode: str,
                test: Mapping[str, Mapping[str, Any]] | None = None,
                importances: Mapping[str, Mapping[str, float]] | str | None = None,
                title: str = "") -> str:
    """The study's table (best trial per architecture) plus what it needed to be read."""
    test = test or {}
    best = finalists(trials, metric)
    header = ["model", *STUDY_COLUMNS, *EXTRA_COLUMNS, *CONFUSION, "ratio", "lr", "epoch", "trial"]
    rows = [[r.get("arch"), *(r.get(f"best_val_{c}") for c in (*STUDY_COLUMNS, *EXTRA_COLUMNS,
                                                                 *CONFUSION)),
             r.get("ratio"), r.get("lr"), r.get("best_epoch"), r.get("trial_id")]
            for _, r in best.iterrows()]
    out = [f"# Leaderboard{': ' + title if title else ''}", "",
           f"Best trial per architecture by validation `{metric}` ({mode}). FAKE is the "
           "positive class; metrics at threshold 0.5, `threshold` is the F1-optimal one on "
           "validation and `f1_at_threshold` the F1 there; `baseline_*` is always answering "
           "the majority class on the same split.", "", _table(header, rows), ""]
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    out += ["Trials: " + ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in counts.items()), ""]
    if len(best):
        top = best.iloc[0]
        out += [f"## Best overall: trial {top['trial_id']} ({top.get('arch')})", ""]
        tm = test.get(str(top["trial_id"]))
        names = [*STUDY_COLUMNS, "auc", "ap", "eer", "balanced_accuracy", "threshold",
                 "f1_at_threshold", "baseline_accuracy", *CONFUSION]
        hdr = ["split", *names]
        rows = [["validation", *(top.get(f"best_val_{n}") for n in names)]]
        if tm:
            rows.append(["test", *(tm.get(n) for n in names)])
        out += [_table(hdr, rows), ""]
        if tm:
            out += ["The test split was evaluated once, after the search, for the finalists "
                    "only, at the threshold chosen on validation; it was never used to choose.", ""]
        others = [(tid, m) for tid, m in test.items() if tid != str(top["trial_id"])]
        if others:
            out += ["Test split of the other finalists:", "",
                    _table(["trial", *names], [[tid, *(m.get(n) for n in names)] for tid, m in others]),
                    ""]
    out += ["## Parameter importances (Optuna, fANOVA)", ""]
    if isinstance(importances, Mapping) and importances:
        out += ["Share of the variance of the search metric that each parameter explains: "
                "over all trials, then within each architecture's trials (its layer "
                "settings exist only there).", ""]
        for group, scores in importances.items():
            out += [f"### {group}", "", _table(["parameter", "importance"], list(scores.items())), ""]
    else:
        out += [f"Not available: {importances or 'too few finished trials'}", ""]
    return "\n".join(out)


__all__ = ["TRAIN_RUNS", "TRIAL_PREFIX", "best_checkpoint", "collect", "finalists",
           "leaderboard", "trial_checkpoints"]

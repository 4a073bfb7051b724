"""The study's tables, done right: per-trial rows, per-epoch history and the leaderboard.

Pure functions over what Tune returns (a ``ResultGrid``) and what the trials wrote
(checkpoints with their metrics), so the same code serves a finished, a resumed and a
partly failed search.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from search.config import SOURCE_AGGREGATES
from search.fmt import markdown_table, missing
from search.formats import CHECKPOINT_GLOB, CONFIG, TRAIN_RUNS, TRIAL_PREFIX, trial_dirname
from search.report.robustness import NOTE as ROBUSTNESS_NOTE
from search.report.robustness import Robustness, robustness_table, split_of

#: The columns of the study's table, then the ones it needed to be read correctly.
STUDY_COLUMNS = ("accuracy", "precision", "recall", "f1")
EXTRA_COLUMNS = ("auc", "ap", "eer", "balanced_accuracy", "threshold", "f1_at_threshold",
                 "baseline_accuracy", "baseline_f1")
CONFUSION = ("tp", "tn", "fp", "fn")
#: Where each epoch ran (reported by the training loop): a trial's node, host and process.
PLACEMENT = ("node_id", "hostname", "pid")


def _better(a: float, b: float, mode: str) -> bool:
    """Whether score ``a`` beats ``b``; a missing score (None, NaN) beats nothing."""
    if missing(b):
        return True
    if missing(a):
        return False
    return a > b if mode == "max" else a < b


def trial_checkpoints(experiment_dir: str | Path, trial_id: str) -> list[Path]:
    """Checkpoint folders a trial left (each holds config.json with that epoch's metrics):
    in its Tune folder (single-worker trials) or its Train run's (DDP trials)."""
    root = Path(experiment_dir)
    runs = (root / trial_dirname(trial_id), root / TRAIN_RUNS / trial_dirname(trial_id))
    return sorted(p for run in runs for p in run.glob(CHECKPOINT_GLOB) if (p / CONFIG).is_file())


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
            max_epochs: int, param_names: Sequence[str], unfinished: Collection[str] = (),
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history) from Tune results: one row per trial, one row per trial-epoch.

    ``unfinished``: trials a Ctrl-C caught mid-run (``INTERRUPTED``, not stopped early:
    ``--resume`` continues them).
    """
    rows, history = [], []
    for result in results:
        tid = _trial_id(result)
        frame = _epochs(result)
        if len(frame):
            history.append(frame.assign(trial_id=tid))
        epochs = int(frame["epoch"].max()) if len(frame) else 0
        row = {"trial_id": tid, "status": _status(result, tid, epochs, max_epochs, unfinished),
               **{k: result.config.get(k) for k in param_names if k in result.config},
               "epochs": epochs,
               "wall_time_s": float(frame["time_total_s"].max())
               if "time_total_s" in frame else float("nan"),
               **_scores(frame, metric, mode)}
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
            "train_time_s", "data_wait_s", "data_first_batch_s", "eval_time_s", "sources_epoch",
            "sources_time_s", "time_total_s", "timestamp", *PLACEMENT,
            *sorted(c for c in hist.columns if c.startswith("val_"))]
    hist = hist[[c for c in keep if c in hist.columns]] if len(hist) else hist
    return trials, hist


def _epochs(result: Any) -> pd.DataFrame:
    """A trial's reports, one per epoch (empty when it reported none)."""
    frame = result.metrics_dataframe
    if frame is None or not len(frame) or "epoch" not in frame:
        return pd.DataFrame()
    # A resumed trial can repeat epochs in Tune's log: keep each epoch's last report.
    return frame.drop_duplicates("epoch", keep="last").sort_values("epoch")


def _status(result: Any, tid: str, epochs: int, max_epochs: int,
            unfinished: Collection[str]) -> str:
    """ERROR, INTERRUPTED, STOPPED_EARLY (by the scheduler) or COMPLETED, for a trial that
    reported ``epochs`` epochs."""
    # A trial's own budget when the space searches ``epochs``, else the experiment's.
    budget = int(result.config.get("epochs", max_epochs))
    if result.error is not None:
        return "ERROR"
    if tid in unfinished:
        return "INTERRUPTED"
    return "STOPPED_EARLY" if epochs < budget else "COMPLETED"


def _scores(frame: pd.DataFrame, metric: str, mode: str) -> dict[str, Any]:
    """Last epoch's validation scores, loss and placement; the best epoch's as ``best_*``."""
    if not len(frame):
        return {}
    last = frame.iloc[-1]
    row = {k: last[k] for k in frame.columns if k.startswith("val_")}
    row["train_loss"] = last.get("train_loss")
    # Where the trial ran last (a retried trial may have moved to another node).
    row.update({k: last[k] for k in PLACEMENT if k in frame.columns})
    if metric in frame:
        scores = frame[metric]
        pos = scores.idxmax() if mode == "max" else scores.idxmin()
        best = frame.loc[frame.index[-1] if pd.isna(pos) else pos]
        row["best_epoch"] = int(best["epoch"])
        row.update({f"best_{k}": best[k] for k in frame.columns if k.startswith("val_")})
    return row


def finalists(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The best trial of each architecture (rows already sorted best first)."""
    ok = trials[(trials["status"] != "ERROR") & trials["checkpoint"].astype(bool)]
    if f"best_{metric}" in ok:
        ok = ok[ok[f"best_{metric}"].notna()]
    return ok.drop_duplicates("arch", keep="first") if "arch" in ok else ok.head(1)


#: The best trial's row per split: the study's metrics, the ones they need, the confusion.
SPLIT_COLUMNS = (*STUDY_COLUMNS, "auc", "ap", "eer", "balanced_accuracy", "tpr_at_fpr_1pct",
                 "tpr_at_fpr_5pct", "fpr_at_tpr_95pct", "ece", "threshold",
                 "f1_at_threshold", "baseline_accuracy", *CONFUSION)
#: What the leaderboard's tables mean, shared by leaderboard.md and the HTML report.
BOARD_NOTE = ("Best trial per architecture by validation `{metric}` ({mode}). FAKE is the "
              "positive class; metrics at threshold 0.5, `threshold` is the F1-optimal one on "
              "validation and `f1_at_threshold` the F1 there; `baseline_*` is always answering "
              "the majority class on the same split.")
TEST_NOTE = ("The test split was evaluated once, after the search, for the finalists only, at "
             "the threshold chosen on validation; it was never used to choose.")
SOURCES_NOTE = ("`auc@NAME`: the validation AUC of the extra source NAME (data.extra_sources) "
                "at the same epoch; `auc@mean` and `auc@worst`: the mean and the lowest AUC "
                "over the training source and every extra one.")
IMPORTANCE_NOTE = ("Share of the variance of the search metric that each parameter explains: "
                   "over all trials, then within each architecture's trials (its layer settings "
                   "exist only there).")

TestMetrics = Mapping[str, Mapping[str, Any]]  # trial id -> its test-split metrics


def _frame(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """A table whose cells keep their Python values (ints stay ints, None stays None)."""
    return pd.DataFrame(list(rows), columns=list(header), dtype=object)


def source_columns(trials: pd.DataFrame) -> list[str]:
    """``auc@NAME`` for every extra source the trials scored (``data.extra_sources``), then
    ``auc@mean`` and ``auc@worst``; empty without extra sources."""
    names = [c[len("best_val_"):] for c in trials.columns
             if c.startswith("best_val_auc@")]
    aggregates = [f"auc@{a}" for a in SOURCE_AGGREGATES]
    return [n for n in names if n not in aggregates] + [n for n in aggregates if n in names]


def board_table(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The study's table: the best trial of each architecture, best first; with extra
    sources, their AUC (``auc@NAME``) beside the in-source ``auc``, all at the same epoch."""
    extra = EXTRA_COLUMNS[:1] + (*source_columns(trials),) + EXTRA_COLUMNS[1:]
    header = ["model", *STUDY_COLUMNS, *extra, *CONFUSION, "ratio", "lr", "epoch", "trial"]
    metrics = (*STUDY_COLUMNS, *extra, *CONFUSION)
    return _frame(header, [[r.get("arch"), *(r.get(f"best_val_{c}") for c in metrics),
                            r.get("ratio"), r.get("lr"), r.get("best_epoch"), r.get("trial_id")]
                           for _, r in finalists(trials, metric).iterrows()])


def split_table(top: pd.Series, test: TestMetrics) -> pd.DataFrame:
    """One trial on validation (its best epoch) and, when it was scored, on test."""
    rows = [["validation", *(top.get(f"best_val_{n}") for n in SPLIT_COLUMNS)]]
    scored = test.get(str(top["trial_id"]))
    if scored:
        rows.append(["test", *(scored.get(n) for n in SPLIT_COLUMNS)])
    return _frame(["split", *SPLIT_COLUMNS], rows)


def others_test_table(top: pd.Series, test: TestMetrics) -> pd.DataFrame:
    """The test split of every finalist but ``top``."""
    return _frame(["trial", *SPLIT_COLUMNS], [[tid, *(m.get(n) for n in SPLIT_COLUMNS)]
                                              for tid, m in test.items()
                                              if tid != str(top["trial_id"])])


def importance_table(scores: Mapping[str, float]) -> pd.DataFrame:
    """One group's parameter importances, largest first."""
    return _frame(["parameter", "importance"], list(scores.items()))


def status_counts(trials: pd.DataFrame) -> str:
    """``"3 completed, 1 stopped early"``: how the trials ended."""
    counts = trials["status"].value_counts().to_dict() if "status" in trials else {}
    return ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in counts.items())


#: Columns that count something: shown as whole numbers even when stored as floats (a
#: trial's best-epoch counts share a float column with trials that have none).
WHOLE = (*CONFUSION, "epoch", "n")


def markdown(frame: pd.DataFrame) -> str:
    """A table built here as GitHub markdown (the leaderboard's number format)."""
    frame = frame.copy()
    for col in frame.columns.intersection(WHOLE):
        frame[col] = pd.Series([int(v) if isinstance(v, float) and v.is_integer() else v
                                for v in frame[col]], index=frame.index, dtype=object)
    return markdown_table(list(frame.columns), frame.itertuples(index=False))


def leaderboard(trials: pd.DataFrame, *, metric: str, mode: str,
                test: TestMetrics | None = None,
                importances: Mapping[str, Mapping[str, float]] | str | None = None,
                title: str = "", robustness: Robustness | None = None) -> str:
    """The study's table (best trial per architecture) plus what it needed to be read."""
    test = test or {}
    best = finalists(trials, metric)
    out = [f"# Leaderboard{': ' + title if title else ''}", "",
           BOARD_NOTE.format(metric=metric, mode=mode), "",
           *([SOURCES_NOTE, ""] if source_columns(trials) else []),
           markdown(board_table(trials, metric)), "", f"Trials: {status_counts(trials)}", ""]
    if len(best):
        top = best.iloc[0]
        out += [f"## Best overall: trial {top['trial_id']} ({top.get('arch')})", "",
                markdown(split_table(top, test)), ""]
        if test.get(str(top["trial_id"])):
            out += [TEST_NOTE, ""]
        others = others_test_table(top, test)
        if len(others):
            out += ["Test split of the other finalists:", "", markdown(others), ""]
    if robustness:
        split = split_of(robustness)
        out += [f"## Robustness ({split} split)", "", ROBUSTNESS_NOTE.format(split=split), "",
                markdown(robustness_table(robustness)), ""]
    out += ["## Parameter importances (Optuna, fANOVA)", ""]
    if isinstance(importances, Mapping) and importances:
        out += [IMPORTANCE_NOTE, ""]
        for group, scores in importances.items():
            out += [f"### {group}", "", markdown(importance_table(scores)), ""]
    else:
        out += [f"Not available: {importances or 'too few finished trials'}", ""]
    return "\n".join(out)


__all__ = ["BOARD_NOTE", "IMPORTANCE_NOTE", "SOURCES_NOTE", "SPLIT_COLUMNS", "TEST_NOTE", "TRAIN_RUNS",
           "TRIAL_PREFIX", "best_checkpoint", "board_table", "collect", "finalists",
           "importance_table", "leaderboard", "markdown", "others_test_table", "source_columns",
           "split_table",
           "status_counts", "trial_checkpoints"]

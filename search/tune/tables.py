"""The search's tables, done right: per-trial rows, per-epoch history, the finalists.

Pure functions over what Tune returns (a ``ResultGrid``) and what the trials wrote
(checkpoints with their metrics, and each trial's own epoch history:
:mod:`search.train.history`), so the same code serves a finished, a resumed and a partly
failed search. A trial's epochs come from its own history files; Tune's result.json
(``Result.metrics_dataframe``) is read only for a trial that has none (a results folder
from before those files), so Tune's logger callbacks are optional. Every trial is checked
against what Tune counted: epochs Tune saw but no file holds are named in the trials table
(``missing_epochs``, ``history_note``). The leaderboard built from them after the search
(with the test split, robustness and latency) is :mod:`search.leaderboard`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from search import catalog
from search.catalog import COSTS
from search.display import missing
from search.filenames import (
    CHECKPOINT_GLOB,
    CONFIG,
    TRAIN_RUNS,
    TRIAL_PREFIX,
    TRIALS_CSV,
    TRIALS_PARQUET,
    checkpoint_in,
    relative_checkpoint,
    trial_dirname,
)
from search.model.checkpoint import checkpoint_metrics
from search.train.history import missing_epochs, read_history, spans
from search.train.record import RECORD, unpack

#: Where each epoch ran (reported by the training loop): a trial's node, host and process.
PLACEMENT = ("node_id", "hostname", "pid")
#: What running the model costs, when a trial measured it (search.model.latency: the same every
#: epoch): its latency per image, the p90, and what measuring it cost the trial.
COST = COSTS


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
        metrics = checkpoint_metrics(path)
        if best[0] is None or _better(metrics.get(metric), best[1].get(metric), mode):
            best = (path, metrics)
    return best


def _trial_id(result: Any) -> str:
    tid = (result.metrics or {}).get("trial_id")
    return str(tid) if tid else Path(result.path).name


def collect(results: Sequence[Any], *, experiment_dir: str | Path, metric: str, mode: str,
            max_epochs: int, param_names: Sequence[str], unfinished: Collection[str] = (),
            location: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history) from Tune results: one row per trial, one row per trial-epoch.

    ``unfinished``: trials a Ctrl-C caught mid-run (``INTERRUPTED``, not stopped early:
    ``--resume`` continues them). ``location``: where the trials wrote their history files
    (the experiment's storage path or URI; ``experiment_dir`` when not given).
    """
    where = experiment_dir if location is None else location
    rows, history = [], []
    for result in results:
        tid = _trial_id(result)
        frame, gap, note = _epochs(result, where, tid)
        epochs = int(frame["epoch"].max()) if len(frame) else 0
        seen = tune_epochs(result)
        if len(frame):  # which epochs the scheduler saw (a DDP trial may train one more)
            history.append(frame.assign(trial_id=tid, seen_by_tune=frame["epoch"] <= seen))
        config = result.config or {}  # None for a trial restored before it reported
        row = {"trial_id": tid, "status": _status(result, tid, seen, max_epochs, unfinished),
               **{k: config.get(k) for k in param_names if k in config},
               "epochs": epochs, "tune_epochs": seen,
               "wall_time_s": float(frame["time_total_s"].max())
               if "time_total_s" in frame else float("nan"),
               **_scores(frame, metric, mode),
               "missing_epochs": spans(gap), "history_note": note}
        if result.error is not None:
            row["error"] = str(result.error).strip().splitlines()[-1][:300]
        ckpt, _ = best_checkpoint(experiment_dir, tid, metric, mode)
        row["checkpoint"] = relative_checkpoint(experiment_dir, ckpt) if ckpt else ""
        rows.append(row)
    trials = pd.DataFrame(rows)
    if len(trials) and catalog.best(metric) in trials:
        trials = trials.sort_values(catalog.best(metric), ascending=(mode == "min"),
                                    na_position="last", ignore_index=True)
    hist = pd.concat(history, ignore_index=True) if history else pd.DataFrame()
    keep = ["trial_id", "epoch", "seen_by_tune", catalog.TRAIN_LOSS, "lr", "train_images",
            "epoch_time_s", "train_time_s", "data_wait_s", "data_first_batch_s", "eval_time_s",
            "sources_epoch", "sources_time_s", "time_total_s", "timestamp", *PLACEMENT, *COST,
            *sorted(catalog.metric_columns(hist.columns))]
    hist = hist[[c for c in keep if c in hist.columns]] if len(hist) else hist
    return trials, hist


def history_notes(trials: pd.DataFrame) -> list[str]:
    """One line per trial whose history lacks epochs Tune counted (empty when none does)."""
    if "history_note" not in trials:
        return []
    return [f"note: trial {r['trial_id']}: {r['history_note']}" for _, r in trials.iterrows()
            if isinstance(r["history_note"], str) and r["history_note"]]


def _epochs(result: Any, location: str | Path, tid: str) -> tuple[pd.DataFrame, list[int], str]:
    """A trial's reports, one per epoch (empty when it reported none), the epochs Tune
    counted that are not among them, and why (``""`` when none is missing).

    From the trial's own history files; from Tune's log (result.json) only when the trial
    wrote none. An epoch reported twice (re-run after a crash) is kept once: the last report.
    """
    records = read_history(location, tid)
    if records:
        frame, source = pd.DataFrame(records), "history"
    else:
        frame, source = _tune_log(result), "tune"
    last = tune_epochs(result)
    gap = missing_epochs(frame["epoch"] if len(frame) else [], last)
    note = ""
    if gap:
        which = f"epoch(s) {spans(gap)} of the {last} Tune counted"
        if source == "history":
            note = (f"{which} are not in the trial's history files (removed, or lost by the "
                    "storage): those epochs are missing from history.parquet")
        elif len(frame):
            note = (f"{which} are missing: the trial wrote no history files (results from "
                    "before per-trial histories) and Tune's result.json lacks them (its "
                    "driver died before Tune's logger wrote them)")
        else:
            note = (f"{which} are missing: the trial wrote no history files (results from "
                    "before per-trial histories) and Tune's result.json holds none (Tune's "
                    "logger callbacks were off, or its driver died before they wrote)")
    return frame, gap, note


def _tune_log(result: Any) -> pd.DataFrame:
    """A trial's reports as Tune logged them (result.json), one per epoch."""
    frame = result.metrics_dataframe
    if frame is None or not len(frame) or "epoch" not in frame:
        return pd.DataFrame()
    # A resumed trial can repeat epochs in Tune's log: keep each epoch's last report.
    frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch", ignore_index=True)
    if RECORD not in frame:
        return frame
    # A search's trial packed what Tune keeps no statistics of into one JSON string.
    rows = [unpack(r) for r in frame.to_dict("records")]
    return pd.DataFrame(rows)


def tune_epochs(result: Any) -> int:
    """The last epoch the trial reported to Tune: the report the scheduler decided on (a
    trial ASHA stopped may have trained further before the stop reached it)."""
    last = (result.metrics or {}).get("epoch")
    return int(last) if isinstance(last, int | float) and last == last else 0


def _status(result: Any, tid: str, seen: int, max_epochs: int,
            unfinished: Collection[str]) -> str:
    """ERROR, INTERRUPTED, STOPPED_EARLY (by the scheduler) or COMPLETED, from what Tune
    decided: a trial Tune ended before its budget's last report was stopped by the
    scheduler, whatever its history files hold (``seen``: :func:`tune_epochs`)."""
    # A trial's own budget when the space searches ``epochs``, else the experiment's.
    budget = int((result.config or {}).get("epochs", max_epochs))
    if result.error is not None:
        return "ERROR"
    if tid in unfinished:
        return "INTERRUPTED"
    return "STOPPED_EARLY" if seen < budget else "COMPLETED"


def _scores(frame: pd.DataFrame, metric: str, mode: str) -> dict[str, Any]:
    """Last epoch's validation scores, loss and placement; the best epoch's as ``best_*``."""
    if not len(frame):
        return {}
    last = frame.iloc[-1]
    reported = catalog.metric_columns(frame.columns)
    row = {k: last[k] for k in reported}
    row[catalog.TRAIN_LOSS] = last.get(catalog.TRAIN_LOSS)
    # Where the trial ran last (a retried trial may have moved to another node), its cost.
    row.update({k: last[k] for k in (*PLACEMENT, *COST) if k in frame.columns})
    if metric in frame:
        scores = frame[metric]
        pos = scores.idxmax() if mode == "max" else scores.idxmin()
        best = frame.loc[frame.index[-1] if pd.isna(pos) else pos]
        row["best_epoch"] = int(best["epoch"])
        row.update({catalog.best(k): best[k] for k in reported})
    return row


def finalists(trials: pd.DataFrame, metric: str,
              results_dir: str | Path | None = None) -> pd.DataFrame:
    """The best trial of each architecture (rows already sorted best first); with
    ``results_dir``, their ``checkpoint`` as folders there (:func:`checkpoint_in`)."""
    ok = trials[(trials["status"] != "ERROR") & trials["checkpoint"].astype(bool)]
    if catalog.best(metric) in ok:
        ok = ok[ok[catalog.best(metric)].notna()]
    chosen = ok.drop_duplicates("arch", keep="first") if "arch" in ok else ok.head(1)
    if results_dir is not None:
        chosen = chosen.assign(checkpoint=[str(checkpoint_in(results_dir, c))
                                           for c in chosen["checkpoint"]])
    return chosen


def read_trials_csv(path: str | Path) -> pd.DataFrame:
    """trials.csv as written, trial ids kept as text: read as numbers, Tune's hex ids such
    as ``6e672458`` (6 x 10^672458: inf) or ``12345678`` would not match any folder."""
    return pd.read_csv(path, dtype={"trial_id": str})


def trials_table_path(results_dir: str | Path) -> Path:
    """The search's trials table in ``results_dir``: trials.parquet, else trials.csv."""
    for name in (TRIALS_PARQUET, TRIALS_CSV):
        if (Path(results_dir) / name).is_file():
            return Path(results_dir) / name
    raise FileNotFoundError(f"{results_dir} has no {TRIALS_PARQUET} or {TRIALS_CSV}: is it the "
                            "results folder of a finished search (results/<experiment>)?")


def read_trials_table(path: str | Path) -> pd.DataFrame:
    """A trials table (parquet or csv, by its name) with trial ids as strings."""
    path = Path(path)
    trials = pd.read_parquet(path) if path.suffix == ".parquet" else read_trials_csv(path)
    trials["trial_id"] = trials["trial_id"].astype(str)
    return trials


__all__ = ["COST", "PLACEMENT", "TRAIN_RUNS", "TRIAL_PREFIX", "best_checkpoint", "collect",
           "finalists", "history_notes", "read_trials_csv", "read_trials_table",
           "trial_checkpoints", "trials_table_path", "tune_epochs"]

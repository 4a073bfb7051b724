"""The study's tables, done right: per-trial rows, per-epoch history and the leaderboard.

Pure functions over what Tune returns (a ``ResultGrid``) and what the trials wrote
(checkpoints with their metrics, and each trial's own epoch history:
:mod:`search.train.history`), so the same code serves a finished, a resumed and a partly
failed search. A trial's epochs come from its own history files; Tune's result.json
(``Result.metrics_dataframe``) is read only for a trial that has none (a results folder
from before those files), so Tune's logger callbacks are optional. Every trial is checked
against what Tune counted: epochs Tune saw but no file holds are named in the trials table
(``missing_epochs``, ``history_note``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search import catalog
from search.catalog import COSTS
from search.display import markdown_table, missing
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
from search.robustness_table import NOTE as ROBUSTNESS_NOTE
from search.robustness_table import Robustness, robustness_table, split_of
from search.train.history import missing_epochs, read_history, spans

#: The columns of the study's table, then the ones it needed to be read correctly.
STUDY_COLUMNS = ("accuracy", "precision", "recall", "f1")
EXTRA_COLUMNS = ("auc", "ap", "eer", "balanced_accuracy", "threshold", "f1_at_threshold",
                 "baseline_accuracy", "baseline_f1")
CONFUSION = ("tp", "tn", "fp", "fn")
#: Where each epoch ran (reported by the training loop): a trial's node, host and process.
PLACEMENT = ("node_id", "hostname", "pid")
#: What running the model costs, when a trial measured it (search.model.latency: the same every
#: epoch): its latency per image, the p90, and what measuring it cost the trial.
COST = COSTS
#: The finalists' latency measured after the search (latency.json), merged into the trials.
FINAL_LATENCY = "final_latency_ms"


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
    keep = ["trial_id", "epoch", "seen_by_tune", "train_loss", "lr", "train_images", "epoch_time_s",
            "train_time_s", "data_wait_s", "data_first_batch_s", "eval_time_s", "sources_epoch",
            "sources_time_s", "time_total_s", "timestamp", *PLACEMENT, *COST,
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
    return frame.drop_duplicates("epoch", keep="last").sort_values("epoch", ignore_index=True)


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
    row["train_loss"] = last.get("train_loss")
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
LATENCY_NOTE = ("`latency ms`: the model's median ONNX Runtime latency per image on CPU (batch "
                "1, one thread, at its input size; search.model.latency), measured for each finalist "
                "after the search on the machine that ran it (latency.json), else the trial's "
                "own figure from during the search (noisier: other trials shared the machine).")
PARETO_NOTE = ("The trials no other trial beats on every objective ({objectives}), best "
               "`{first}` first. Values are each trial's best epoch by `{first}` (the checkpoint "
               "export takes) and its in-search latency (measured while other trials shared "
               "the machine). The Optuna study (optuna.db) holds each trial's last reported "
               "epoch instead, so where a trial's last epoch was not its best (ASHA, a falling "
               "curve) its front can differ.")
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
    return [str(catalog.MetricName("auc", source=s))
            for s in catalog.sources_in(trials.columns, prefix=catalog.BEST)]


def latency_of(row: Mapping[str, Any]) -> Any:
    """A trial's latency per image: the finalists' clean figure (latency.json), else the
    one it measured during the search, else None."""
    final = row.get(FINAL_LATENCY)
    return row.get(COST[0]) if missing(final) else final


def has_latency(trials: pd.DataFrame) -> bool:
    """Whether any trial has a latency figure (the leaderboard then shows ``latency ms``)."""
    return any(c in trials and trials[c].notna().any() for c in (FINAL_LATENCY, COST[0]))


def with_latency(trials: pd.DataFrame, latency: Mapping[str, Mapping[str, Any]] | None,
                 ) -> pd.DataFrame:
    """``trials`` with the finalists' clean latency (latency.json: trial id -> figures) as
    the column ``final_latency_ms``; unchanged without figures."""
    if not latency:
        return trials
    return trials.assign(**{FINAL_LATENCY: [(latency.get(str(t)) or {}).get("median_ms")
                                            for t in trials["trial_id"]]})


def board_table(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The study's table: the best trial of each architecture, best first; with extra
    sources, their AUC (``auc@NAME``) beside the in-source ``auc``, all at the same epoch;
    with latencies, ``latency ms`` (:func:`latency_of`)."""
    extra = EXTRA_COLUMNS[:1] + (*source_columns(trials),) + EXTRA_COLUMNS[1:]
    cost = ["latency ms"] if has_latency(trials) else []
    header = ["model", *STUDY_COLUMNS, *extra, *cost, *CONFUSION, "ratio", "lr", "epoch",
              "trial"]
    metrics = (*STUDY_COLUMNS, *extra)
    return _frame(header, [[r.get("arch"), *(r.get(catalog.best(catalog.val(c))) for c in metrics),
                            *([latency_of(r)] if cost else []),
                            *(r.get(catalog.best(catalog.val(c))) for c in CONFUSION),
                            r.get("ratio"), r.get("lr"), r.get("best_epoch"), r.get("trial_id")]
                           for _, r in finalists(trials, metric).iterrows()])


# ------------------------------------------------------------------ several objectives
def pareto_front(points: Any, modes: Sequence[str]) -> np.ndarray:
    """Which rows of ``points`` (n rows, one column per objective) no other row dominates:
    at least as good on every objective and better on one, ``modes`` saying 'max' or 'min'
    per column. A row with a missing value is never on the front and dominates nothing;
    equal rows are both on it."""
    values = np.asarray(points, dtype=float).reshape(-1, len(modes))
    if any(m not in ("max", "min") for m in modes):
        raise ValueError(f"modes must be 'max' or 'min', not {list(modes)}")
    better = values * np.array([1.0 if m == "max" else -1.0 for m in modes])  # all 'max' now
    ok = np.isfinite(better).all(axis=1)
    front = ok.copy()
    rivals = better[ok]
    for i in np.flatnonzero(ok):
        front[i] = not np.any((rivals >= better[i]).all(axis=1) & (rivals > better[i]).any(axis=1))
    return front


def objective_column(trials: pd.DataFrame, name: str) -> str:
    """The trials table's column of an objective: its value at the trial's best epoch
    (``best_val_*``, the checkpoint export takes), else its only value (``latency_ms``)."""
    return catalog.best(name) if catalog.best(name) in trials else name


def objective_points(trials: pd.DataFrame, objectives: Sequence[str],
                     modes: Sequence[str]) -> pd.DataFrame:
    """One row per trial: id, architecture, status, best epoch, each objective's value
    (``objectives`` as columns) and ``pareto``: on the front of the trials that did not fail."""
    blank = pd.Series([None] * len(trials), index=trials.index, dtype=object)
    frame = pd.DataFrame({"trial_id": trials["trial_id"].astype(str),
                          **{k: trials.get(c, blank) for k, c in (("arch", "arch"),
                             ("status", "status"), ("epoch", "best_epoch"))}})
    for name in objectives:
        col = objective_column(trials, name)
        frame[name] = pd.to_numeric(trials[col], errors="coerce") if col in trials else np.nan
    eligible = frame[list(objectives)].where(frame["status"] != "ERROR")
    frame["pareto"] = pareto_front(eligible.to_numpy(), modes)
    return frame.reset_index(drop=True)


def pareto_table(trials: pd.DataFrame, objectives: Sequence[str],
                 modes: Sequence[str]) -> pd.DataFrame:
    """The Pareto front's trials, best first by the first objective."""
    points = objective_points(trials, objectives, modes)
    front = points[points["pareto"]].sort_values(objectives[0], ascending=modes[0] == "min",
                                                 kind="stable")
    header = ["trial", "model", *objectives, "epoch", "status"]
    return _frame(header, [[r["trial_id"], r["arch"], *(r[o] for o in objectives), r["epoch"],
                            r["status"]] for _, r in front.iterrows()])


def split_table(top: pd.Series, test: TestMetrics) -> pd.DataFrame:
    """One trial on validation (its best epoch) and, when it was scored, on test."""
    rows = [["validation", *(top.get(catalog.best(catalog.val(n))) for n in SPLIT_COLUMNS)]]
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


def pareto_note(objectives: Sequence[str], modes: Sequence[str]) -> str:
    """:data:`PARETO_NOTE` for these objectives."""
    named = ", ".join(f"`{o}` ({m})" for o, m in zip(objectives, modes))
    return PARETO_NOTE.format(objectives=named, first=objectives[0])


def leaderboard(trials: pd.DataFrame, *, metric: str, mode: str,
                test: TestMetrics | None = None,
                importances: Mapping[str, Mapping[str, float]] | str | None = None,
                title: str = "", robustness: Robustness | None = None,
                latency: TestMetrics | None = None, objectives: Sequence[str] = (),
                modes: Sequence[str] = ()) -> str:
    """The study's table (best trial per architecture) plus what it needed to be read;
    with ``objectives`` (and their ``modes``), the trials' Pareto front."""
    test = test or {}
    trials = with_latency(trials, latency)
    best = finalists(trials, metric)
    out = [f"# Leaderboard{': ' + title if title else ''}", "",
           BOARD_NOTE.format(metric=metric, mode=mode), "",
           *([SOURCES_NOTE, ""] if source_columns(trials) else []),
           *([LATENCY_NOTE, ""] if has_latency(trials) else []),
           markdown(board_table(trials, metric)), "", f"Trials: {status_counts(trials)}", ""]
    if objectives and len(trials):
        out += ["## Pareto front", "", pareto_note(objectives, modes), "",
                markdown(pareto_table(trials, objectives, modes)), ""]
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


__all__ = ["BOARD_NOTE", "COST", "FINAL_LATENCY", "IMPORTANCE_NOTE", "LATENCY_NOTE", "PARETO_NOTE",
           "SOURCES_NOTE", "SPLIT_COLUMNS", "TEST_NOTE", "TRAIN_RUNS", "TRIAL_PREFIX",
           "best_checkpoint", "board_table", "collect", "finalists", "has_latency",
           "history_notes", "importance_table", "latency_of", "leaderboard", "markdown",
           "objective_column", "objective_points", "others_test_table", "pareto_front", "pareto_note",
           "pareto_table", "read_trials_csv", "read_trials_table", "source_columns", "split_table", "status_counts",
           "trial_checkpoints", "trials_table_path", "with_latency"]

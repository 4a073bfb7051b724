"""The leaderboard, built after the search: the study's table (the best trial of each
architecture), the Pareto front of several objectives, the best trial on validation and on
the test split, the finalists' robustness and latency, and the parameter importances.

It reads what the search wrote (the trials table: :mod:`search.tune.tables`) and what the
finalists' stage measured after it (test metrics, robustness.json, latency.json), so it
sits in the after-search layer: the tune layer never imports it. leaderboard.md and the
HTML report (:mod:`search.report.sections`) share its tables and notes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from search import catalog
from search.catalog import CONFUSION, EXTRA_COLUMNS, SPLIT_COLUMNS, STUDY_COLUMNS
from search.display import markdown_table, missing
from search.robustness_table import NOTE as ROBUSTNESS_NOTE
from search.robustness_table import Robustness, robustness_table, split_of
from search.tune.tables import finalists

#: The finalists' latency measured after the search (latency.json), merged into the trials.
FINAL_LATENCY = "final_latency_ms"

#: What the leaderboard's tables mean, shared by leaderboard.md and the HTML report.
BOARD_NOTE = ("Best trial per architecture by validation `{metric}` ({mode}). FAKE is the "
              "positive class; metrics at threshold 0.5, `threshold` is the F1-optimal one on "
              "validation and `f1_at_threshold` the F1 there; `baseline_*` is always answering "
              "the majority class on the same split.")
TEST_NOTE = ("The test split was evaluated once, after the search, for the finalists only, "
             "at the threshold chosen on validation; it was never used to choose.")
SOURCES_NOTE = ("`auc@NAME`: the validation AUC of the extra source NAME (data.extra_sources) "
                "at the same epoch; `auc@mean` and `auc@worst`: the mean and the lowest AUC "
                "over the training source and every extra one.")
LATENCY_NOTE = ("`latency ms`: the model's median ONNX Runtime latency per image on CPU (batch "
                "1, one thread, at its input size; search.model.latency), measured for each "
                "finalist after the search on the machine that ran it (latency.json), else the "
                "trial's own figure from during the search (noisier: other trials shared the "
                "machine).")
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
    return [str(catalog.MetricName(catalog.AUC, source=s))
            for s in catalog.sources_in(trials.columns, prefix=catalog.BEST)]


def latency_of(row: Mapping[str, Any]) -> Any:
    """A trial's latency per image: the finalists' clean figure (latency.json), else the
    one it measured during the search, else None."""
    final = row.get(FINAL_LATENCY)
    return row.get(catalog.LATENCY_MS) if missing(final) else final


def has_latency(trials: pd.DataFrame) -> bool:
    """Whether any trial has a latency figure (the leaderboard then shows ``latency ms``)."""
    return any(c in trials and trials[c].notna().any() for c in (FINAL_LATENCY, catalog.LATENCY_MS))


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
WHOLE = (*catalog.CONFUSION, "epoch", catalog.N)


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


__all__ = ["BOARD_NOTE", "FINAL_LATENCY", "IMPORTANCE_NOTE", "LATENCY_NOTE", "PARETO_NOTE",
           "SOURCES_NOTE", "SPLIT_COLUMNS", "TEST_NOTE", "WHOLE", "TestMetrics", "board_table",
           "has_latency", "importance_table", "latency_of", "leaderboard", "markdown",
           "objective_column", "objective_points", "others_test_table", "pareto_front",
           "pareto_note", "pareto_table", "source_columns", "split_table", "status_counts",
           "with_latency"]

"""A study: the search, then the stage after it, then the leaderboard.

:func:`run_search` is what ``deepfake-search run`` and ``search/run.py`` (``ray submit``)
call: Tune runs the trials (:func:`search.tune.tuner.search`) and writes its tables
(:func:`~search.tune.tuner.write_tables`); the after-the-search stage
(:mod:`search.evaluate.finalists`) scores the finalists' test split once, with robustness,
the cross-source matrix and latency; the leaderboard is written from all of it, and a
search on remote storage uploads its local results. :func:`finish` is the part after Tune,
also run alone to re-finish a search from its saved state.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search import storage
from search.config import ExperimentConfig
from search.evaluate.finalists import evaluate_finalists, finalist_latency
from search.filenames import (
    CHECKPOINT_GLOB,
    LATENCY,
    LEADERBOARD,
    TEST_PREDICTIONS,
    json_safe,
)
from search.leaderboard import leaderboard
from search.storage import experiment_dir
from search.train.driver import TrialData
from search.tune import study_store, tables, tuner
from search.tune.importance import param_importances

#: The line printed when the finalists' test evaluation starts (the search's trials are done).
FINALISTS_LINE = "evaluating the finalists on the test split"


@dataclass
class SearchOutcome:
    """Where a finished search put things, and its tables."""

    experiment_dir: Path
    trials: pd.DataFrame
    history: pd.DataFrame
    leaderboard: str
    test: dict[str, dict[str, Any]]
    remote: str = ""  # the storage URI the local folder was uploaded to, if any
    interrupted: bool = False  # Ctrl-C: the tables hold the trials so far; --resume continues
    study: str = ""  # where the Optuna study is (study_store.describe)

    def summary(self) -> str:
        d = self.experiment_dir
        lines = [] if not self.remote else [f"storage:     {self.remote}  (trials, checkpoints, "
                                            "TensorBoard; the files below are uploaded there)"]
        return "\n".join([
            self.leaderboard.split("## Parameter importances")[0].rstrip(), "", *lines,
            f"results:     {d}  (trials.parquet/.csv, history.parquet, leaderboard.md)",
            f"optuna:      {self.study}  (optuna-dashboard, optuna.visualization)",
            f"tensorboard: tensorboard --logdir {d}",
        ])


def run_search(cfg: ExperimentConfig, *, resume: bool = False, verbose: bool = False,
               evaluate_test: bool = True) -> SearchOutcome:
    """Run (or resume) a search end to end; see the module docstring."""
    run = tuner.search(cfg, resume=resume, verbose=verbose)
    outcome = finish(run.cfg, run.results, evaluate_test=evaluate_test,
                     unfinished=run.unfinished, data=run.data)
    outcome.interrupted = run.interrupted
    return outcome


def finish(cfg: ExperimentConfig, results: Any, *, evaluate_test: bool = True,
           unfinished: Collection[str] = (), data: TrialData | None = None) -> SearchOutcome:
    """Write the tables, run the after-the-search stage on the finalists, write the
    leaderboard (and upload everything to a remote storage path)."""
    written = tuner.write_tables(cfg, results, unfinished=unfinished)
    exp_dir, trials, finalists = written.exp_dir, written.trials, written.finalists
    test, robust = {}, {}
    if evaluate_test and len(trials):
        # Said before it starts: a driver that dies in this stage is resumed with --resume
        # (no trial to run: the stage runs again whole, each finalist's test split scored
        # once more and its files rewritten, never appended to).
        print(f"{FINALISTS_LINE}: trial(s) "
              f"{', '.join(str(t) for t in finalists['trial_id'])}", flush=True)
        test, robust = evaluate_finalists(cfg, exp_dir, finalists, data)
    latency = finalist_latency(finalists) if len(trials) else {}
    (exp_dir / LATENCY).write_text(json.dumps(json_safe(latency), indent=1))
    board = leaderboard(trials, metric=cfg.search.metric, mode=cfg.search.resolved_mode(),
                        test=test,
                        importances=param_importances(study_store.reader(exp_dir, cfg),
                                                      cfg.search.name),
                        title=cfg.search.name, robustness=robust, latency=latency,
                        objectives=cfg.search.objectives, modes=cfg.search.objective_modes())
    (exp_dir / LEADERBOARD).write_text(board + "\n")
    outcome = SearchOutcome(exp_dir, trials, written.history, board, test,
                            study=study_store.describe(cfg, exp_dir))
    location = experiment_dir(cfg)
    if storage.is_uri(location):
        sync_up(outcome, location)
    return outcome


def sync_up(outcome: SearchOutcome, location: str) -> None:
    """Upload the local results (tables, study, report, the finalists' test predictions) to
    the experiment's URI; Tune and Train have already written everything else there."""
    storage.upload(outcome.experiment_dir, location, skip=(tables.TRAIN_RUNS,))
    pattern = f"*/{CHECKPOINT_GLOB}/{TEST_PREDICTIONS}"  # trial folders, then Train runs
    for path in [*outcome.experiment_dir.glob(pattern),
                 *outcome.experiment_dir.glob(f"{tables.TRAIN_RUNS}/{pattern}")]:
        rel = path.relative_to(outcome.experiment_dir).as_posix().split("/")
        storage.upload_file(path, storage.join(location, *rel))
    outcome.remote = location


__all__ = ["FINALISTS_LINE", "SearchOutcome", "finish", "run_search", "sync_up"]

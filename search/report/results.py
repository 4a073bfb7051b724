"""What the report reads from a results folder, loaded once (pandas; no torch, no Ray).

The readers here take only the files a search wrote (see :mod:`search.filenames`), so the
report of a finished search is written without the training stack installed or imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search import catalog, filenames
from search.config import ConfigError, ExperimentConfig, config_from_dict, trial_param_section
from search.leaderboard import with_latency
from search.tune import study_store
from search.tune.importance import param_importances
from search.tune.tables import finalists, read_trials_table, trials_table_path

Metrics = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Results:
    """A finished search as the report sees it: its config, tables and scores."""

    directory: Path
    cfg: ExperimentConfig
    trials: pd.DataFrame
    history: pd.DataFrame
    test: Metrics  # trial id -> test-split metrics of the finalists
    finals: pd.DataFrame  # the best trial of each architecture
    params: list[str]  # parameters that varied across the trials (arch first)
    importances: dict[str, dict[str, float]] | str  # or why there are none
    cross: dict[str, Any] | None  # the cross-dataset matrix, when evaluate --cross wrote one
    robustness: Metrics | None = None  # trial id -> AUC under perturbations, when scored
    latency: Metrics | None = None  # trial id -> the finalists' ONNX latency (latency.json)
    report_dir: Path | None = None  # where the report goes (report --out); None: <directory>/report

    @property
    def metric(self) -> str:
        return self.cfg.search.metric

    @property
    def best_column(self) -> str:
        """The trials table's column of each trial's best validation ``metric``."""
        return catalog.best(self.metric)

    @property
    def out(self) -> Path:
        """The report's folder: ``report --out``, else ``<results folder>/report``."""
        return self.report_dir or self.directory / filenames.REPORT_DIR


def read_trials(results_dir: Path) -> pd.DataFrame:
    """The search's trials table (parquet, else csv), with trial ids as strings."""
    return read_trials_table(trials_table_path(results_dir))


def read_experiment(results_dir: Path) -> ExperimentConfig:
    """The experiment configuration saved by the search."""
    path = results_dir / filenames.EXPERIMENT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {results_dir} a search's results folder?")
    return config_from_dict(json.loads(path.read_text()))


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _is_trial_param(name: str) -> bool:
    try:
        trial_param_section(name)
    except ConfigError:
        return False
    return True


def searched_params(results_dir: Path, trials: pd.DataFrame) -> list[str]:
    """The parameters that varied across the trials, ``arch`` first, else in the space's
    order (``space.txt``, one parameter per line) then the table's."""
    space = results_dir / filenames.SPACE
    names = [line.split()[0] for line in space.read_text().splitlines() if line.strip()] \
        if space.is_file() else []
    # "epochs" in the table is the number of epochs a trial ran, not a sampled budget.
    names += [c for c in trials.columns if c != "epochs" and _is_trial_param(c)]
    varied = [p for p in dict.fromkeys(names)
              if p in trials and trials[p].dropna().astype(str).nunique() > 1]
    return sorted(varied, key=lambda p: p != "arch")  # stable: arch first, the rest in order


def checkpoint_dir(results_dir: Path, path: Any) -> Path | None:
    """A trial's checkpoint folder in ``results_dir`` (:func:`search.filenames.checkpoint_in`:
    also when the results folder was moved or copied since), ``None`` when it is not there."""
    found = filenames.checkpoint_in(results_dir, path)
    return found if found is not None and found.is_dir() else None


def load_results(results_dir: str | Path) -> Results:
    """Everything the report shows, read from ``results_dir``."""
    directory = Path(results_dir).expanduser().resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"results folder {directory} does not exist")
    cfg = read_experiment(directory)
    latency = _json(directory / filenames.LATENCY)
    # The finalists' clean latency beside the trials' own: the leaderboard shows it.
    trials = with_latency(read_trials(directory), latency)
    history_path = directory / filenames.HISTORY
    history = pd.read_parquet(history_path) if history_path.is_file() else pd.DataFrame()
    finals = finalists(trials, cfg.search.metric) if "status" in trials else trials
    return Results(directory=directory, cfg=cfg, trials=trials, history=history,
                   test=_json(directory / filenames.TEST_METRICS) or {}, finals=finals,
                   params=searched_params(directory, trials),
                   importances=param_importances(study_store.reader(directory, cfg),
                                                 cfg.search.name),
                   cross=_json(directory / filenames.CROSS_JSON),
                   robustness=_json(directory / filenames.ROBUSTNESS), latency=latency)


__all__ = ["Results", "checkpoint_dir", "load_results", "read_experiment", "read_trials",
           "searched_params"]

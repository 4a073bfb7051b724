"""Which trial an export takes: the best by a validation metric, or one named by id.

The trials table and the experiment saved by the search are read here, and the chosen
checkpoint is found inside *this* results folder (fetched from remote storage when the
search mirrored only its finalists' weights), so a copied folder exports its own weights.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from search import catalog, storage
from search.config import ConfigError, ExperimentConfig, config_from_dict
from search.filenames import EXPERIMENT, WEIGHTS, checkpoint_in
from search.model.checkpoint import released_error
from search.model.folder import load_json
from search.tune.tables import best_checkpoint, read_trials_table, trials_table_path

# Columns export reads from the trials table (written by search.tune.tables).
TRIAL_COLUMNS = ("trial_id", "status", "checkpoint")


def load_trials(results_dir: Path) -> pd.DataFrame:
    """The search's trials table (parquet, else csv), with trial ids as strings; a table
    that cannot be read or lacks the columns export needs is an error naming it."""
    path = trials_table_path(results_dir)
    try:
        trials = read_trials_table(path)
    except Exception as err:  # pyarrow/pandas errors on a damaged table
        raise ValueError(f"{path} cannot be read ({str(err)[:200]}): it is damaged; "
                         "re-create it by resuming the search (run --resume)") from None
    missing = [c for c in TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)} that export "
                         "needs: it is not a trials table this version wrote; pass "
                         "--trial ID with a complete table, or re-run the search")
    return trials


def load_experiment(results_dir: Path) -> ExperimentConfig:
    """The experiment configuration saved by the search."""
    path = results_dir / EXPERIMENT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {results_dir} a search's results folder?")
    try:
        return config_from_dict(load_json(path, "it is damaged: copy it again from the "
                                          "experiment's storage path, or re-run the search"))
    except ConfigError as err:
        raise ValueError(f"{path}: {err}") from None


def choose_trial(results_dir: str | Path, *, trial_id: str | None = None,
                 metric: str | None = None) -> tuple[pd.Series, Path, str, str]:
    """(trials row, checkpoint folder, metric, mode) of the trial to export.

    The best trial by the validation ``metric`` (default the search's own, in its mode),
    or the one named by ``trial_id``. With a metric other than the search's, the trial's
    kept checkpoint that is best by that metric is used.
    """
    results_dir = Path(results_dir)
    cfg = load_experiment(results_dir)
    trials = load_trials(results_dir)
    metric = catalog.with_val(metric or cfg.search.metric)
    if metric == cfg.search.metric:
        mode = cfg.search.resolved_mode()
    else:
        mode = catalog.mode(metric)
    column = catalog.best(metric)
    usable = trials[(trials["status"] != "ERROR") & trials["checkpoint"].fillna("").astype(bool)]
    if trial_id is not None:
        row = trials[trials["trial_id"] == str(trial_id)]
        if row.empty:
            raise ValueError(f"no trial {trial_id!r} in {results_dir}; trials: "
                             + ", ".join(trials["trial_id"]))
        if str(trial_id) not in set(usable["trial_id"]):
            raise ValueError(f"trial {trial_id} has no checkpoint to export "
                             f"(status {row.iloc[0]['status']})")
        best = row.iloc[0]
    else:
        if column not in usable or usable[column].notna().sum() == 0:
            valid = sorted(catalog.metric_columns(c.removeprefix(catalog.BEST) for c in trials
                                                  if c.startswith(catalog.BEST)))
            raise ValueError(f"metric {metric!r} is not in {results_dir}'s trials table; "
                             f"choose one of: {', '.join(valid)}")
        ranked = usable[usable[column].notna()].sort_values(
            column, ascending=(mode == "min"), kind="stable")
        best = ranked.iloc[0]
    # The checkpoint inside *this* results folder, wherever the table was written: a copied
    # or moved folder exports its own weights, never the original's.
    checkpoint = checkpoint_in(results_dir, best["checkpoint"])
    if metric != cfg.search.metric:
        other, _ = best_checkpoint(results_dir, best["trial_id"], metric, mode)
        checkpoint = other or checkpoint
    if not (checkpoint / WEIGHTS).is_file():
        _fetch_from_storage(cfg, results_dir, checkpoint)
    released = released_error(checkpoint, best["trial_id"])
    if released:
        raise ValueError(released)
    if not (checkpoint / WEIGHTS).is_file():
        raise FileNotFoundError(
            f"trial {best['trial_id']}'s checkpoint {checkpoint} has no {WEIGHTS}: the results "
            f"folder {results_dir} does not hold it (copied or moved without its trial folders, "
            "or cleaned); copy the trial folders too, or export from the original folder")
    return best, checkpoint, metric, mode


def _fetch_from_storage(cfg: ExperimentConfig, results_dir: Path, checkpoint: Path) -> None:
    """A search on remote storage mirrors only the finalists' weights: fetch any other's."""
    location = storage.experiment_dir(cfg)
    if storage.is_uri(location) and checkpoint.is_relative_to(results_dir):
        storage.fetch_checkpoint(location, results_dir, checkpoint)


__all__ = ["TRIAL_COLUMNS", "choose_trial", "load_experiment", "load_trials"]

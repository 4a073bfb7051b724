"""The search: Ray Tune over ``driver.run_trial`` with OptunaSearch (TPE) and ASHA.

:func:`search` starts or resumes an experiment under ``<storage>/<name>/`` (the Optuna study
and TensorBoard logs live there) and returns what Tune found; :func:`write_tables` turns
that into the trials and history tables. The search ends there: what is done with its
finalists afterwards (the test split, robustness, latency, the leaderboard) is the stage
above it (:mod:`search.evaluate.finalists`, :mod:`search.study`).

This module builds the ``Tuner`` and runs it; beside it, :mod:`~search.tune.searcher` (the
Optuna searcher and the ASHA scheduler), :mod:`~search.tune.progress` (the console lines)
and :mod:`~search.tune.callbacks` (the callbacks the ``Tuner`` runs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
import ray.data
from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.execution.cluster_info import _is_ray_cluster

from search import storage
from search.config import ConfigError, ExperimentConfig
from search.data.demo import ensure_demo_shards
from search.data.stream import quiet_ray_data
from search.filenames import EXPERIMENT as CONFIG_FILE
from search.filenames import (
    HISTORY,
    SPACE,
    TRIALS_CSV,
    TRIALS_PARQUET,
    portable_experiment,
    trial_dirname,
)
from search.storage import experiment_dir, local_experiment_dir
from search.train.driver import (
    TrialData,
    init_ray,
    resolve_data,
    resolve_runtime,
    trial_bundles,
    trial_trainable,
    tune_signals_restored,
    worker_bundles,
)
from search.tune import study_store, tables
from search.tune.callbacks import search_callbacks
from search.tune.janitor import sweep
from search.tune.progress import ProgressPrinter, TuneInterruptFilter, without_tune_log_warning
from search.tune.searcher import (
    ResumableOptunaSearch,
    build_scheduler,
    build_searcher,
    epoch_budget,
)
from search.tune.space import check_points, describe, space_for


def max_concurrent(cfg: ExperimentConfig) -> int | None:
    """An explicit cap on concurrent trials, or ``None``: as many as can be reserved now.

    A single-worker trial reserves all it uses in its own placement group, so Tune starts a
    trial exactly when its group can be placed; on a cluster that grows or shrinks,
    concurrency follows. A cap above what fits is obeyed without starving anything: the
    trials beyond what fits wait for their reservation, and running trials keep theirs.

    A DDP trial's workers are not in that group: ``TorchTrainer`` asks for their own group
    once the trial has started. Uncapped, Tune starts every trial whose small group fits, and
    on a fixed cluster their worker groups then wait for each other's CPUs for ever
    (measured: two 2-worker trials on a 4-CPU machine, no epoch in 10 minutes). So DDP trials
    are capped at how many whole trials (own group and workers) the cluster holds now, at
    least one; on an autoscaling cluster (the launcher's) the autoscaler adds the nodes a
    waiting worker group asks for instead, and the cap stays off.
    """
    if cfg.cluster.max_concurrent_trials:
        return cfg.cluster.max_concurrent_trials
    if cfg.cluster.num_workers == 1 or _is_ray_cluster():
        return None
    return max(1, trials_that_fit(cfg, with_workers=True))


def trials_that_fit(cfg: ExperimentConfig, *, with_workers: bool = False) -> int:
    """How many trials' placement groups the alive nodes could hold at once (PACK); with
    ``with_workers``, each with its DDP workers' group too."""
    bundles = trial_bundles(cfg) + (worker_bundles(cfg) if with_workers else [])
    free = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    count = 0
    while True:
        for bundle in bundles:
            node = next((r for r in free if all(r.get(k, 0.0) + 1e-9 >= v
                                                 for k, v in bundle.items())), None)
            if node is None:
                return count
            for k, v in bundle.items():
                node[k] -= v
        count += 1


def check_fits(cfg: ExperimentConfig) -> int:
    """Refuse, before any trial starts, a trial that no node of this cluster can ever hold.

    On a launcher (autoscaling) cluster the nodes that fit may still be coming, so there it
    is a note; anywhere else Tune would wait for ever.
    """
    fits = trials_that_fit(cfg, with_workers=True)  # a DDP trial's workers too
    if fits == 0:
        need = " + ".join(str(b) for b in trial_bundles(cfg) + worker_bundles(cfg))
        msg = (f"one trial needs {need} (cluster.cpus_per_worker, cluster.gpus_per_worker, "
               f"cluster.data_cpus, cluster.num_workers) but no node of this cluster has that: "
               "lower them or add a node that fits")
        if not _is_ray_cluster():
            raise ConfigError(msg)
        print(f"note: {msg}; waiting for the autoscaler", flush=True)
    cap = cfg.cluster.max_concurrent_trials
    if cap and fits and cap > fits:
        print(f"note: cluster.max_concurrent_trials={cap} but {fits} trial(s) fit the cluster "
              "now; the others wait for a reservation, none starves", flush=True)
    return fits


def keep_data_coordinator_on_driver_node() -> None:
    """Create Ray Data's ``AutoscalingCoordinator`` here, on the driver's node, before any trial.

    Ray Data (2.60) creates that detached actor, hard-pinned to the node of the first process
    that runs a dataset, for the life of the cluster (``get_or_create_autoscaling_coordinator``).
    From a trial, that is a worker node the autoscaler added, which then never goes idle and is
    never removed (seen with tests/cluster/test_autoscaling.py; upstream ray #56576, #62260).
    Made first from the driver (the head, under ``ray submit``), the trials find it there by
    name. A Ray without it (moved, renamed) is left to do as it does.
    """
    try:
        from ray.data._internal.cluster_autoscaler import get_or_create_autoscaling_coordinator
    except ImportError:
        return
    get_or_create_autoscaling_coordinator()


def _trial_dirname(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


def build_tuner(cfg: ExperimentConfig, data: TrialData | None = None, *, resume: bool = False,
                verbose: bool = False) -> Any:
    """The ``Tuner`` for an experiment (new, or restored from its folder), its trials reading
    the search's resolved ``data`` (resolved here when not given)."""
    mode = cfg.search.resolved_mode()
    space = space_for(cfg)
    location = experiment_dir(cfg)  # where Tune and Train write: a path or a URI
    exp_dir = local_experiment_dir(cfg)  # where the driver writes (the same, when local)
    max_epochs = epoch_budget(space, cfg)
    trainable = trial_trainable(cfg, data or resolve_data(cfg),
                                storage_path=storage.join(location, tables.TRAIN_RUNS),
                                metric=cfg.search.metric, mode=mode)
    if resume:
        if not tune.Tuner.can_restore(location):
            raise ConfigError(f"nothing to resume at {location}: no interrupted experiment there")
        if storage.is_uri(location):
            study_store.fetch(cfg, exp_dir, location)
        return tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    if tune.Tuner.can_restore(location):
        raise ConfigError(f"{location} already holds an experiment: pass --resume to continue it "
                          "or --name NEW to start another")
    exp_dir.mkdir(parents=True, exist_ok=True)
    _set_aside_stale_study(cfg, exp_dir)
    (exp_dir / CONFIG_FILE).write_text(json.dumps(portable_experiment(cfg.to_dict()), indent=1))
    (exp_dir / SPACE).write_text(describe(space) + "\n")
    if storage.is_uri(location):  # so that --resume from another machine finds the config
        storage.upload(exp_dir, location, skip=(*study_store.LOCAL_FILES, tables.TRAIN_RUNS))
    printer = ProgressPrinter(cfg.search.metric, mode, max_epochs, cfg.search.num_samples)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=cfg.search.metric, mode=mode, num_samples=cfg.search.num_samples,
            search_alg=build_searcher(cfg, space, mode, exp_dir),
            scheduler=build_scheduler(cfg, max_epochs),
            max_concurrent_trials=max_concurrent(cfg),
            trial_dirname_creator=_trial_dirname,  # short names: TensorBoard shows them
            # A finished trial's process (torch, timm, Ray Data already imported) serves the
            # next one. Safe with ASHA: the loop leaves between batches when told to stop.
            # (Single-worker trials only: a reused DDP trial would keep its Train run alive.)
            reuse_actors=cfg.cluster.reuse_actors and cfg.cluster.num_workers == 1,
        ),
        run_config=tune.RunConfig(
            name=cfg.search.name, storage_path=_storage_root(location),
            failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures),
            checkpoint_config=checkpoint_config(cfg, mode, max_epochs),
            callbacks=search_callbacks(cfg, printer, exp_dir, location),
            verbose=1 if verbose else 0,
        ),
    )


def checkpoint_config(cfg: ExperimentConfig, mode: str, max_epochs: int) -> Any:
    """Which checkpoint folders Tune keeps: every epoch's of a trial (``max_epochs``, at
    least 2), best first by the metric. What they hold is retention's business
    (:mod:`search.tune.retention`: weights only where a finalist or a resume can need them),
    so the count bounds only small files (config.json, validation predictions).

    Why not Tune's usual 2: Tune forces a snapshot of its whole experiment state (O(trials):
    17 KB a trial) whenever one trial has checkpointed ``num_to_keep`` times since the last
    snapshot (ray/tune/execution/experiment_state.py, its consistency workaround); with
    many trials reporting an epoch every few seconds that is nearly every result, and the
    start rate fell from 0.85 to 0.37 trials/s by trial 1,000 (issue 29). With a trial's
    whole budget as ``num_to_keep`` a snapshot is forced only when one trial runs all its
    epochs between two of Tune's own (TUNE_GLOBAL_CHECKPOINT_S; auto: every 10 s or more)."""
    return tune.CheckpointConfig(num_to_keep=max(2, max_epochs),
                                 checkpoint_score_attribute=cfg.search.metric,
                                 checkpoint_score_order=mode)


def _set_aside_stale_study(cfg: ExperimentConfig, exp_dir: Path) -> Path | None:
    """Move an Optuna study left by a search that never got going out of the way.

    A driver killed before Tune saved any state leaves ``optuna.db`` behind but nothing to
    resume; OptunaSearch would load that study and mix its trials into the new search.
    """
    stale = study_store.set_aside_stale(cfg, exp_dir, time.strftime('%Y%m%d-%H%M%S'))
    if stale is None:
        return None
    db = stale.with_name(stale.name.split(".stale-")[0])
    print(f"note: {db} belonged to an earlier search that cannot be resumed; moved to "
          f"{stale.name}", flush=True)
    return stale


def _storage_root(location: str) -> str:
    """The storage path that holds the experiment folder ``location``."""
    if storage.is_uri(location):
        return location.rstrip("/").rsplit("/", 1)[0]
    return str(Path(location).parent)


@dataclass
class SearchRun:
    """What Tune did: the ResultGrid, the runtime config and resolved data its trials used,
    and whether a Ctrl-C (or SIGTERM) ended it, with the trials it caught mid-run."""

    cfg: ExperimentConfig
    data: TrialData
    results: Any
    interrupted: bool = False
    unfinished: frozenset[str] = frozenset()


def search(cfg: ExperimentConfig, *, resume: bool = False, verbose: bool = False) -> SearchRun:
    """Run (or resume) the trials of an experiment; the tables are :func:`write_tables`'."""
    cfg = ensure_demo_shards(cfg)
    data = resolve_data(cfg)  # every manifest read here, once for the whole search
    # Reject typos in the space, experiment values it would replace and seeded points
    # that do not fit it, before any cluster starts.
    check_points(cfg.search.points_to_evaluate, space_for(cfg))
    init_ray(cfg, verbose=verbose)
    cfg = resolve_runtime(cfg, data)
    check_fits(cfg)
    keep_data_coordinator_on_driver_node()
    if not verbose:
        # Our ProgressPrinter replaces Tune's banner and status tables, and Optuna's INFO lines.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # The finalists' evaluation streams in this process: no Ray Data progress tables.
        quiet_ray_data()
    with _interruption() as interrupted, without_tune_log_warning():
        tuner = build_tuner(cfg, data, resume=resume, verbose=verbose)
        results = tuner.fit()
        if cfg.cluster.num_workers > 1:  # DDP trials' worker groups, whatever stopped them
            sweep()
        unfinished = unfinished_trials(results.experiment_path) if interrupted else set()
    return SearchRun(cfg, data, results, bool(interrupted), frozenset(unfinished))


@dataclass
class Tables:
    """The search's own tables, written to the results folder (``exp_dir``)."""

    exp_dir: Path
    trials: pd.DataFrame
    history: pd.DataFrame
    finalists: pd.DataFrame  # the best trial of each architecture, their checkpoints here


def write_tables(cfg: ExperimentConfig, results: Any, *,
                 unfinished: Collection[str] = ()) -> Tables:
    """trials.parquet/.csv and history.parquet from Tune's results and the trials' own history
    files (a line is printed for each trial whose history lacks epochs Tune counted); with
    remote storage, the checkpoints' metadata (and the finalists' checkpoints whole)
    mirrored first."""
    mode = cfg.search.resolved_mode()
    space = space_for(cfg)
    location, exp_dir = experiment_dir(cfg), local_experiment_dir(cfg)
    remote = storage.is_uri(location)
    if remote:  # the tables choose checkpoints by their metrics: mirror those small files
        exp_dir.mkdir(parents=True, exist_ok=True)
        for runs in ("", tables.TRAIN_RUNS):  # single-worker trials, DDP trials' Train runs
            storage.mirror_checkpoint_metadata(location, exp_dir, runs)
    # Each trial's epochs from its own history files, read where the trials wrote them (the
    # storage path or URI): Tune's result.json is needed only for results from before them.
    trials, history = tables.collect(
        list(results), experiment_dir=exp_dir, metric=cfg.search.metric, mode=mode,
        max_epochs=epoch_budget(space, cfg), param_names=list(space), unfinished=unfinished,
        location=location)
    for line in tables.history_notes(trials):  # epochs Tune counted that no file holds
        print(line, flush=True)
    # The finalists' checkpoints as folders of this results folder (the tables record them
    # relative to it), for the stage after the search.
    finalists = tables.finalists(trials, cfg.search.metric, exp_dir) if len(trials) else trials
    if remote:  # finalists' checkpoints whole (weights too): test evaluation, report, export
        for path in finalists.get("checkpoint", []):
            if path:
                storage.fetch_checkpoint(location, exp_dir, path)
    exp_dir.mkdir(parents=True, exist_ok=True)
    trials.to_parquet(exp_dir / TRIALS_PARQUET, index=False)
    trials.to_csv(exp_dir / TRIALS_CSV, index=False)
    history.to_parquet(exp_dir / HISTORY, index=False)
    return Tables(exp_dir, trials, history, finalists)


@contextlib.contextmanager
def _interruption() -> Iterator[list[bool]]:
    """Within: Tune's interruption notice is caught; the list is non-empty after a Ctrl-C.
    The signal handlers ``Tuner.fit`` leaves installed are put back (:func:`tune_signals_restored`)."""
    log = logging.getLogger("ray.tune.tune")
    notice = TuneInterruptFilter()
    log.addFilter(notice)
    try:
        with tune_signals_restored():
            yield notice.seen
    finally:
        log.removeFilter(notice)


def unfinished_trials(experiment_path: str) -> set[str]:
    """Trials Tune had not ended when the search was interrupted (they resume with it)."""
    trials = ExperimentAnalysis(experiment_path).trials
    return {t.trial_id for t in trials if t.status not in ProgressPrinter.ENDED}


__all__ = ["ProgressPrinter", "ResumableOptunaSearch", "SearchRun", "Tables",
           "build_tuner", "check_fits", "max_concurrent", "search", "trials_that_fit",
           "unfinished_trials", "write_tables"]

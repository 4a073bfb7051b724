"""How the search samples and stops trials: Optuna's TPE (or random) sampler behind Tune's
OptunaSearch, made to survive a driver killed between two commits, and ASHA (or FIFO).

:mod:`search.tune.tuner` puts these into its ``Tuner``; bench/ (replay, peer) builds the
same searcher and scheduler through it, to measure what ``run`` does.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from search.config import ConfigError, ExperimentConfig
from search.tune import study_store
from search.tune.space import Param, sample


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that survives a driver killed between Optuna's commit and Tune's.

    The study lives in SQLite and commits each trial as it ends; Tune's experiment state is
    saved every few seconds. A crash in between leaves a trial finished in the study but
    unfinished for Tune, which re-runs it on ``--resume``: its results are then already in
    the study, so they are not written twice (Optuna would refuse: UpdateFinishedTrialError),
    neither its epochs nor (single- or multi-objective) its end.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._already_reported(trial_id, result):
            return
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if self._finished_in_study(trial_id):
            # Told before the crash: the study keeps those values (the rerun reports the
            # same last epoch again); telling it again would only log "Cannot tell a
            # COMPLETE trial" (with several objectives, nothing else catches the rerun).
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)

    def _finished_in_study(self, trial_id: str) -> bool:
        """Whether the study already holds this trial as ended, though this searcher (as
        restored from Tune's last save) has not seen it end."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return False
        # One trial read from the storage, not the study's every trial (O(n) per ended trial;
        # issue 29): Optuna has no public read of one trial by number.
        try:
            stored = ot_trial.storage.get_trial(ot_trial._trial_id)
        except (AttributeError, KeyError):
            stored = next((t for t in self._ot_study.get_trials(deepcopy=False)
                           if t.number == ot_trial.number), None)
        return stored is not None and stored.state.is_finished()

    def _already_reported(self, trial_id: str, result: dict) -> bool:
        """Whether Optuna holds this step of the trial already.

        A trial resumed from its checkpoint repeats the epochs it ran after that checkpoint,
        with the same ``training_iteration``; Optuna would warn "step already reported" for
        each and keep the first value. The first value stands either way (it is what the
        pruner saw), so the repeat is not sent. Optuna exposes a trial's reported steps
        only through its cached frozen trial, hence the guarded private read.
        """
        ot_trial = getattr(self, "_ot_trials", {}).get(trial_id)
        cached = getattr(ot_trial, "_cached_frozen_trial", None)
        return cached is not None and result.get("training_iteration") in cached.intermediate_values


def build_searcher(cfg: ExperimentConfig, space: dict[str, Param], mode: str, exp_dir: Path) -> Any:
    """OptunaSearch over the space, its study in SQLite beside the results.

    With ``search.objectives`` the study has one direction per objective and OptunaSearch
    gets them as lists: it then ignores the per-epoch results and tells the study each
    trial's final result (every objective's value at the last epoch it reported). TPE
    handles several objectives itself (Optuna 4+: MOTPE, same settings), and so does random
    sampling; NSGA-II was not chosen: it samples at random until a whole generation (50
    trials by default) has finished, i.e. for the whole of a search of this size.
    Tune's own metric and mode (TuneConfig) stay the first objective's, for ASHA and
    the checkpoints: with the space given here Tune never hands them to the searcher.
    """
    storage = study_store.open_storage(cfg, exp_dir)
    objectives = cfg.search.objectives
    return ResumableOptunaSearch(
        space=functools.partial(sample, space=space),
        metric=list(objectives) if objectives else cfg.search.metric,
        mode=list(cfg.search.objective_modes()) if objectives else mode,
        points_to_evaluate=[dict(p) for p in cfg.search.points_to_evaluate] or None,
        sampler=build_sampler(cfg), study_name=cfg.search.name, storage=storage)


def build_sampler(cfg: ExperimentConfig) -> optuna.samplers.BaseSampler:
    """The search's Optuna sampler, seeded by the experiment (also what the peer benchmark,
    ``bench.peer``, drives outside Tune to show the same draws at 50 seeds)."""
    if cfg.search.algorithm == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # multivariate + group: TPE's recommended setting for conditional spaces.
            return optuna.samplers.TPESampler(
                seed=cfg.seed, n_startup_trials=cfg.search.resolved_startup_trials(),
                multivariate=True, group=True, constant_liar=True)
    if cfg.search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    raise ConfigError(f"search.algorithm {cfg.search.algorithm!r}: choose tpe or random")


def build_scheduler(cfg: ExperimentConfig, max_epochs: int) -> Any:
    if cfg.search.scheduler == "none":
        return FIFOScheduler()
    if cfg.search.scheduler != "asha":
        raise ConfigError(f"search.scheduler {cfg.search.scheduler!r}: choose asha or none")
    # "epoch" rather than training_iteration: a resumed trial continues its epoch count.
    # max_t is one past the last epoch: a trial that reaches its last epoch ends by itself
    # (fit() returns and Train releases its workers) instead of being killed by the scheduler.
    return ASHAScheduler(time_attr="epoch", max_t=max(max_epochs, 1) + 1,
                         grace_period=min(cfg.search.grace_period, max_epochs),
                         reduction_factor=cfg.search.reduction_factor)


def epoch_budget(space: dict[str, Param], cfg: ExperimentConfig) -> int:
    """The most epochs a trial can run: the space's largest ``epochs``, else ``optim.epochs``."""
    p = space.get("epochs")
    if p is None:
        return cfg.optim.epochs
    if p.fixed:
        return int(p.value)
    return int(max(p.choices) if p.choices is not None else p.high)


__all__ = ["ResumableOptunaSearch", "build_sampler", "build_scheduler", "build_searcher",
           "epoch_budget"]

"""Replay a recorded grid through the project's real search: only training is replaced.

:func:`build_replay_tuner` assembles the ``Tuner`` the way ``search.tune.tuner.build_tuner``
does, from the project's own parts: the space (``search.tune.space.space_for``: the
recording's discrete space, conditional parameters and all), the searcher
(``searcher.build_searcher``: OptunaSearch with the project's TPE or random sampler, its
seed and start-up trials, the study in SQLite beside the results), the scheduler
(``searcher.build_scheduler``: ASHA on ``epoch``, ``max_t`` one past the last epoch), the
metric and mode, ``reuse_actors`` and the trial folder names. The trainable is
:func:`replay_trial`: it looks up the sampled configuration's recorded curve and reports it
epoch by epoch with ``ray.tune.report``, on a virtual clock (the recorded cumulative time is
reported as ``virtual_time_s``; nothing sleeps), so ASHA stops it exactly where it would
have stopped the real trial.

The space is the recording's (each searched parameter a list of the grid's values), so a
sampled configuration is always a recorded one; :meth:`Curves.key` still maps a value that
is not on the grid (a continuous ``lr``, ``--lr-range``) to the nearest recorded one (in
log scale for ``lr``).

A search's budget is counted in epochs reported, over all trials (:class:`EpochBudget`
ends the experiment there). :class:`Ledger` keeps, in the driver, every report in the
order Tune received it: with one trial at a time that is the order of epochs spent.

The replay takes any :class:`Source` of curves: a recorded grid (:class:`Curves`) or a peer's
tabular benchmark (:class:`bench.replay.tables.TableSource`: HPOLib, NAS-Bench-201,
HPOBench, one value per configuration and its training time).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from bench.replay.record import read_recording

#: What a replayed trial reports to Tune: what the search needs, and the virtual clock.
VIRTUAL_TIME = "virtual_time_s"
#: The numeric grid keys whose nearest recorded value is taken in log scale.
LOG_KEYS = ("lr", "weight_decay")


class Source(Protocol):
    """What the replay needs of a table of results: a sampled configuration's grid point and
    curve, the experiment settings that make the search's space, and that space."""

    keys: tuple[str, ...]

    def key(self, config: Mapping[str, Any]) -> tuple[Any, ...]: ...

    def curve(self, config: Mapping[str, Any]) -> list[dict[str, Any]]: ...

    def settings(self, lr_range: bool = False) -> list[str]: ...

    def space(self, cfg: Any) -> dict[str, Any]: ...


def _norm(value: Any) -> Any:
    """A key cell as a plain Python value (``None`` for a parameter that does not apply)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return float(value) if isinstance(value, float) else value


@dataclass
class Curves:
    """A recording's curves by grid point: ``key`` (one value per key column, ``None``
    where a parameter does not apply) -> one dict per epoch (epoch, metrics, times)."""

    keys: tuple[str, ...]
    table: dict[tuple[Any, ...], list[dict[str, Any]]]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, keys: Sequence[str],
                   meta: Mapping[str, Any] | None = None) -> Curves:
        table: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        cols = [c for c in frame.columns if c not in keys]
        for values, group in frame.groupby(list(keys), dropna=False, sort=True):
            key = tuple(_norm(v) for v in (values if isinstance(values, tuple) else (values,)))
            rows = group.sort_values("epoch")[cols].to_dict("records")
            table[key] = [{k: _norm(v) for k, v in r.items()} for r in rows]
        return cls(tuple(keys), table, dict(meta or {}))

    @classmethod
    def load(cls, path: str | Path) -> Curves:
        frame, meta = read_recording(path)
        return cls.from_frame(frame, meta["keys"], meta)

    def __len__(self) -> int:
        return len(self.table)

    def values(self, key: str) -> list[Any]:
        """The recorded values of one key column (``None`` left out)."""
        i = self.keys.index(key)
        return sorted({k[i] for k in self.table if k[i] is not None})

    def key(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """The recorded grid point of a sampled configuration: exact where it is one, else
        each numeric key at the nearest value recorded with the same other keys."""
        wanted = tuple(_norm(config.get(k)) for k in self.keys)
        if wanted in self.table:
            return wanted
        best, dist = None, math.inf
        for key in self.table:
            d = 0.0
            for name, want, have in zip(self.keys, wanted, key):
                if want == have:
                    continue
                if isinstance(want, int | float) and isinstance(have, int | float) \
                        and not isinstance(want, bool):
                    if name in LOG_KEYS and want > 0 and have > 0:
                        d += abs(math.log(want) - math.log(have))
                    else:
                        d += abs(float(want) - float(have))
                else:
                    d = math.inf
                    break
            if d < dist:
                best, dist = key, d
        if best is None:
            raise KeyError(f"no recorded grid point matches {dict(zip(self.keys, wanted))}")
        return best

    def curve(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.table[self.key(config)]

    def settings(self, lr_range: bool = False) -> list[str]:
        """The experiment settings of a replayed search: the recording's space, input size
        and epochs; with ``lr_range`` the learning rate a log range (the project's kind),
        each value mapped to the nearest grid one."""
        from bench.replay.record import flow_yaml

        space = dict(self.meta["space"])
        if lr_range:
            lrs = self.values("lr")
            space["lr"] = {"low": float(min(lrs)), "high": float(max(lrs)), "log": True}
        pretrained = "true" if self.meta.get("pretrained") else "false"
        size = [] if "input_size" in space else [f"model.input_size={self.meta['size']}"]
        return [*size, f"model.pretrained={pretrained}",
                f"optim.epochs={self.meta['epochs']}", "search.space=" + flow_yaml(space)]

    def space(self, cfg: Any) -> dict[str, Any]:
        """The project's own space for the experiment (``search.tune.space.space_for``)."""
        from search.tune.space import space_for

        return space_for(cfg)

    def frame(self) -> pd.DataFrame:
        """Back to one row per grid point and epoch."""
        rows = [{**dict(zip(self.keys, k)), **r} for k, rows in self.table.items() for r in rows]
        return pd.DataFrame(rows)


def replay_trial(config: dict[str, Any], curves: Source, metric: str, extra: Sequence[str] = (),
                 history: bool = False, checkpoints: bool = False,
                 best_so_far: bool = False, weights_bytes: int = 0) -> None:
    """Tune function trainable: the recorded curve of ``config``, one report per epoch.

    Reports ``epoch``, ``metric`` and ``virtual_time_s`` (the recorded cumulative time), and
    the recorded ``extra`` keys. With ``history`` every recorded figure of the epoch goes to
    the trial's own history files first (:mod:`search.train.history`, what the project's
    tables read), as a real trial's loop does; with ``checkpoints`` each epoch reports a
    checkpoint folder holding only the checkpoint's ``config.json`` (the epoch and its
    metrics, what the tables choose a trial's best checkpoint by): no weights. With
    ``best_so_far`` the metric reported is the trial's best epoch so far (what ASHA's rungs
    and Optuna then compare: the figure a trial is finally chosen by) instead of the epoch's.
    """
    from ray import tune

    writer = _history_writer() if history else None
    best = None
    for row in curves.curve(config):
        value = row[metric]
        if best_so_far:  # mode max: the search metrics replayed here are AUCs
            best = value = value if best is None else max(best, value)
        report = {"epoch": int(row["epoch"]), metric: value,
                  VIRTUAL_TIME: row.get("time_total_s")}
        report.update({k: row[k] for k in extra if k in row})
        if writer is not None:
            from search.train.history import epoch_record

            writer.write(epoch_record({**row, **report}, time_total_s=row.get("time_total_s")))
        if checkpoints:
            _report_with_checkpoint(report, row, weights_bytes)
        else:
            tune.report(report)


def _report_with_checkpoint(report: dict[str, Any], row: Mapping[str, Any],
                            weights_bytes: int = 0) -> None:
    """One epoch's report with its checkpoint: config.json, and with ``weights_bytes``
    dummy weights of that size and optimiser state of twice it (AdamW's two moments), as
    a real checkpoint holds (issue 29's storage measurement)."""
    import json
    import tempfile

    from ray import tune

    from search.filenames import CONFIG

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, CONFIG).write_text(json.dumps(
            {"epoch": report["epoch"], "metrics": {**row, **report}}))
        if weights_bytes:
            from search.filenames import STATE, WEIGHTS

            Path(folder, WEIGHTS).write_bytes(bytes(weights_bytes))
            Path(folder, STATE).write_bytes(bytes(2 * weights_bytes))
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))


def _history_writer() -> Any:
    """The trial's own history folder on the storage path, as ``TuneRuntime.history``."""
    from ray.train._internal.session import get_session

    from search.filenames import TRIAL_HISTORY
    from search.train.history import HistoryWriter

    where = getattr(get_session(), "storage", None)
    if where is None:
        return None
    return HistoryWriter(where.storage_filesystem, f"{where.trial_fs_path}/{TRIAL_HISTORY}")


class EpochBudget:
    """Ends the experiment once ``budget`` epochs (reports) have been spent, all trials
    together (0: no budget). A ``ray.tune.Stopper`` (built lazily: ray is imported late)."""

    def __new__(cls, budget: int) -> Any:
        from ray import tune

        class _Budget(tune.Stopper):
            def __init__(self, budget: int) -> None:
                self.budget = int(budget)
                self.seen: set[tuple[str, Any]] = set()

            def __call__(self, trial_id: str, result: dict) -> bool:
                # Tune may hand the same epoch over twice (a function trainable's end comes
                # as one more result): an epoch counts once.
                self.seen.add((trial_id, result.get("epoch")))
                return False

            def stop_all(self) -> bool:
                return bool(self.budget) and len(self.seen) >= self.budget

        return _Budget(budget)


class Ledger:
    """A Tune callback that keeps every report as Tune receives it: (order, trial id, the
    trial's grid point, epoch, metric, virtual time)."""

    def __new__(cls, curves: Source, metric: str) -> Any:
        from ray.tune import Callback

        class _Ledger(Callback):
            def __init__(self) -> None:
                self.rows: list[tuple[Any, ...]] = []
                self.started: list[str] = []

            def on_trial_start(self, iteration, trials, trial, **info):
                self.started.append(trial.trial_id)

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.rows.append((len(self.rows), trial.trial_id, curves.key(trial.config),
                                  int(result["epoch"]), float(result[metric]),
                                  result.get(VIRTUAL_TIME)))

            def frame(self) -> pd.DataFrame:
                return pd.DataFrame(self.rows, columns=["order", "trial_id", "key", "epoch",
                                                        metric, VIRTUAL_TIME])

        return _Ledger()


def replay_config(curves: Source, overrides: Sequence[str] = (), *, storage: str | Path,
                  name: str, lr_range: bool = False) -> Any:
    """The experiment config of a replayed search: the source's settings (see
    :meth:`Curves.settings`), and the search settings in ``overrides``
    (``search.algorithm=tpe``, ...)."""
    from search.config import load_config

    return load_config(None, [
        *curves.settings(lr_range=lr_range), f"cluster.storage_path={Path(storage).resolve()}",
        f"search.name={name}", *overrides])


def build_replay_tuner(cfg: Any, curves: Source, *, budget: int = 0,
                       callbacks: Sequence[Any] = (), extra: Sequence[str] = (),
                       history: bool = False, checkpoints: bool = False, cpus: float = 0.05,
                       logs: bool = False, best_so_far: bool = False,
                       weights_bytes: int = 0) -> Any:
    """The project's Tuner (see the module doc) over :func:`replay_trial`.

    ``budget``: epochs after which the experiment ends (0: ``num_samples`` trials).
    ``history``, ``checkpoints``: see :func:`replay_trial` (checkpoints kept as the
    project keeps them: the best two by the metric and the latest). ``logs``: keep Tune's
    JSON/CSV/TensorBoard logger callbacks; off, only the JSON one is kept (see
    :func:`_loggers`). ``cpus``: each trial's reservation. Every objective of
    ``search.objectives`` is reported besides the metric (a Pareto search needs them all).
    """
    from ray import tune

    from search.filenames import EXPERIMENT, SPACE
    from search.storage import local_experiment_dir
    from search.tune import searcher
    from search.tune import tuner as project
    from search.tune.space import describe

    extra = tuple(dict.fromkeys([*extra, *cfg.search.objectives[1:]]))
    mode = cfg.search.resolved_mode()
    space = curves.space(cfg)
    exp_dir = local_experiment_dir(cfg)
    exp_dir.mkdir(parents=True, exist_ok=True)
    # What build_tuner writes first, so that the project's readers (report, export) take
    # the folder for a search's.
    (exp_dir / EXPERIMENT).write_text(json.dumps(cfg.to_dict(), indent=1))
    (exp_dir / SPACE).write_text(describe(space) + "\n")
    max_epochs = searcher.epoch_budget(space, cfg)
    trainable = tune.with_resources(
        tune.with_parameters(replay_trial, curves=curves, metric=cfg.search.metric,
                             extra=tuple(extra), history=history, checkpoints=checkpoints,
                             best_so_far=best_so_far, weights_bytes=weights_bytes),
        {"cpu": cpus})
    keep = project.checkpoint_config(cfg, mode, max_epochs) if checkpoints else None
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=cfg.search.metric, mode=mode, num_samples=cfg.search.num_samples,
            search_alg=searcher.build_searcher(cfg, space, mode, exp_dir),
            scheduler=searcher.build_scheduler(cfg, max_epochs),
            max_concurrent_trials=cfg.cluster.max_concurrent_trials or None,
            trial_dirname_creator=project._trial_dirname,
            reuse_actors=cfg.cluster.reuse_actors),
        run_config=tune.RunConfig(
            name=cfg.search.name, storage_path=str(Path(cfg.cluster.storage_path).resolve()),
            stop=EpochBudget(budget) if budget else None,
            callbacks=[*callbacks, *_loggers(logs)],
            failure_config=tune.FailureConfig(max_failures=0), checkpoint_config=keep,
            verbose=0))


def _loggers(logs: bool) -> list[Any]:
    """Tune's logger callbacks for a replay: its defaults, or with ``logs`` off only the JSON
    logger (each trial's ``result.json``, one line per report).

    Why not none: the ``ExperimentAnalysis`` that ``Tuner.fit`` returns reads every trial's
    ``result.json`` (else ``progress.csv``) when the run ends
    (``ray.tune.analysis.experiment_analysis._fetch_trial_dataframes``) and logs "Failed to
    fetch metrics ... FileNotFoundError" for each trial that has neither: a warning per trial
    of every replayed search, and an expected one. The JSON logger alone writes the file it
    reads and nothing else (no CSV, no TensorBoard events). Tune adds its default loggers
    when ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`` is not ``1``
    (``ray.tune.utils.callback._create_default_callbacks``), so it is set for the process,
    as before, when the loggers are off.
    """
    if logs:
        os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
        return []
    from ray.tune.logger import JsonLoggerCallback

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    return [JsonLoggerCallback()]


@dataclass
class Replayed:
    """One replayed search: its reports in the order Tune received them, and its wall."""

    reports: pd.DataFrame
    wall_s: float
    trials: int


def run_replay(curves: Source, overrides: Sequence[str], *, storage: str | Path, name: str,
               budget: int = 0, lr_range: bool = False, best_so_far: bool = False) -> Replayed:
    """One replayed search, one trial at a time, ``budget`` epochs; Ray must be running."""
    import time

    import optuna

    from search.train.driver import tune_signals_restored

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # As the project's search() does when not verbose: no banner of Tune's new output per
    # search ("Configuration for experiment ...", "View detailed results here").
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    cfg = replay_config(curves, ["cluster.max_concurrent_trials=1", *overrides],
                        storage=storage, name=name, lr_range=lr_range)
    ledger = Ledger(curves, cfg.search.metric)
    t0 = time.monotonic()
    with tune_signals_restored():  # Ctrl-C between the seeds of a comparison still works
        build_replay_tuner(cfg, curves, budget=budget, callbacks=[ledger],
                           best_so_far=best_so_far).fit()
    frame = ledger.frame()
    if budget:
        frame = frame[frame["order"] < budget]
    return Replayed(frame, time.monotonic() - t0, frame["trial_id"].nunique())


__all__ = ["Curves", "EpochBudget", "Ledger", "Replayed", "Source", "VIRTUAL_TIME",
           "build_replay_tuner", "replay_config", "replay_trial", "run_replay"]

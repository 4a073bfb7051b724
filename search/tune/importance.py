"""Parameter importances of a finished search (Optuna's fANOVA), overall and per architecture.

fANOVA only scores the parameters that every trial it is given has. In a conditional space
the layer settings exist for one architecture only, so over all trials they would never be
scored: they are scored again within each architecture's own trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution, IntDistribution

#: The key of the importances over every completed trial.
ALL = "all trials"
MIN_TRIALS = 3  # fewer completed trials of an architecture than this: no table for it


def param_importances(source: str | Path | Any, study_name: str, *, arch_param: str = "arch",
                      seed: int = 0) -> dict[str, dict[str, float]] | str:
    """``{ALL: {param: share}, arch: {param: share}, ...}`` from an Optuna study, or a
    sentence saying why there are none. Never raises: importances are a nicety.

    ``source``: an Optuna storage (:func:`search.tune.study_store.reader`), a study file
    (``optuna.db``, ``optuna.journal``) or a results folder; None when there is no study."""
    from search.tune import study_store

    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            return f"no {path.name} in the results folder"
        try:  # a damaged file is a sentence too, not a traceback in the report
            source = study_store.reader(path) if path.is_dir() else study_store.open_file(path)
        except Exception as err:
            return f"{path.name} cannot be read: {type(err).__name__}: {str(err)[:200]}"
    if source is None:
        return f"no {' or '.join(study_store.LOCAL_FILES[::-1])} in the results folder"
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=study_name, storage=source)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(done) < 2:
            return f"{len(done)} completed trial(s) in the study; importances need at least 2"
        out: dict[str, dict[str, float]] = {}
        overall = _fanova(done, study.direction, seed)
        if overall:
            out[ALL] = overall
        archs = sorted({t.params[arch_param] for t in done if arch_param in t.params})
        if len(archs) > 1:
            for arch in archs:
                mine = [t for t in done if t.params.get(arch_param) == arch]
                if len(mine) >= MIN_TRIALS:
                    scores = _fanova(mine, study.direction, seed)
                    if scores:
                        out[arch] = scores
        return out or "no parameter varied across the completed trials"
    except Exception as err:
        return f"{type(err).__name__}: {err}"


def _fanova(trials: list, direction: object, seed: int) -> dict[str, float]:
    """fANOVA over ``trials`` (parameters that did not vary among them are left out)."""
    varied = [name for name in sorted({n for t in trials for n in t.params})
              if all(name in t.params for t in trials)
              and len({repr(t.params[name]) for t in trials}) > 1]
    if not varied:
        return {}
    sub = optuna.create_study(direction=direction)
    sub.add_trials(_within_their_distributions(trials, varied))
    imp = optuna.importance.get_param_importances(
        sub, params=varied, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    return {k: float(v) for k, v in imp.items()}


def _within_their_distributions(trials: list, names: list[str]) -> list:
    """Copies of ``trials`` whose numeric distributions cover every value they hold.

    A seeded point may lie outside the searched range (``points_to_evaluate`` with a
    deliberately hopeless learning rate runs as given); Optuna refuses to add such a trial to
    another study, so each range is widened to the values the trials really took.
    """
    widened = {}
    for name in names:
        dist = trials[0].distributions[name]
        values = [t.params[name] for t in trials]
        if isinstance(dist, FloatDistribution | IntDistribution):
            low, high = min(dist.low, *values), max(dist.high, *values)
            kwargs = {"low": low, "high": high, "log": dist.log}
            if dist.step is not None and (low, high) == (dist.low, dist.high):
                kwargs["step"] = dist.step
            dist = type(dist)(**kwargs)
        widened[name] = dist
    return [optuna.trial.create_trial(
        params={n: t.params[n] for n in names}, distributions=widened, value=t.value,
        state=t.state) for t in trials]


__all__ = ["ALL", "param_importances"]

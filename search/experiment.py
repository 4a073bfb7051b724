"""An experiment around its search, apart from the command line: the embedded demo experiment
``run`` searches when given nothing, its shards checked before Ray starts, the saved
experiment a ``--resume`` continues (and the given settings compared with it), and what a
search's outcome says afterwards (trials with a result, why none had one, the command that
resumes it).

The ``run`` and ``train`` commands (:mod:`search.cli`) call these; they hold no argument
parsing. Imports inside the functions keep ``deepfake-search --help`` free of torch, Ray and
Optuna, as the commands' own do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.config import ExperimentConfig


def demo_experiment(cfg: ExperimentConfig) -> ExperimentConfig:
    """The embedded default: a small search on the demo set that ends in minutes on a laptop.

    The custom CNN against a small ResNet (timm's resnet10t, the light end of the study's
    ResNet family), the study's two ratios and a wide learning-rate range: enough for the
    leaderboard to separate good configurations from bad ones on 2 CPU cores.
    """
    from search.config import config_from_dict
    from search.data.demo import DEMO_SIZE

    tree = cfg.to_dict()
    tree["model"].update({"input_size": DEMO_SIZE})  # train at the size the demo is made
    tree["optim"].update({"epochs": 3, "batch_size": 64})
    # Two CPUs (so two torch threads) for training and one for the data tasks: measured
    # fastest on a 2-core machine (results/bench/demo_wall.md: 52 s against 60 s with one).
    tree["cluster"].update({"data_cpus": 1, "cpus_per_worker": 2.0})
    tree["search"].update({
        "name": "demo", "num_samples": 5, "grace_period": 1, "reduction_factor": 2,
        "export": True,
        "space": {"arch": ["custom_cnn", "resnet10t"], "ratio": ["1:1", "1:2"], "batch_size": 64,
                  "lr": {"low": 1e-4, "high": 3e-2, "log": True}, "frozen_stages": 0,
                  "conv_blocks": {"low": 2, "high": 4}, "dense_units": [64, 128]},
        # One sound start per architecture, so the leaderboard always compares both.
        "points_to_evaluate": [{"arch": "custom_cnn", "lr": 1e-3, "ratio": "1:2"},
                               {"arch": "resnet10t", "lr": 3e-3, "ratio": "1:2"}],
    })
    return config_from_dict(tree)


def check_shards(cfg: ExperimentConfig, splits: Sequence[str] = ("train", "val")) -> None:
    """A missing, truncated or changed shard, or a needed split with no image, is an error
    now, naming it, not inside Ray."""
    from search.data.prepare import verify_shards
    from search.data.sets import PreparedSet
    from search.train.driver import resolve_shards

    where = resolve_shards(cfg)
    PreparedSet(where, verify_shards(where)).check_splits(splits)


def saved_experiment(cfg: ExperimentConfig) -> ExperimentConfig:
    """The configuration an interrupted experiment was started with."""
    import json

    from search import storage
    from search.config import ConfigError, config_from_dict
    from search.filenames import EXPERIMENT as CONFIG_FILE

    path = storage.join(storage.experiment_dir(cfg), CONFIG_FILE)
    if not storage.exists(path):
        raise ConfigError(f"nothing to resume: {path} not found (check --name and storage_path)")
    return config_from_dict(json.loads(storage.read_text(path)))



def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    """``{"optim.lr": 0.001, ...}``: a config tree's settings by their dotted keys."""
    return {f"{section}.{key}" if isinstance(values, dict) else section: value
            for section, values in tree.items()
            for key, value in (values.items() if isinstance(values, dict) else [(None, values)])}


def _same_setting(key: str, given: Any, saved: Any) -> bool:
    """Whether a given setting equals the saved one: folders compared where they resolve
    (the saved config records them relative to the project), and ``cluster.use_gpu`` left
    at None (decide from the cluster) matching what the search decided."""
    from search import storage
    from search.paths import default_shards_dir, resolve_user_path

    def where(path: Any) -> Any:
        if not isinstance(path, str) or not path or storage.is_uri(path):
            return path
        return resolve_user_path(path)

    if key == "cluster.use_gpu" and given is None:
        return True
    if key == "data.shards":  # "" is the embedded demo set, made where the search made it
        demo = str(default_shards_dir("demo"))
        return where(given or demo) == where(saved or demo)
    if key == "cluster.storage_path":
        return where(given) == where(saved)
    if key == "data.extra_sources" and isinstance(given, dict) and isinstance(saved, dict):
        return given.keys() == saved.keys() and all(where(given[k]) == where(saved[k])
                                                    for k in given)
    return given == saved


def check_resume_settings(given: ExperimentConfig, saved: ExperimentConfig) -> None:
    """``run --resume`` with a config, overrides, --data or --num-samples: each must equal
    what the experiment was started with, or a ConfigError naming every key that differs.
    Tune's restore continues the saved search (its space, trial count, budget): it cannot
    apply a change, which would otherwise be dropped without a word."""
    from search.config import ConfigError, short_repr

    mine, theirs = _flat(given.to_dict()), _flat(saved.to_dict())
    differ = [f"{key} (saved {short_repr(theirs.get(key))}, given {short_repr(mine.get(key))})"
              for key in sorted(set(mine) | set(theirs))
              if not _same_setting(key, mine.get(key), theirs.get(key))]
    if differ:
        raise ConfigError(
            f"--resume continues experiment {saved.search.name!r} with the settings it was "
            f"started with, and the given ones differ: {'; '.join(differ)}. Tune's restore "
            "cannot change a search's space, trials or budget: drop those changes (or run "
            "--resume with only --name to continue as saved), or start a new experiment "
            "with --name NEW")


def trials_with_results(trials: Any) -> int:
    """How many trials produced a result: not failed, with a checkpoint (what the leaderboard,
    the test evaluation and export can use)."""
    if trials is None or not len(trials) or "status" not in trials:
        return 0
    ok = trials["status"] != "ERROR"
    if "checkpoint" in trials:
        ok &= trials["checkpoint"].fillna("").astype(bool)
    return int(ok.sum())


def no_result_message(outcome: Any) -> str:
    """Why a search that ran produced nothing, and where each trial's error is."""
    from pathlib import Path

    trials = outcome.trials
    n = len(trials) if trials is not None else 0
    where = outcome.remote or outcome.experiment_dir
    files = sorted(Path(outcome.experiment_dir).glob("*/error.txt"))
    shown = ", ".join(str(f) for f in files[:3]) + (f" and {len(files) - 3} more"
                                                     if len(files) > 3 else "")
    first = ""
    if n and "error" in trials:
        errors = [e for e in trials["error"].dropna().astype(str) if e]
        first = f"; the first says: {errors[0]}" if errors else ""
    return (f"no trial finished: {n} trial(s) ran and none produced a result (see "
            f"Trials above){first}. Each failed trial's traceback is in its error.txt: "
            f"{shown or f'{where}/trial_*/error.txt'}")


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues an interrupted ``run``: the same arguments plus --resume."""
    import shlex

    args = [a for a in argv if a != "--resume"]
    if args and args[0] == "run":
        args = args[1:]
    return shlex.join(["deepfake-search", "run", *args, "--resume"])


__all__ = ["check_resume_settings", "check_shards", "demo_experiment", "no_result_message",
           "resume_command", "saved_experiment", "trials_with_results"]

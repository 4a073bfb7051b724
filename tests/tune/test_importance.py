"""Parameter importances: overall, and per architecture for the conditional layer settings."""

from __future__ import annotations

import optuna
import pytest

from search.tune.importance import ALL, param_importances


def test_conditional_parameters_are_scored_within_their_architecture(tmp_path):
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        arch = trial.suggest_categorical("arch", ["custom_cnn", "resnet50"])
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        if arch == "custom_cnn":  # only here does conv_blocks exist, and it drives the result
            return trial.suggest_int("conv_blocks", 2, 5) / 5 + 0.01 * lr
        return 0.5 + trial.suggest_int("frozen_stages", 0, 4) * 1e-3 + 0.01 * lr

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=24)
    imp = param_importances(db, "s")
    assert isinstance(imp, dict), imp
    assert set(imp[ALL]) == {"arch", "lr"}  # the only parameters every trial has
    assert "conv_blocks" in imp["custom_cnn"] and "frozen_stages" in imp["resnet50"]
    assert max(imp["custom_cnn"], key=imp["custom_cnn"].get) == "conv_blocks"
    for scores in imp.values():
        assert abs(sum(scores.values()) - 1.0) < 1e-6


def test_too_few_trials_say_why(tmp_path):
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    study.optimize(lambda t: t.suggest_float("lr", 0, 1), n_trials=1)
    assert "1 completed trial" in param_importances(db, "s")


def test_a_seeded_point_outside_the_range_is_still_scored(tmp_path):
    """points_to_evaluate may hold a value outside the space (lr 1e-7): it counts."""
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial({"lr": 1e-7, "arch": "custom_cnn"})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with pytest.warns(UserWarning, match="out of range"):
        study.optimize(lambda t: (t.suggest_categorical("arch", ["custom_cnn", "resnet50"]) == "resnet50")
                       + t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=8)
    assert study.trials[0].params["lr"] == 1e-7
    imp = param_importances(db, "s")
    assert isinstance(imp, dict) and set(imp[ALL]) == {"arch", "lr"}, imp

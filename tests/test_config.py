"""Configuration: strict YAML keys, overrides, trial parameters, printable and saved."""

from __future__ import annotations

import json

import pytest

from search.cli import main as cli
from search.config import ConfigError, ExperimentConfig, load_config, parse_ratio


def test_defaults_are_the_studys():
    cfg = ExperimentConfig()
    assert cfg.model.input_size == 224 and cfg.data.ratio == "1:2"
    assert cfg.search.metric == "val_auc" and cfg.search.resolved_mode() == "max"
    assert "arch: custom_cnn" in str(cfg)  # printable as YAML


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  arch: resnet50\n  frozen_stages: 2\noptim:\n  lr: 3.0e-4\n")
    cfg = load_config(path, ["optim.epochs=3", "data.ratio=1:1", "seed=5"])
    assert (cfg.model.arch, cfg.model.frozen_stages, cfg.optim.lr) == ("resnet50", 2, 3e-4)
    assert (cfg.optim.epochs, cfg.data.ratio, cfg.seed) == (3, "1:1", 5)
    assert load_config(None, []).to_dict() == ExperimentConfig().to_dict()
    assert json.loads(json.dumps(cfg.to_dict()))["model"]["arch"] == "resnet50"


@pytest.mark.parametrize("text, message", [
    ("optim:\n  learning_rate: 0.1\n", "unknown key 'learning_rate'"),
    ("optimizer:\n  lr: 0.1\n", "unknown section 'optimizer'.*'optim'"),
    ("model:\n  arch: resnet50\n  frozen_stage: 1\n", "Did you mean 'frozen_stages'"),
    ("optim:\n  epochs: 2.5\n", "optim.epochs must be a whole number"),
    ("- a\n- b\n", "must hold a mapping"),
])
def test_typos_are_errors_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_trial_params_land_in_their_sections():
    cfg = ExperimentConfig().with_params({"arch": "xception", "lr": 0.01, "ratio": "1:1",
                                          "head_dropout": 0.2, "batch_size": 32})
    assert cfg.model.arch == "xception" and cfg.model.head_dropout == 0.2
    assert cfg.optim.lr == 0.01 and cfg.optim.batch_size == 32 and cfg.data.ratio == "1:1"
    with pytest.raises(ConfigError, match="unknown parameter 'lr_rate'"):
        ExperimentConfig().with_params({"lr_rate": 1})


def test_metric_mode_inference():
    assert load_config(None, ["search.metric=val_eer"]).search.resolved_mode() == "min"
    assert load_config(None, ["search.metric=val_log_loss"]).search.resolved_mode() == "min"
    assert load_config(None, ["search.metric=val_f1"]).search.resolved_mode() == "max"


def test_ratio_parsing():
    assert parse_ratio("1:2") == (1.0, 2.0) and parse_ratio("natural") is None
    with pytest.raises(ConfigError):
        parse_ratio("0:1")


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("search:\n  nmae: x\n")
    assert cli(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'nmae'" in err and "Traceback" not in err


@pytest.mark.parametrize("override, message", [
    ("optim.lr=0", "optim.lr must be greater than 0"),
    ("optim.lr=-0.1", "optim.lr must be greater than 0"),
    ("data.ratio=0:1", "data.ratio must be 'natural' or REAL:FAKE"),
    ("data.ratio=abc", "data.ratio must be 'natural' or REAL:FAKE"),
    ("optim.batch_size=0", "optim.batch_size must be at least 1"),
    ("cluster.use_gpu='False'", "cluster.use_gpu must be true or false or null.*drop the quotes"),
    ("data.hflip='no'", "data.hflip must be true or false"),
    ("search.num_samples=-1", "search.num_samples must be at least 1"),
    ("optim.epochs=ten", "optim.epochs must be a whole number, not 'ten'"),
    ("search.mode=maximum", "search.mode must be one of '', 'max', 'min'.*Did you mean 'max'"),
    ("search.algorithm=bayes", "search.algorithm must be one of 'tpe', 'random'"),
    ("search.scheduler=hyperband", "search.scheduler must be one of 'asha', 'none'"),
    ("search.reduction_factor=1", "search.reduction_factor must be at least 2"),
    ("optim.optimizer=adam", "Did you mean 'adamw'"),
    ("data.jpeg_prob=1.5", "data.jpeg_prob must be between 0 and 1"),
    ("search.name=../elsewhere", "search.name must be a folder name"),
    ("seed=abc", "seed must be a whole number"),
])
def test_bad_values_fail_when_the_config_is_built(override, message):
    """Every value is checked as the config is built (before any cluster), naming its key
    and how to set it."""
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, [override])
    assert "=VALUE" in str(err.value)  # the fix: where the key is set


def test_replace_and_trial_params_are_validated_too():
    from dataclasses import replace

    from search.config import OptimConfig

    with pytest.raises(ConfigError, match="optim.lr"):
        replace(OptimConfig(), lr=-1.0)
    with pytest.raises(ConfigError, match="optim.batch_size"):
        ExperimentConfig().with_params({"batch_size": 0})
    assert OptimConfig(lr=1).lr == 1  # an int is a fine float


def test_search_settings_fail_before_ray_starts(tmp_path, capsys, monkeypatch):
    """A misspelt scheduler used to fail only after ray.init (reduction_factor 1 with an
    AssertionError); now the command stops at the config."""
    import search.tune.tuner as tuner

    started = []
    monkeypatch.setattr(tuner, "init_ray", lambda *a, **k: started.append(1))
    assert cli(["run", "search.scheduler=ashaa", "search.reduction_factor=1"]) == 2
    err = capsys.readouterr().err
    assert "search.scheduler must be one of" in err and "Traceback" not in err
    assert not started  # whether or not another test's cluster runs in this process


def test_package_exports_resolve_lazily():
    """``import search`` is cheap; every name in ``search.__all__`` resolves on first use."""
    import subprocess
    import sys

    code = ("import sys, search, search.data, search.train, search.tune; "
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules; "
            "[getattr(m, n) for m in (search, search.data, search.train, search.tune) "
            "for n in m.__all__]; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_relative_paths_fall_back_to_the_project(tmp_path, monkeypatch):
    """``ray submit`` runs from the head node's home: --config examples/... and
    data.shards: datasets/... still name the project's files."""
    from search.paths import project_root, resolve_user_path

    monkeypatch.chdir(tmp_path)
    assert resolve_user_path("examples/tiny.yaml") == project_root() / "examples" / "tiny.yaml"
    assert load_config("examples/tiny.yaml").search.name == "tiny"
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "tiny.yaml").write_text("search:\n  name: mine\n")
    assert load_config("examples/tiny.yaml").search.name == "mine"  # the current folder wins
    assert resolve_user_path("nowhere/x.yaml") == tmp_path / "nowhere" / "x.yaml"

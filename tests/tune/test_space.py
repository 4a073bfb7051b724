"""The search space on its own (search/tune/space.py): what it searches, what it fixes and
why, define-by-run sampling, seeded points, and experiment values it would replace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from search.config import ConfigError, load_config
from search.tune.space import (
    DEFAULT_SPACE,
    build_space,
    check_experiment,
    check_points,
    describe,
    sample,
    space_for,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMM_ARCHS = ("resnet50", "resnext50_32x4d", "resnext101_32x8d", "xception")


def draws(space: dict, n: int = 40, seed: int = 0) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` random define-by-run draws: (the trial's searched params, the constants)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = sample(trial, space)
        out.append((dict(trial.params), constants))
        study.tell(trial, 0.5)
    return out


def trial_values(params: dict[str, Any], constants: dict[str, Any]) -> dict[str, Any]:
    return {**params, **constants}


# ------------------------------------------------------------------ the default space
def test_default_space_is_the_studys():
    assert set(DEFAULT_SPACE["arch"].choices) == {"custom_cnn", *TIMM_ARCHS}
    assert set(DEFAULT_SPACE["ratio"].choices) == {"1:1", "1:2"}
    assert DEFAULT_SPACE["lr"].log


def test_define_by_run_is_conditional_and_respects_overrides():
    space = build_space({"arch": ["custom_cnn", "resnet50"], "ratio": "1:2",
                         "conv_blocks": {"low": 2, "high": 3}, "lr": {"low": 1e-4, "high": 1e-2, "log": True}},
                        pretrained=True)
    seen = set()
    for params, constants in draws(space, 30):
        arch = params["arch"]
        seen.add(arch)
        assert constants["ratio"] == "1:2"  # fixed values come back as constants
        if arch == "custom_cnn":
            assert 2 <= params["conv_blocks"] <= 3
            assert isinstance(params["conv_blocks"], int)
            assert "frozen_stages" not in params
        else:
            assert "conv_blocks" not in params and "frozen_stages" in params
        assert 1e-4 <= params["lr"] <= 1e-2
    assert seen == {"custom_cnn", "resnet50"}


@pytest.mark.parametrize("space, message", [
    ({"wieght_decay": {"low": 1, "high": 2}}, "unknown parameter 'wieght_decay'.*Did you mean 'weight_decay'"),
    ({"lr": {"low": 1e-3, "hihg": 1e-2}}, "unknown key 'hihg'.*'high'"),
    ({"arch": ["resnet5"]}, "resnet50"),
    ({"lr": {"low": 1e-2, "high": 1e-3}}, "above high"),
])
def test_space_typos_are_errors(space, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        build_space(space)


# ------------------------------------------------------------------ freezing needs weights
@pytest.mark.parametrize("pretrained", [False, None, "", "  "])
def test_without_weights_frozen_stages_is_fixed_at_zero(pretrained):
    """Random init: no trial is spent on freezing random stages (the measured waste: 3 of
    TPE's first 6 trials), yet every timm trial still sets frozen_stages=0 explicitly."""
    space = build_space(None, pretrained=pretrained)
    assert space["frozen_stages"].fixed and space["frozen_stages"].value == 0
    assert "pretrained" not in space
    timm_trials = 0
    for params, constants in draws(space, 60):
        assert "frozen_stages" not in params  # never searched
        if params["arch"] != "custom_cnn":
            timm_trials += 1
            assert constants["frozen_stages"] == 0
        else:
            assert "frozen_stages" not in constants  # custom_cnn has no stages
    assert timm_trials > 10
    assert "random init" in describe(space)


@pytest.mark.parametrize("pretrained", [True, "/weights/resnet50.safetensors"])
def test_with_weights_frozen_stages_is_searched(pretrained):
    space = build_space(None, pretrained=pretrained)
    frozen = space["frozen_stages"]
    assert (frozen.low, frozen.high, frozen.integer) == (0, 4, True)
    values = {params["frozen_stages"] for params, _ in draws(space, 60)
              if params["arch"] != "custom_cnn"}
    assert len(values) > 1 and values <= set(range(5))


@pytest.mark.parametrize("spec", [{"low": 0, "high": 4}, [0, 2], 2])
def test_searching_frozen_stages_without_weights_is_an_error(spec):
    with pytest.raises(ConfigError, match="frozen_stages.*randomly initialised.*model.pretrained"):
        build_space({"frozen_stages": spec})
    build_space({"frozen_stages": spec}, pretrained=True)  # fine with weights
    assert build_space({"frozen_stages": 0})["frozen_stages"].value == 0  # and 0 is always fine


def test_custom_cnn_trials_train_from_scratch_and_weight_files_name_the_arch():
    """custom_cnn has no pretrained weights (its builder refuses any): its trials get
    pretrained=False; a timm trial gets the experiment's file with {arch} filled in."""
    from search.model.registry import create_model

    space = build_space(None, pretrained="/weights/{arch}.safetensors")
    # not a parameter of its own: the trials table (one column per space key) would mix
    # False and paths in one column, which Parquet refuses
    assert "pretrained" not in space
    assert "custom_cnn: from scratch" in describe(space)
    seen = set()
    for params, constants in draws(space, 60):
        arch = params["arch"]
        seen.add(arch)
        if arch == "custom_cnn":
            assert constants["pretrained"] is False
            create_model(arch, input_size=32, pretrained=constants["pretrained"])
        else:
            assert constants["pretrained"] == f"/weights/{arch}.safetensors"
    assert seen == set(DEFAULT_SPACE["arch"].choices)
    hub = {c.get("pretrained") for p, c in draws(build_space(None, pretrained=True), 30)
           if p["arch"] != "custom_cnn"}
    assert hub == {True}
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("custom_cnn", input_size=32, pretrained=True)  # why it must be False


def test_pretrained_is_set_on_the_model_not_searched():
    with pytest.raises(ConfigError, match="set model.pretrained instead"):
        build_space({"pretrained": [True, False]})


# ------------------------------------------------------------------ what else is searched
def test_batch_size_is_the_experiments_not_searched():
    """The issue's case: study.yaml says batch_size 64 and the space used to try 32 too."""
    assert "batch_size" not in DEFAULT_SPACE
    cfg = load_config(None, ["optim.batch_size=48"])
    space = space_for(cfg)
    for params, constants in draws(space, 10):
        assert cfg.with_params(trial_values(params, constants)).optim.batch_size == 48
    # searching it stays possible, on request
    assert build_space({"batch_size": [32, 64]})["batch_size"].choices == (32, 64)


@pytest.mark.parametrize("size, deepest", [(224, 5), (48, 5), (32, 5), (16, 4), (8, 3)])
def test_conv_blocks_only_as_deep_as_the_input_allows(size, deepest):
    """Each custom_cnn block halves the image: the default range is cut where the model
    would fail to build, and the bound is exactly the model's own."""
    from search.model.registry import create_model

    space = build_space(None, input_size=size)
    assert space["conv_blocks"].high == deepest and space["conv_blocks"].low == 2
    create_model("custom_cnn", input_size=size, conv_blocks=deepest, base_width=4)
    if deepest < 5:
        assert "at most" in space["conv_blocks"].note
        with pytest.raises(ValueError, match="too small"):
            create_model("custom_cnn", input_size=size, conv_blocks=deepest + 1, base_width=4)
    for params, _ in draws(space, 40):
        assert params.get("conv_blocks", 2) <= deepest


@pytest.mark.parametrize("spec", [{"low": 2, "high": 5}, [3, 5], 5])
def test_conv_blocks_asked_for_beyond_the_input_is_an_error(spec):
    with pytest.raises(ConfigError, match="conv_blocks.*input_size 16.*at most 4 blocks"):
        build_space({"conv_blocks": spec}, input_size=16)
    build_space({"conv_blocks": spec}, input_size=32)


def test_conv_blocks_bound_follows_a_searched_input_size_and_skips_timm_only_spaces():
    space = build_space({"input_size": [16, 64]}, input_size=224)
    assert space["conv_blocks"].high == 4  # the smallest input a trial can get
    build_space({"arch": "resnet50", "conv_blocks": 6}, input_size=16)  # no custom_cnn trial


# ------------------------------------------------------------------ seeded points
SEEDED = {"arch": ["custom_cnn", "resnet50"], "ratio": ["1:1", "1:2"], "batch_size": 64,
          "lr": {"low": 1e-4, "high": 1e-2, "log": True}}


@pytest.mark.parametrize("point, message", [
    ({"arch": "custom_cnn", "learning_rate": 1e-3}, r"points_to_evaluate\[0\]: 'learning_rate'.*not a parameter"),
    ({"arch": "xception"}, r"arch='xception' is not among the choices"),
    ({"arch": "custom_cnn", "ratio": "2:1"}, "not among the choices"),
    ({"arch": "resnet50", "conv_blocks": 3}, "'conv_blocks' does not apply to arch 'resnet50'"),
    ({"arch": "custom_cnn", "batch_size": 32}, "the space fixes it at 64"),
    ({"arch": "custom_cnn", "lr": "fast"}, "must be a number"),
])
def test_points_to_evaluate_are_checked_against_the_space(point, message):
    with pytest.raises(ConfigError, match=message):
        check_points([point], build_space(SEEDED))


def test_points_outside_a_range_run_with_a_warning():
    space = build_space(SEEDED, pretrained=True)
    check_points([{"arch": "resnet50", "lr": 3e-4, "frozen_stages": 2, "ratio": "1:2"}], space)
    with pytest.warns(UserWarning, match=r"lr=1e-07 is outside \[0.0001, 0.01\]"):
        check_points([{"arch": "custom_cnn", "lr": 1e-7}], space)


def test_a_point_that_freezes_random_weights_is_refused():
    point = [{"arch": "resnet50", "frozen_stages": 2}]
    with pytest.raises(ConfigError, match="fixes it at 0"):
        check_points(point, build_space(SEEDED))
    check_points(point, build_space(SEEDED, pretrained="/w/{arch}.safetensors"))


# ------------------------------------------------------------------ experiment values
@pytest.mark.parametrize("overrides, message", [
    (["model.arch=resnet50"], r"model.arch: 'resnet50' is set, but the search space searches "
                              r"it in \[.*\].*search.space.arch: 'resnet50'"),
    (["data.ratio=1:1"], r"data.ratio: '1:1' is set.*searches it"),
    (["optim.lr=0.0003"], r"optim.lr: 0.0003 is set.*searches it in \[1e-05, 0.01\]"),
    (["model.frozen_stages=2"], r"model.frozen_stages: 2 is set.*fixes it at 0 \(random init"),
    (["optim.batch_size=32", "search.space={batch_size: 64}"], r"optim.batch_size: 32 .*fixes it at 64"),
])
def test_an_experiment_value_the_space_replaces_is_an_error(overrides, message):
    cfg = load_config(None, overrides)
    with pytest.raises(ConfigError, match=message):
        space_for(cfg)


@pytest.mark.parametrize("overrides", [
    ["model.arch=resnet50", "search.space={arch: resnet50}"],  # the fix the message names
    ["optim.batch_size=32"],  # not searched by default: every trial uses it
    ["optim.batch_size=64", "search.space={batch_size: 64}"],  # the same value in both
    ["model.conv_blocks=4", "search.space={arch: resnet50}"],  # no custom_cnn trial sets it
    ["model.frozen_stages=2", "model.pretrained=true", "search.space={frozen_stages: 2}"],
    ["model.pretrained=/w/{arch}.safetensors"],  # the space takes it from the experiment
    ["model.arch=custom_cnn"],  # the default cannot be told from unset: it passes
])
def test_experiment_values_the_space_keeps_pass(overrides):
    space_for(load_config(None, overrides))


def test_all_replaced_values_are_named_at_once():
    cfg = load_config(None, ["model.arch=resnet50", "data.ratio=1:1", "model.dropout=0.2"])
    with pytest.raises(ConfigError) as err:
        check_experiment(cfg, build_space(cfg.search.space))
    assert [line.split(":")[0] for line in str(err.value).splitlines()] == \
        ["model.arch", "data.ratio", "model.dropout"]


def test_run_search_refuses_a_replaced_value_before_starting_ray(demo_shards, tmp_path,
                                                                 monkeypatch):
    import ray

    from search.tune import tuner

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the search started Ray: the check came too late")

    monkeypatch.setattr(tuner, "init_ray", no_ray)  # a missed check fails fast, runs nothing
    from search.study import run_search
    started = ray.is_initialized()
    cfg = load_config(EXAMPLES / "tiny.yaml", [f"data.shards={demo_shards}",
                                               f"cluster.storage_path={tmp_path}",
                                               "model.arch=resnet50"])
    with pytest.raises(ConfigError, match="model.arch: 'resnet50' is set"):
        run_search(cfg)
    assert ray.is_initialized() == started
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ the example experiments
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_experiments_build_their_space_and_points_fit(name):
    cfg = load_config(EXAMPLES / name)
    space = space_for(cfg)
    check_points(cfg.search.points_to_evaluate, space)
    for params, constants in draws(space, 20):
        trial = cfg.with_params(trial_values(params, constants))
        assert trial.optim.batch_size == cfg.optim.batch_size or "batch_size" in cfg.search.space


def test_example_experiments_load_and_their_points_fit_their_spaces():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        cfg = load_config(path)
        check_points(cfg.search.points_to_evaluate, space_for(cfg))
    study = load_config(EXAMPLES / "study.yaml")
    assert {p["arch"] for p in study.search.points_to_evaluate} == set(DEFAULT_SPACE["arch"].choices)
    assert study.cluster.use_gpu is True and study.model.input_size == 224


def test_study_searches_freezing_only_with_its_weights():
    study = load_config(EXAMPLES / "study.yaml")
    assert {p["arch"] for p in study.search.points_to_evaluate} == set(DEFAULT_SPACE["arch"].choices)
    assert study.model.input_size == 224 and study.data.ratio in ("1:1", "1:2")
    assert not study.search.space.get("arch")  # the default: all five of the study's
    assert not space_for(study)["frozen_stages"].fixed
    for weights in ("false", "/weights/{arch}.safetensors"):
        cfg = load_config(EXAMPLES / "study.yaml", [f"model.pretrained={weights}"])
        check_points(cfg.search.points_to_evaluate, space_for(cfg))
    assert space_for(load_config(EXAMPLES / "study.yaml", ["model.pretrained=false"])
                     )["frozen_stages"].fixed


def test_study_cpu_is_sized_for_two_cores():
    """Light architectures only (the from-scratch custom CNN and the packaged, pretrained
    Lite0), one trial at a time on 2 threads, 128 px, the fine-tuning recipe searched."""
    cfg = load_config(EXAMPLES / "study-cpu.yaml")
    space = space_for(cfg)
    assert set(space["arch"].choices) == {"custom_cnn", "tf_efficientnet_lite0"}
    assert set(space["ratio"].choices) == {"1:1", "1:2"}
    assert cfg.model.input_size <= 128 and cfg.cluster.use_gpu is False
    assert cfg.model.pretrained is True and cfg.optim.warmup_steps > 0
    assert cfg.cluster.max_concurrent_trials == 1 and cfg.cluster.threads == 2
    assert not space["frozen_stages"].fixed and not space["backbone_lr_scale"].fixed
    assert not space["frozen_stages"].applies("custom_cnn")  # from scratch: nothing frozen
    assert {p["arch"] for p in cfg.search.points_to_evaluate} == {"custom_cnn",
                                                                  "tf_efficientnet_lite0"}

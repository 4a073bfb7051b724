"""The replay benchmark (bench/replay): a recorded grid replayed through the project's real
Tune + OptunaSearch + ASHA machinery, so the search has a regression test that takes seconds.

The grid here is made in the test (2 architectures x 2 ratios x 3 learning rates, the custom
CNN at 2 depths: 18 configurations x 4 epochs), with curves whose ranking changes over the
epochs, so ASHA's stopping decisions matter.
"""

from __future__ import annotations

import itertools
import math

import optuna
import pandas as pd
import pytest

from bench.replay.compare import per_seed, to_reach
from bench.replay.record import (
    extract,
    flow_yaml,
    grid_points,
    grid_space,
    keys_of,
    read_recording,
    write_recording,
)
from bench.replay.replay import Curves, Ledger, build_replay_tuner, replay_config, run_replay

EPOCHS = 4
ARCHS, RATIOS, LRS, BLOCKS = ("custom_cnn", "resnet10t"), ("1:1", "1:2"), (1e-4, 1e-3, 1e-2), (2, 3)


def _curve(arch: str, ratio: str, lr: float, blocks: int | None, epoch: int) -> float:
    """A made-up val AUC: best at lr 1e-3, the deeper CNN slow to start but best at the end,
    a dip at epoch 3 for the largest learning rate."""
    quality = 0.8 - 0.08 * abs(math.log10(lr) + 3) + (0.02 if ratio == "1:2" else 0.0)
    if arch == "resnet10t":
        quality -= 0.03
    speed = 0.5 if blocks == 3 else 1.0
    if blocks == 3:
        quality += 0.04
    dip = 0.05 if lr == 1e-2 and epoch == 3 else 0.0  # noisy: not every curve rises
    return round(0.5 + (quality - 0.5) * (1 - math.exp(-speed * epoch)) - dip, 6)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory):
    rows = []
    for p in grid_points(ARCHS, RATIOS, LRS, BLOCKS):
        for e in range(1, EPOCHS + 1):
            rows.append({**p, "conv_blocks": p.get("conv_blocks"), "epoch": e,
                         "val_auc": _curve(p["arch"], p["ratio"], p["lr"], p.get("conv_blocks"), e),
                         "epoch_time_s": 2.0, "time_total_s": 2.0 * e + 1.0})
    frame = pd.DataFrame(rows)
    frame["conv_blocks"] = frame["conv_blocks"].astype("Int64")
    space = grid_space(ARCHS, RATIOS, LRS, BLOCKS)
    path = tmp_path_factory.mktemp("replay") / "grid.parquet"
    write_recording(frame, path, {"space": space, "keys": keys_of(space), "epochs": EPOCHS,
                                  "size": 32, "images": 0})
    return path


def test_grid_points_follow_the_conditional_space():
    points = grid_points(ARCHS, RATIOS, LRS, BLOCKS)
    assert len(points) == 2 * 3 * 2 + 2 * 3  # conv_blocks only for the custom CNN
    assert all(("conv_blocks" in p) == (p["arch"] == "custom_cnn") for p in points)
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)


def test_flow_yaml_reads_back_equal():
    from search.config import yaml_load

    space = grid_space(ARCHS, RATIOS, (3e-5, 1e-4), BLOCKS)
    assert yaml_load(flow_yaml(space)) == space  # PyYAML alone reads 3e-05 as a string
    assert yaml_load(flow_yaml(grid_points(ARCHS, RATIOS, (3e-5,), BLOCKS)))[0]["lr"] == 3e-5


def test_curves_look_up_exact_and_nearest_points(recording):
    curves = Curves.load(recording)
    assert len(curves) == 18 and curves.keys == ("arch", "ratio", "lr", "conv_blocks")
    exact = {"arch": "resnet10t", "ratio": "1:1", "lr": 1e-3, "pretrained": False}
    assert curves.key(exact) == ("resnet10t", "1:1", 1e-3, None)
    # a continuous lr maps to the nearest recorded one, in log scale (3e-4 is nearer 1e-4
    # than 1e-3 there, though not in linear scale)
    assert curves.key({**exact, "lr": 2.5e-4})[2] == 1e-4
    assert curves.key({**exact, "lr": 4e-4})[2] == 1e-3
    assert [r["epoch"] for r in curves.curve(exact)] == [1, 2, 3, 4]
    with pytest.raises(KeyError):
        curves.key({"arch": "resnet50", "ratio": "1:1", "lr": 1e-3})


def test_extract_joins_trials_and_history(tmp_path):
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": ["COMPLETED", "COMPLETED"],
                           "arch": ["custom_cnn", "resnet10t"], "ratio": ["1:1", "1:2"],
                           "lr": [1e-3, 1e-2], "conv_blocks": [2.0, float("nan")]})
    history = pd.DataFrame({"trial_id": ["a", "a", "b"], "epoch": [1, 2, 1],
                            "val_auc": [0.6, 0.7, 0.55], "lr": [1e-3, 5e-4, 1e-2],
                            "epoch_time_s": [1.0, 1.0, 2.0], "time_total_s": [3.0, 4.0, 5.0],
                            "val_f1": [0.1, 0.2, 0.3]})
    trials.to_parquet(tmp_path / "trials.parquet")
    history.to_parquet(tmp_path / "history.parquet")
    out = extract(tmp_path, ["arch", "ratio", "lr", "conv_blocks"])
    assert list(out.columns[:5]) == ["arch", "ratio", "lr", "conv_blocks", "epoch"]
    assert out["lr"].tolist() == [1e-3, 1e-3, 1e-2]  # the trial's lr, not the schedule's
    assert out["conv_blocks"].isna().tolist() == [False, False, True]
    path = write_recording(out, tmp_path / "r.parquet", {"keys": ["arch"]})
    back, meta = read_recording(path)
    assert meta == {"keys": ["arch"]} and len(back) == 3


def test_epochs_to_reach_and_ratio():
    assert to_reach(pd.Series([0.5, 0.6, 0.7]).to_numpy(), 0.6) == 2
    assert to_reach(pd.Series([0.5]).to_numpy(), 0.6) == math.inf
    reports = pd.DataFrame({
        "method": ["random"] * 4 + ["TPE + ASHA"] * 4, "seed": [0] * 8,
        "order": [0, 1, 2, 3] * 2, "trial_id": ["a", "a", "b", "b", "c", "d", "d", "e"],
        "epoch": [1, 2, 1, 2, 1, 1, 2, 1], "val_auc": [0.5, 0.6, 0.55, 0.7, 0.7, 0.5, 0.5, 0.5],
        "wall_s": [1.0] * 8})
    table = per_seed(reports, budget=4).set_index("method")
    assert table.loc["random", "epochs"] == 4 and table.loc["TPE + ASHA", "epochs"] == 1
    assert table.loc["TPE + ASHA", "ratio"] == 0.25


def _study(cfg) -> optuna.Study:
    from search.storage import local_experiment_dir
    from search.tune import study_store

    return optuna.load_study(study_name=cfg.search.name,
                             storage=study_store.reader(local_experiment_dir(cfg)))


@pytest.mark.ray
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replay_through_tpe_and_asha_reports_the_recorded_curves(recording, ray_cluster,
                                                                  tmp_path, seed):
    """TPE + ASHA, one trial at a time: every trial's reports are its recorded curve (a
    prefix when ASHA stopped it), ASHA stops some, the study holds every trial."""
    curves = Curves.load(recording)
    n = 10
    cfg = replay_config(curves, ["search.algorithm=tpe", "search.scheduler=asha",
                                 "search.grace_period=1",  # a rung below the last epoch
                                 f"search.num_samples={n}", f"seed={seed}",
                                 "cluster.max_concurrent_trials=1"],
                        storage=tmp_path, name="replay")
    ledger = Ledger(curves, "val_auc")
    results = build_replay_tuner(cfg, curves, callbacks=[ledger]).fit()
    assert len(results) == n and not any(r.error for r in results)
    reports = ledger.frame()
    for _tid, got in reports.groupby("trial_id"):
        recorded = curves.table[got["key"].iloc[0]]
        assert got["epoch"].tolist() == list(range(1, len(got) + 1))
        assert got["val_auc"].tolist() == [r["val_auc"] for r in recorded[: len(got)]]
        assert got["virtual_time_s"].tolist() == [r["time_total_s"] for r in recorded[: len(got)]]
    epochs = reports.groupby("trial_id").size()
    assert (epochs < EPOCHS).any(), "ASHA stopped no trial"
    assert (epochs == EPOCHS).any(), "no trial reached the last epoch"
    study = _study(cfg)
    assert len(study.trials) == n
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # the values Optuna was told are each trial's last reported epoch
    last = reports.sort_values("order").groupby("trial_id")["val_auc"].last()
    assert sorted(t.value for t in study.trials) == sorted(last.tolist())


@pytest.mark.ray
def test_replay_budget_ends_the_search_and_random_repeats_its_draws(recording, ray_cluster,
                                                                   tmp_path):
    """The epoch budget ends an ASHA search; random search with the same seed draws the
    same configurations in the same order (what the paired comparison rests on)."""
    curves = Curves.load(recording)
    budget = 3 * EPOCHS
    out = run_replay(curves, ["search.algorithm=random", "search.scheduler=asha", "seed=5",
                              "search.num_samples=50"], storage=tmp_path / "a", name="a",
                     budget=budget)
    assert len(out.reports) == budget and out.trials < 50
    twice = [run_replay(curves, ["search.algorithm=random", "search.scheduler=none", "seed=5",
                                 "search.num_samples=3"], storage=tmp_path / d, name=d)
             for d in ("b", "c")]
    first, second = (list(dict.fromkeys(t.reports["key"])) for t in twice)
    assert first == second and len(first) <= 3
    assert len(twice[0].reports) == 3 * EPOCHS  # no scheduler: every trial to the end
    # the rung-metric lever: each trial reports its best epoch so far
    best = run_replay(curves, ["search.algorithm=random", "search.scheduler=none", "seed=5",
                               "search.num_samples=3", "search.points_to_evaluate=[{arch: "
                               "resnet10t, ratio: '1:1', lr: 1.0e-2}]"],
                      storage=tmp_path / "d", name="d", best_so_far=True)
    assert (best.reports["key"] == ("resnet10t", "1:1", 1e-2, None)).sum() >= EPOCHS
    for _tid, got in best.reports.groupby("trial_id"):
        recorded = pd.Series([r["val_auc"] for r in curves.table[got["key"].iloc[0]]])
        assert got["val_auc"].tolist() == recorded.cummax().tolist()


def test_space_is_the_recordings(recording, tmp_path):
    """The replayed search's space is the project's space_for over the recording's choices:
    conditional parameters stay conditional, the rest fixed."""
    from search.tune.space import space_for

    curves = Curves.load(recording)
    space = space_for(replay_config(curves, storage=tmp_path, name="x"))
    assert space["lr"].choices == LRS and space["arch"].choices == ARCHS
    assert space["conv_blocks"].choices == BLOCKS and space["conv_blocks"].when == "custom"
    assert space["dropout"].fixed and space["weight_decay"].fixed
    lr_range = space_for(replay_config(curves, storage=tmp_path, name="x", lr_range=True))["lr"]
    assert (lr_range.low, lr_range.high, lr_range.log) == (1e-4, 1e-2, True)
    assert list(itertools.chain(curves.values("lr"))) == list(LRS)


@pytest.mark.ray
def test_a_replayed_search_prints_no_expected_warning(recording, ray_cluster, tmp_path, capfd,
                                                      caplog):
    """The replay keeps only Tune's JSON logger: the ExperimentAnalysis that ``fit`` builds
    at the end reads each trial's result.json, and without it logged "Failed to fetch
    metrics ... FileNotFoundError" for every trial (12 lines a search of the comparison).
    Both what reaches the console and what reaches Python's logging are read (Ray's logger
    prints to stderr, or, once something has reset it, propagates to the root)."""
    import logging

    curves = Curves.load(recording)
    capfd.readouterr()
    with caplog.at_level(logging.WARNING):
        out = run_replay(curves, ["search.algorithm=tpe", "search.scheduler=asha", "seed=3",
                                  "search.num_samples=4"], storage=tmp_path, name="quiet")
    assert out.trials == 4
    printed = capfd.readouterr()
    text = printed.out + printed.err + "\n".join(r.getMessage() for r in caplog.records)
    assert "Failed to fetch metrics" not in text and "FileNotFoundError" not in text
    assert "WARNING" not in text.upper(), text
    assert "Configuration for experiment" not in text  # Tune's banner, as search() has it


def test_a_pretrained_grid_varies_frozen_stages_for_timm_only_and_size_for_all():
    """The fine-tuning grid (issue 27 item 3): frozen stages only where a timm family has
    pretrained weights to freeze, input sizes for every architecture; the space says the
    same, and a replay's settings keep the weights."""
    archs, lrs = ("custom_cnn", "tf_efficientnet_lite0"), (1e-4, 1e-3, 1e-2)
    points = grid_points(archs, ("1:1",), lrs, (3,), (1, 3), (32, 64))
    custom = [p for p in points if p["arch"] == "custom_cnn"]
    lite = [p for p in points if p["arch"] != "custom_cnn"]
    assert len(custom) == 3 * 2 and len(lite) == 3 * 2 * 2
    assert all("frozen_stages" not in p for p in custom)
    assert {p["frozen_stages"] for p in lite} == {1, 3}
    assert {p["input_size"] for p in points} == {32, 64}
    space = grid_space(archs, ("1:1",), lrs, (3,), (1, 3), (32, 64))
    assert space["frozen_stages"] == [1, 3] and space["input_size"] == [32, 64]
    assert set(keys_of(space)) == {"arch", "lr", "frozen_stages", "input_size"}
    curves = Curves(tuple(keys_of(space)), {},
                    {"space": space, "size": 64, "epochs": 2, "pretrained": True})
    assert "model.pretrained=true" in curves.settings()
    assert not any(s.startswith("model.input_size=") for s in curves.settings())


def test_a_recorded_command_names_scratch_folders_as_tmpdir():
    """What the bench writers record passes the results' portability check."""
    import tempfile

    from bench._common import scratch_free

    text = scratch_free(f"record --shards {tempfile.gettempdir()}/s --workdir /tmp/w --out results/x")
    assert text == "record --shards $TMPDIR/s --workdir $TMPDIR/w --out results/x"

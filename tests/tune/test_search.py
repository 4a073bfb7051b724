"""End-to-end search on a real local Ray cluster: tables, leaderboard, Optuna, TensorBoard,
resource release; and the checks made before a search starts (the space on its own:
test_space.py)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest

from search.config import ConfigError
from search.tune.space import DEFAULT_SPACE, build_space

METRICS = ("val_accuracy", "val_precision", "val_recall", "val_f1", "val_auc", "val_ap",
           "val_eer", "val_balanced_accuracy", "val_tp", "val_tn", "val_fp", "val_fn")


# ------------------------------------------------------------------ before a search starts
# (the space on its own: test_space.py)
def test_run_search_rejects_a_bad_point_before_starting_ray(demo_shards, tmp_path):
    import ray

    from search.tune.tuner import run_search

    started = ray.is_initialized()
    from search.config import load_config

    tiny = Path(__file__).resolve().parents[2] / "examples" / "tiny.yaml"
    cfg = load_config(tiny, [f"data.shards={demo_shards}", f"cluster.storage_path={tmp_path}",
                             "search.points_to_evaluate=[{arch: custom_cnn, lrr: 0.1}]"])
    with pytest.raises(ConfigError, match="'lrr' is not a parameter.*Did you mean 'lr'"):
        run_search(cfg)
    assert ray.is_initialized() == started


def test_trial_status_uses_the_trials_own_epoch_budget(tmp_path):
    """With ``epochs`` in the space, a trial that ran its own (smaller) budget is COMPLETED,
    one that ASHA cut short of it is STOPPED_EARLY."""
    from types import SimpleNamespace

    from search.tune import tables

    def result(tid, budget, ran):
        frame = pd.DataFrame({"epoch": range(1, ran + 1), "val_auc": [0.6] * ran,
                              "time_total_s": [float(e) for e in range(1, ran + 1)]})
        return SimpleNamespace(config={"epochs": budget, "arch": "custom_cnn"}, metrics={"trial_id": tid},
                               metrics_dataframe=frame, error=None, path=str(tmp_path / tid))

    trials, history = tables.collect(
        [result("a", 2, 2), result("b", 4, 2), result("c", 4, 4)], experiment_dir=tmp_path,
        metric="val_auc", mode="max", max_epochs=4, param_names=["arch", "epochs"])
    status = dict(zip(trials["trial_id"], trials["status"]))
    assert status == {"a": "COMPLETED", "b": "STOPPED_EARLY", "c": "COMPLETED"}
    assert len(history) == 8


def test_cluster_yaml_validates_with_rays_schema():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (Path(__file__).resolve().parents[2] / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    validate_config(prepare_config(config))
    assert config["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"].startswith("g")
    assert any("pip install" in c and "deepfake-search" in c for c in config["setup_commands"])
    bad = {**config, "head_node_typ": "head"}
    from jsonschema.exceptions import ValidationError

    with pytest.raises(ValidationError, match="head_node_typ"):
        validate_config(prepare_config(bad))


# ------------------------------------------------------------------ one real search
def _manifest_counts(experiment_dir: Path) -> dict:
    shards = Path(json.loads((experiment_dir / "experiment.json").read_text())["data"]["shards"])
    return json.loads((shards / "manifest.json").read_text())["counts"]


def test_tables(tiny_search):
    trials = pd.read_parquet(tiny_search / "trials.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert pd.read_csv(tiny_search / "trials.csv")["trial_id"].tolist() == trials["trial_id"].tolist()
    for col in ("trial_id", "status", "arch", "ratio", "lr", "epochs", "wall_time_s",
                *METRICS, *(f"best_{m}" for m in METRICS)):
        assert col in trials, col
    assert set(trials["arch"]) <= {"custom_cnn", "resnet10t"}
    assert set(trials["status"]) <= {"COMPLETED", "STOPPED_EARLY"}
    counts = _manifest_counts(tiny_search)
    for _, t in trials.iterrows():
        n = t.val_tp + t.val_tn + t.val_fp + t.val_fn
        assert n == sum(counts["val"].values())  # the whole validation split, never undersampled
        assert t.val_tp + t.val_fn == counts["val"]["FAKE"]
        assert t.val_accuracy == pytest.approx((t.val_tp + t.val_tn) / n)
        if t.val_tp + t.val_fp:
            assert t.val_precision == pytest.approx(t.val_tp / (t.val_tp + t.val_fp))
        assert t.val_recall == pytest.approx(t.val_tp / (t.val_tp + t.val_fn))
        for m in ("val_accuracy", "val_f1", "val_auc", "val_ap", "val_eer"):
            assert 0.0 <= t[m] <= 1.0
        assert 1 <= t.epochs <= 2 and Path(t.checkpoint).is_dir()
    history = pd.read_parquet(tiny_search / "history.parquet")
    assert set(history["trial_id"]) == set(trials["trial_id"])
    assert len(history) == trials["epochs"].sum()
    # the best epoch's metrics are the history's best
    best = history.groupby("trial_id")["val_auc"].max()
    for _, t in trials.iterrows():
        assert t.best_val_auc == pytest.approx(best[t.trial_id])


def test_leaderboard_and_test_split(tiny_search):
    board = (tiny_search / "leaderboard.md").read_text()
    trials = pd.read_parquet(tiny_search / "trials.parquet")
    for arch in set(trials["arch"]):
        assert f"| {arch} |" in board
    for word in ("accuracy", "precision", "recall", "f1", "auc", "eer", "baseline_accuracy",
                 "ratio", "lr", "validation", "test", "Parameter importances"):
        assert word in board
    # Real importances over all trials (lr always varies: the seeded points differ in it).
    importances = board.split("## Parameter importances")[1]
    assert "### all trials" in importances, importances
    assert re.search(r"\| lr \| [0-9][0-9.e+-]* \|", importances), importances
    test = json.loads((tiny_search / "test_metrics.json").read_text())
    finalists = trials.drop_duplicates("arch")
    assert set(test) == set(finalists["trial_id"])
    counts = _manifest_counts(tiny_search)
    for metrics in test.values():
        assert metrics["tp"] + metrics["fn"] == counts["test"]["FAKE"]
        assert metrics["tn"] + metrics["fp"] == counts["test"]["REAL"]


def test_optuna_study_persisted(tiny_search):
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_search / 'optuna.db'}")
    assert len(study.trials) == 4
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 and all(0 <= t.value <= 1 for t in done)
    assert all({"arch", "ratio", "lr"} <= set(t.params) for t in done)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_tensorboard_files_and_server(tiny_search):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted(p.parent for p in tiny_search.glob("trial_*/events.out.tfevents.*"))
    assert len(runs) == 4
    acc = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("ray/tune/val_auc", "ray/tune/val_f1", "ray/tune/train_loss", "ray/tune/val_eer"):
        assert tag in tags, tags
    assert [e.step for e in acc.Scalars("ray/tune/val_auc")][0] == 1
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins  # the HParams tab compares trials

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tiny_search),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        runs_seen: list = []
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as r:
                    runs_seen = json.loads(r.read())
                if len(runs_seen) >= 4:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert len([r for r in runs_seen if r.startswith("trial_")]) == 4, runs_seen
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=10) as r:
            tags = json.loads(r.read())
        assert all("ray/tune/val_auc" in tags[run] for run in runs_seen if run.startswith("trial_"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_resources_released_after_search(tiny_search, ray_cluster):
    trials = pd.read_parquet(tiny_search / "trials.parquet")
    total = ray_cluster.cluster_resources()["CPU"]
    deadline = time.time() + 60
    while time.time() < deadline and ray_cluster.available_resources().get("CPU", 0) < total:
        time.sleep(1)
    assert ray_cluster.available_resources().get("CPU", 0) == total
    # no reservation left behind (read from the GCS: the session's cluster has no dashboard)
    live = [pg for pg in ray_cluster.util.placement_group_table().values()
            if pg["state"] != "REMOVED"]
    assert not live, live
    # it was a search with early stopping on
    exp = json.loads((tiny_search / "experiment.json").read_text())
    assert exp["search"]["scheduler"] == "asha"
    assert (trials["status"] == "STOPPED_EARLY").any()


def test_example_experiments_load_and_their_points_fit_their_spaces():
    from search.config import load_config
    from search.tune.space import check_points

    examples = Path(__file__).resolve().parents[2] / "examples"
    for path in sorted(examples.glob("*.yaml")):
        cfg = load_config(path)
        check_points(cfg.search.points_to_evaluate, build_space(cfg.search.space))
    study = load_config(examples / "study.yaml")
    assert {p["arch"] for p in study.search.points_to_evaluate} == set(DEFAULT_SPACE["arch"].choices)
    assert study.cluster.use_gpu is True and study.model.input_size == 224


def test_a_stale_study_is_set_aside(tmp_path, capsys):
    from search.tune.tuner import OPTUNA_DB, _set_aside_stale_study

    assert _set_aside_stale_study(tmp_path) is None
    (tmp_path / OPTUNA_DB).write_bytes(b"old")
    moved = _set_aside_stale_study(tmp_path)
    assert moved is not None and moved.read_bytes() == b"old" and not (tmp_path / OPTUNA_DB).exists()
    assert "cannot be resumed" in capsys.readouterr().out

"""One configuration end to end on a real local Ray cluster, on real deepfake_faces images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.config import load_config
from search.evaluate import predict_shards
from search.filenames import CONFIG, WEIGHTS
from search.filenames import VAL_PREDICTIONS as PREDICTIONS
from search.model.checkpoint import load_checkpoint_model
from search.train.driver import train_one
from search.train.history import read_history
from search.train.metrics import detector_metrics
from search.train.worker import lr_factor


def _cfg(shards: Path, storage: Path, *extra: str):
    return load_config(None, [f"data.shards={shards}", f"cluster.storage_path={storage}",
                              "model.input_size=32", "model.conv_blocks=2", "model.base_width=8",
                              "model.dense_units=32", "optim.epochs=2", "optim.batch_size=32",
                              "optim.lr=0.003", "cluster.data_cpus=1", *extra])


def _check_consistent(result, shards: Path) -> pd.DataFrame:
    frame = result.metrics_dataframe
    assert frame["epoch"].tolist() == [1, 2]
    ckpt = Path(result.checkpoint.path)
    assert (ckpt / WEIGHTS).is_file() and (ckpt / CONFIG).is_file()
    preds = pd.read_csv(ckpt / PREDICTIONS)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert len(preds) == sum(manifest["counts"]["val"].values())  # every validation image
    assert preds["id"].is_unique
    recomputed = detector_metrics(preds["label"].to_numpy(), preds["p_fake"].to_numpy())
    last = frame.iloc[-1]
    for key in ("accuracy", "precision", "recall", "f1", "auc", "ap", "eer", "tp", "tn", "fp",
                "fn", "threshold", "baseline_accuracy", "specificity", "balanced_accuracy",
                "log_loss", "accuracy_at_threshold", "f1_at_threshold"):
        assert last[f"val_{key}"] == pytest.approx(recomputed[key], abs=1e-6), key
    return preds


def test_train_one_worker_metrics_and_reload(tmp_path, dff_shards, ray_cluster):
    result = train_one(_cfg(dff_shards, tmp_path), name="one")
    preds = _check_consistent(result, dff_shards)
    # the checkpoint reloads to the same outputs, through the same streamed preprocessing
    model, meta = load_checkpoint_model(result.checkpoint.path)
    again = predict_shards(model, meta, dff_shards, "val")
    merged = preds.merge(again, on="id", suffixes=("", "_reloaded"))
    assert len(merged) == len(preds)
    assert np.abs(merged["p_fake"] - merged["p_fake_reloaded"]).max() < 1e-5
    assert meta["experiment"]["model"]["arch"] == "custom_cnn" and meta["epoch"] == 2


def test_two_workers_ddp_on_cpu(tmp_path, dff_shards, demo_shards, ray_cluster):
    from search.evaluate import evaluate_checkpoint

    # With an extra source (the demo set), scored by both workers: each one scores its share
    # of the source's validation split and the figures are of the rows gathered from both.
    result = train_one(_cfg(dff_shards, tmp_path, "cluster.num_workers=2",
                            f"data.extra_sources={{demo: {demo_shards}}}"), name="ddp")
    _check_consistent(result, dff_shards)
    last = result.metrics_dataframe.iloc[-1]
    _, preds = evaluate_checkpoint(result.checkpoint.path, demo_shards, "val")
    manifest = json.loads((demo_shards / "manifest.json").read_text())
    assert len(preds) == sum(manifest["counts"]["val"].values())
    by_hand = detector_metrics(preds["label"].to_numpy(), preds["p_fake"].to_numpy())
    for key in ("auc", "ap", "eer", "balanced_accuracy"):
        assert last[f"val_{key}@demo"] == pytest.approx(by_hand[key], abs=1e-6), key
    assert last["val_auc@worst"] == pytest.approx(min(last["val_auc"], by_hand["auc"]))
    assert last["sources_epoch"] == 2
    # both workers trained: the epoch saw the whole undersampled train split, not half of it
    manifest = json.loads((dff_shards / "manifest.json").read_text())
    train = manifest["counts"]["train"]
    expected = train["REAL"] + min(train["FAKE"], 2 * train["REAL"])  # ratio 1:2
    assert abs(result.metrics_dataframe["train_images"].iloc[-1] - expected) <= 0.15 * expected
    # Rank 0 wrote every epoch to the trial's own history (search.train.history), in its
    # Train run's folder (<storage>/<name>/_train/trial_<id>), before Tune heard of it.
    records = read_history(tmp_path / "ddp", str(result.metrics["trial_id"]))
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["val_auc"] == pytest.approx(last["val_auc"])
    assert records[-1]["node_id"] == last["node_id"]


# The figures an epoch must reproduce across the two runtimes.
SAME_EPOCH = ("train_loss", "val_auc", "val_accuracy", "val_log_loss")
RUNTIME_TOLERANCE = 1e-6  # measured 0.0: the same batches, and one worker's all-reduce is the identity


def test_one_worker_trainer_matches_the_in_process_trial(tmp_path, demo_shards, ray_cluster):
    """A single-worker trial trains in Tune's own process; the same configuration in a
    one-worker ``TorchTrainer`` (DDP wrapper, Train's dataset split, its report path) must
    train on the same batches to the same numbers, epoch by epoch, within 1e-6."""
    from search.train.driver import build_trainer, resolve_data, resolve_runtime

    cfg = _cfg(demo_shards, tmp_path, "seed=11")
    in_process = train_one(cfg, name="in-process").metrics_dataframe
    data = resolve_data(cfg)
    trainer = build_trainer(resolve_runtime(cfg, data), data, name="trainer",
                            storage_path=str(tmp_path))
    by_trainer = trainer.fit().metrics_dataframe
    assert in_process["epoch"].tolist() == by_trainer["epoch"].tolist() == [1, 2]
    assert in_process["train_images"].tolist() == by_trainer["train_images"].tolist()
    for col in SAME_EPOCH:
        gap = (in_process[col] - by_trainer[col]).abs().max()
        print(f"largest {col} gap, in-process against TorchTrainer: {gap:.2e}")
        assert gap <= RUNTIME_TOLERANCE, (col, in_process[col].tolist(), by_trainer[col].tolist())


def test_schedules():
    cfg = load_config(None, ["optim.epochs=4", "optim.schedule=cosine"]).optim
    assert [round(lr_factor(cfg, e), 3) for e in range(4)] == [1.0, 0.854, 0.5, 0.146]
    cfg = load_config(None, ["optim.schedule=step", "optim.step_size=2", "optim.gamma=0.5"]).optim
    assert [lr_factor(cfg, e) for e in range(4)] == [1.0, 1.0, 0.5, 0.5]
    cfg = load_config(None, ["optim.warmup_epochs=1", "optim.epochs=3"]).optim
    assert lr_factor(cfg, 0) == 0.5


def test_train_command_prints_the_epoch_table(tmp_path, dff_shards, ray_cluster, capsys):
    """``deepfake-search train``: the config, one row per epoch, the checkpoint; two runs
    without --name are two runs (the second does not resume the first)."""
    from search.cli import main as cli

    args = ["train", "--data", str(dff_shards), f"cluster.storage_path={tmp_path}",
            "model.input_size=32", "model.conv_blocks=2", "model.base_width=8",
            "model.dense_units=32", "optim.epochs=1", "optim.batch_size=32", "cluster.data_cpus=1"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "arch: custom_cnn" in out  # the resolved config, printed
    header = next(line for line in out.splitlines() if line.split()[:2] == ["epoch", "train_loss"])
    assert "val_auc" in header and "val_tp" in header
    assert "checkpoint: " in out and "checkpoint: -" not in out
    import time

    time.sleep(1.1)  # default names carry the second
    assert cli(args) == 0
    runs = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("train-custom_cnn-"))
    assert len(runs) == 2, runs

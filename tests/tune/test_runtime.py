"""The trial runtime on a real Ray cluster: one reservation per trial, nothing leaked with
or without the dashboard, concurrency from what can be reserved, a killed trial resumed
from its checkpoint, and the same numbers from both ways of running the loop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from search.config import ConfigError, load_config
from search.train.driver import local_cpus, trial_bundles

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.input_size=32", "model.conv_blocks=2", "model.base_width=8",
        "model.dense_units=32", "optim.batch_size=32", "optim.lr=0.003", "cluster.data_cpus=1"]


def test_a_trial_reserves_its_data_cpus_beside_its_training():
    one = load_config(None, ["cluster.use_gpu=false", "cluster.cpus_per_worker=2",
                             "cluster.data_cpus=3"])
    assert trial_bundles(one) == [{"CPU": 2.0}, {"CPU": 3.0}]
    assert local_cpus(one) == 5
    gpu = load_config(None, ["cluster.use_gpu=true", "cluster.gpus_per_worker=1"])
    assert trial_bundles(gpu)[0] == {"CPU": 1.0, "GPU": 1.0}
    ddp = load_config(None, ["cluster.use_gpu=false", "cluster.num_workers=2",
                             "cluster.data_cpus=1"])
    # the trial's own process is a sliver; its workers get TorchTrainer's group (2 x 1 CPU)
    assert trial_bundles(ddp) == [{"CPU": 0.01}, {"CPU": 1.0}]
    assert local_cpus(ddp) == 4


def test_a_trial_no_node_can_hold_is_refused_before_any_trial(demo_shards, tmp_path, ray_cluster):
    from search.tune.tuner import run_search

    cfg = load_config(ROOT / "examples" / "tiny.yaml", [
        f"data.shards={demo_shards}", f"cluster.storage_path={tmp_path}",
        "cluster.data_cpus=64", "search.name=too-big"])
    with pytest.raises(ConfigError, match="cluster.data_cpus"):
        run_search(cfg)
    assert not (tmp_path / "too-big").exists()  # refused before Tune wrote anything


def test_max_concurrent_above_what_fits_is_obeyed_without_starving(demo_shards, tmp_path,
                                                                  ray_cluster, capsys):
    """5 CPUs, 2 per trial: 2 trials fit; a cap of 4 is obeyed, the rest wait their turn."""
    from search.tune.tuner import run_search

    cfg = load_config(ROOT / "examples" / "tiny.yaml", [
        f"data.shards={demo_shards}", f"cluster.storage_path={tmp_path}", "optim.epochs=1",
        "cluster.max_concurrent_trials=4", "search.num_samples=3", "search.scheduler=none",
        "search.name=capped"])
    outcome = run_search(cfg, evaluate_test=False)
    assert "max_concurrent_trials=4 but 2 trial(s) fit" in capsys.readouterr().out
    assert len(outcome.trials) == 3 and set(outcome.trials["status"]) == {"COMPLETED"}


def test_single_worker_and_torchtrainer_give_the_same_metrics(tmp_path, dff_shards, ray_cluster):
    """Same seed, same config: the in-process loop and a 1-worker TorchTrainer agree.

    Both run the same Recipe over the same Ray Data pipeline (one decode task at a time, so
    blocks arrive in the same order; the same local-shuffle seed) with the same torch
    threads, so the tolerance only covers floating-point reduction order: 1e-6 on the loss
    and the validation AUC.
    """
    from search.train.driver import build_trainer, train_one

    cfg = load_config(None, [f"data.shards={dff_shards}", f"cluster.storage_path={tmp_path}",
                             "optim.epochs=2", "cluster.use_gpu=false", *TINY])
    in_process = train_one(cfg, name="tune").metrics_dataframe
    trainer = build_trainer(cfg, name="train", storage_path=str(tmp_path))
    via_train = trainer.fit().metrics_dataframe
    for key in ("train_loss", "val_auc", "val_accuracy", "val_log_loss"):
        assert in_process[key].tolist() == pytest.approx(via_train[key].tolist(), abs=1e-6), key
    assert in_process["train_images"].tolist() == via_train["train_images"].tolist()


# ---------------------------------------------------------------- killed trials
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c",
            "import sys; from search.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def _experiment(path: Path, shards: Path, storage: Path, address: str, **cluster) -> Path:
    tiny = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    tiny["data"] = {"shards": str(shards)}
    tiny["optim"]["epochs"] = 3
    tiny["cluster"] = {"storage_path": str(storage), "address": address, "data_cpus": 1,
                       "use_gpu": False, **cluster}
    tiny["search"].update({"name": "killed", "num_samples": 1, "scheduler": "none",
                           "max_failures": 2, "space": {**tiny["search"]["space"],
                                                        "arch": "custom_cnn"}})
    path.write_text(yaml.safe_dump(tiny))
    return path


def _last_report(trial_dir: Path) -> dict | None:
    path = trial_dir / "result.json"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else None


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "ddp-2-workers"])
def test_a_killed_trial_resumes_from_its_checkpoint(tmp_path, demo_shards, ray_cluster, workers):
    """SIGKILL of the process that trains (the trial's own, or DDP rank 0) after epoch 1:
    Tune retries the trial, which continues at epoch 2 from its checkpoint."""
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _experiment(tmp_path / "exp.yaml", demo_shards, tmp_path / "results", address,
                      num_workers=workers)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli("run", "--config", str(cfg), "--no-test"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    exp = tmp_path / "results" / "killed"
    killed = None
    try:
        deadline = time.time() + 300
        while killed is None and time.time() < deadline and proc.poll() is None:
            for trial_dir in exp.glob("trial_*"):
                report = _last_report(trial_dir)
                if report and report.get("epoch") == 1:
                    os.kill(int(report["pid"]), signal.SIGKILL)  # mid-way through epoch 2
                    killed = int(report["pid"])
            time.sleep(0.2)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    history = pd.read_parquet(exp / "history.parquet")
    assert sorted(history["epoch"]) == [1, 2, 3]  # each epoch once: continued, not restarted
    by_epoch = history.set_index("epoch")
    assert int(by_epoch.loc[1, "pid"]) == killed and int(by_epoch.loc[3, "pid"]) != killed
    reports = [json.loads(x) for x in next(exp.glob("trial_*/result.json")).read_text().splitlines()]
    assert [r["epoch"] for r in reports] == [1, 2, 3]  # the retry started at epoch 2
    trials = pd.read_parquet(exp / "trials.parquet")
    assert list(trials["status"]) == ["COMPLETED"]


# ---------------------------------------------------------------- nothing leaks
_LEAK_CHECK = textwrap.dedent("""
    import sys, time, ray
    from search.config import load_config
    from search.tune.tuner import run_search
    dashboard = sys.argv[1] == "on"
    ray.init(address="local", num_cpus=4, include_dashboard=dashboard, log_to_driver=False,
             logging_level="WARNING")
    cfg = load_config(sys.argv[2], sys.argv[3:])
    outcome = run_search(cfg, evaluate_test=False)
    deadline = time.time() + 60
    while time.time() < deadline:
        live = [p for p in ray.util.placement_group_table().values() if p["state"] != "REMOVED"]
        free = ray.available_resources().get("CPU", 0)
        if not live and free == ray.cluster_resources()["CPU"]:
            break
        time.sleep(1)
    print("STATUS", ",".join(sorted(outcome.trials["status"])))
    print("LIVE_PGS", len(live), "FREE_CPUS", free, "OF", ray.cluster_resources()["CPU"])
""")


@pytest.mark.parametrize("dashboard", ["off", "on"])
def test_ddp_trials_stopped_by_asha_leave_nothing_reserved(tmp_path, demo_shards, dashboard):
    """Two-worker trials, one stopped at ASHA's first rung: every placement group removed and
    every CPU free at the end, whether the dashboard (Train's own cleaner) runs or not."""
    seeds = ("search.points_to_evaluate=[{arch: custom_cnn, lr: 0.003}, "
             "{arch: custom_cnn, lr: 0.003}, {arch: custom_cnn, lr: 1.0e-7}]")
    args = [f"data.shards={demo_shards}", f"cluster.storage_path={tmp_path}",
            "cluster.num_workers=2", "cluster.use_gpu=false", "cluster.max_concurrent_trials=1",
            "search.num_samples=3", "search.name=leak", seeds]
    run = subprocess.run([sys.executable, "-c", _LEAK_CHECK, dashboard,
                          str(ROOT / "examples" / "tiny.yaml"), *args],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "RAY_ADDRESS": ""})
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    status = next(line for line in run.stdout.splitlines() if line.startswith("STATUS"))
    assert "STOPPED_EARLY" in status, out[-4000:]
    last = next(line for line in run.stdout.splitlines() if line.startswith("LIVE_PGS")).split()
    assert last[1] == "0" and float(last[3]) == float(last[5]), out[-4000:]

"""The trial runtime on a real Ray cluster: one reservation per trial, nothing leaked with
or without the dashboard, concurrency from what can be reserved, a killed trial resumed
from its checkpoint, and the same numbers from both ways of running the loop."""

from __future__ import annotations

import json
import os
import re
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
    from search.study import run_search

    cfg = load_config(ROOT / "examples" / "tiny.yaml", [
        f"data.shards={demo_shards}", f"cluster.storage_path={tmp_path}",
        "cluster.data_cpus=64", "search.name=too-big"])
    with pytest.raises(ConfigError, match="cluster.data_cpus"):
        run_search(cfg)
    assert not (tmp_path / "too-big").exists()  # refused before Tune wrote anything


def test_max_concurrent_above_what_fits_is_obeyed_without_starving(demo_shards, tmp_path,
                                                                  ray_cluster, capsys):
    """5 CPUs, 2 per trial: 2 trials fit; a cap of 4 is obeyed, the rest wait their turn."""
    from search.study import run_search

    cfg = load_config(ROOT / "examples" / "tiny.yaml", [
        f"data.shards={demo_shards}", f"cluster.storage_path={tmp_path}", "optim.epochs=1",
        "cluster.max_concurrent_trials=4", "search.num_samples=3", "search.scheduler=none",
        "search.name=capped"])
    outcome = run_search(cfg, evaluate_test=False)
    assert "max_concurrent_trials=4 but 2 trial(s) fit" in capsys.readouterr().out
    assert len(outcome.trials) == 3 and set(outcome.trials["status"]) == {"COMPLETED"}


def test_single_worker_and_torchtrainer_give_the_same_metrics(tmp_path, dff_shards, ray_cluster):
    """Same seed, same config: the in-process loop and a 1-worker TorchTrainer agree.

    Both run the same Recipe on the same stream. They are not reproducible to the digit:
    with the same seed, a natural ratio and no flips, the TorchTrainer path's first-epoch
    train loss varied from run to run here (0.694 to 0.736) and the in-process path's at
    epoch 2 (0.655 to 0.663): Ray Data does not deliver the same block order every time.
    The largest gap between the two paths over six runs was 0.043, so the loss is compared
    within 0.05; what must be exactly equal is what each epoch trained and was judged on:
    every train image (natural ratio) and every validation image, the same metrics.
    """
    from search.train.driver import build_trainer, train_one

    cfg = load_config(None, [f"data.shards={dff_shards}", f"cluster.storage_path={tmp_path}",
                             "optim.epochs=2", "cluster.use_gpu=false", "data.ratio=natural",
                             "data.hflip=false", *TINY])
    in_process = train_one(cfg, name="tune").metrics_dataframe
    trainer = build_trainer(cfg, name="train", storage_path=str(tmp_path))
    via_train = trainer.fit().metrics_dataframe
    assert in_process["train_loss"].tolist() == pytest.approx(via_train["train_loss"].tolist(),
                                                              abs=0.05)
    manifest = json.loads((dff_shards / "manifest.json").read_text())["counts"]
    assert in_process["train_images"].tolist() == via_train["train_images"].tolist() \
        == [sum(manifest["train"].values())] * 2
    judged = ["val_tp", "val_tn", "val_fp", "val_fn"]
    assert (in_process[judged].sum(axis=1).tolist() == via_train[judged].sum(axis=1).tolist()
            == [sum(manifest["val"].values())] * 2)
    assert set(in_process.filter(like="val_").columns) == set(via_train.filter(like="val_").columns)


# ---------------------------------------------------------------- killed trials
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c",
            "import sys; from search.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def _experiment(path: Path, shards: Path, storage: Path, address: str, **cluster) -> Path:
    tiny = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    tiny["data"] = {"shards": str(shards)}
    tiny["optim"]["epochs"] = 4
    # Epochs long enough (64 px, a wider CNN) that the kill lands inside one.
    tiny["model"] = {"input_size": 64}
    tiny["cluster"] = {"storage_path": str(storage), "address": address, "data_cpus": 1,
                       "use_gpu": False, **cluster}
    tiny["search"].update({"name": "killed", "num_samples": 1, "scheduler": "none",
                           "max_failures": 2,
                           "space": {"arch": "custom_cnn", "ratio": "1:2", "lr": 0.003,
                                     "conv_blocks": 3, "base_width": 16, "dense_units": 32}})
    path.write_text(yaml.safe_dump(tiny))
    return path


def _first_epoch_pid(experiment: Path) -> int | None:
    """The training process's pid (DDP: rank 0's), read from epoch 1's checkpoint (Tune's
    result.json, the other place it is written, lagged a whole trial behind in a run here)."""
    for meta in experiment.glob("**/checkpoint_*/config.json"):
        try:
            metrics = json.loads(meta.read_text()).get("metrics", {})
        except (OSError, ValueError):  # being written: look again
            continue
        if metrics.get("epoch") == 1:
            return int(metrics["pid"])
    return None


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "ddp-2-workers"])
def test_a_killed_trial_resumes_from_its_checkpoint(tmp_path, demo_shards, ray_cluster, workers):
    """SIGKILL of the process that trains (the trial's own, or DDP rank 0) mid-epoch:
    Tune retries the trial, which continues from its checkpoint instead of epoch 1."""
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _experiment(tmp_path / "exp.yaml", demo_shards, tmp_path / "results", address,
                      num_workers=workers)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli("run", "--config", str(cfg), "--no-test"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    exp = tmp_path / "results" / "killed"
    killed, lines = None, []
    try:
        deadline = time.time() + 300
        for line in proc.stdout:
            lines.append(line)
            # Tune prints an epoch before it registers that epoch's checkpoint (a round trip
            # to the trial follows), so a kill right after "epoch 1/4" can find no checkpoint
            # registered and rightly start over. After "epoch 2/4", epoch 1's is registered.
            if re.search(r"\] \w+\s+epoch 2/4", line):
                killed = _first_epoch_pid(exp)
                os.kill(killed, signal.SIGKILL)  # mid-way through epoch 3
                break
            assert time.time() < deadline, "".join(lines[-30:])
        out, _ = proc.communicate(timeout=600)
        out = "".join(lines) + out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    history = pd.read_parquet(exp / "history.parquet")
    assert sorted(history["epoch"]) == [1, 2, 3, 4], history  # each epoch once
    # The trial's own history (written by the process that trains, rank 0 under DDP, the
    # same process whose pid the checkpoint holds) keeps the last report of each epoch.
    # Continued, not restarted: epoch 1 is still the killed process's (a restart would have
    # re-run and re-written it), and the last epoch ran in a new process. Tune's result.json
    # is not asserted on: on a retry it lost the killed process's lines in a CI run.
    by_epoch = history.set_index("epoch")
    assert int(by_epoch.loc[1, "pid"]) == killed, history[["epoch", "pid"]]
    assert int(by_epoch.loc[4, "pid"]) != killed, history[["epoch", "pid"]]
    trials = pd.read_parquet(exp / "trials.parquet")
    assert list(trials["status"]) == ["COMPLETED"]


# ---------------------------------------------------------------- nothing leaks
_LEAK_CHECK = textwrap.dedent("""
    import sys, time, ray
    from search.config import load_config
    from search.study import run_search
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


@pytest.mark.ray  # a search on a cluster of its own, in a subprocess
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


def test_janitor_removes_only_groups_whose_creating_actor_died(ray_cluster):
    """Tune's own groups (made by the driver) stay; a group made by an actor that died, as a
    killed Train controller leaves, is removed, through the GCS alone."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from search.tune.janitor import orphaned_placement_groups, remove_orphans

    ours = placement_group([{"CPU": 0.01}])
    ray.get(ours.ready(), timeout=60)

    @ray.remote(num_cpus=0)
    class Creator:
        def make(self) -> str:
            pg = placement_group([{"CPU": 0.01}])
            ray.get(pg.ready(), timeout=60)
            return pg.id.hex()

    creator = Creator.remote()
    orphan = ray.get(creator.make.remote())
    assert orphan not in orphaned_placement_groups()  # its creator still lives
    ray.kill(creator)
    deadline = time.time() + 30
    while orphan not in orphaned_placement_groups() and time.time() < deadline:
        time.sleep(0.5)
    assert orphaned_placement_groups() == [orphan]
    assert remove_orphans() == 1
    table = ray.util.placement_group_table()
    assert table[orphan]["state"] == "REMOVED"
    assert table[ours.id.hex()]["state"] == "CREATED"
    remove_placement_group(ours)

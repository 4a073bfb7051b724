"""--resume after the search's driver is killed mid-search: no finished trial rerun, none lost.

The driver runs as a separate process joined to the session's cluster (as on a real cluster,
where the head outlives a crashed driver) and is killed with SIGKILL, no clean-up at all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import yaml


def _config(path: Path, shards: Path, storage: Path, address: str,
            extra: Path | None = None, **search: object) -> Path:
    tiny = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "tiny.yaml").read_text())
    tiny["data"] = {"shards": str(shards)}
    if extra is not None:  # scored on epochs 1 and 4, and on the first a resumed process runs
        tiny["data"].update({"extra_sources": {"dff": str(extra)}, "extra_every": 3})
    tiny["cluster"] = {"storage_path": str(storage), "address": address, "data_cpus": 1,
                       "max_concurrent_trials": 1}
    # Epochs long enough (64 px, 4 epochs) that the kill lands before the second trial ends:
    # a single-worker trial no longer pays seconds of start-up that used to leave time.
    tiny["model"] = {"input_size": 64}
    tiny["optim"]["epochs"] = 4
    tiny["search"].update({"name": "resume", "num_samples": 3, "scheduler": "none", **search})
    path.write_text(yaml.safe_dump(tiny))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from search.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def _kill_mid_search(cfg: Path, env: dict[str, str], epochs: int) -> tuple[str, str]:
    """Run the search and SIGKILL its driver once one trial has finished and another has
    reported its first epoch; returns (finished trial, interrupted trial)."""
    proc = subprocess.Popen(_cli("run", "--config", str(cfg), "--no-test"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    finished, started_after, lines = None, None, []
    deadline = time.time() + 600
    try:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"\] (\w+)\s+finished after", line)
            if m and finished is None:
                finished = m.group(1)
            m = re.search(rf"\] (\w+)\s+epoch 1/{epochs}", line)
            if finished and m and m.group(1) != finished:
                started_after = m.group(1)  # a second trial is mid-way: kill now
                break
            assert time.time() < deadline, "".join(lines[-30:])
    finally:
        time.sleep(1.5)  # let Tune write its experiment state, as it would before a crash
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert finished and started_after, "".join(lines[-30:])
    return finished, started_after


def test_resume_after_driver_killed(tmp_path, demo_shards, dff_shards, ray_cluster):
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _config(tmp_path / "exp.yaml", demo_shards, tmp_path / "results", address,
                  extra=dff_shards)
    # Tune saves its experiment state at least every second (auto: less often), so the state
    # the kill leaves behind already knows the second trial's first checkpoint.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    finished, started_after = _kill_mid_search(cfg, env, 4)
    exp = tmp_path / "results" / "resume"
    done_ckpts = sorted(p.name for p in (exp / f"trial_{finished}").glob("checkpoint_*"))
    # Tune's own log of the finished trial: one line per report; a rerun would add lines.
    done_reports = (exp / f"trial_{finished}" / "result.json").read_text().splitlines()
    assert len(done_reports) == 4

    resumed = subprocess.run(_cli("run", "--config", str(cfg), "--resume", "--no-test"),
                             capture_output=True, text=True, env=env, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # The progress lines survive the restore (the printer is pickled with the experiment),
    # so their absence below means something: the finished trial is not rerun, and the
    # interrupted one continues at its second epoch instead of starting over.
    assert re.search(rf"\] {started_after}\s+epoch 4/4", resumed.stdout), resumed.stdout[-3000:]
    assert not re.search(rf"\] {started_after}\s+epoch 1/4", resumed.stdout), resumed.stdout[-3000:]
    assert f"{finished}  started" not in resumed.stdout and f"{finished}  epoch" not in resumed.stdout
    # The clock restarts with the new driver (it counted the dead driver's time before), the
    # count includes the trial finished before the kill, and Optuna is not told an epoch twice.
    assert "resumed: the clock restarts" in resumed.stdout
    first = re.search(r"^\[(\d+):(\d\d):(\d\d)  (\d)/3 done", resumed.stdout, re.M)
    assert first and int(first[1]) == 0 and int(first[2]) < 5, resumed.stdout[:2000]
    assert int(first[4]) >= 1
    assert re.search(r"^\[\S+  3/3 done  best 0\.\d{4}\]", resumed.stdout, re.M), resumed.stdout[-2000:]
    assert "already reported" not in resumed.stdout + resumed.stderr
    assert (exp / f"trial_{finished}" / "result.json").read_text().splitlines() == done_reports
    trials = pd.read_parquet(exp / "trials.parquet")
    assert len(trials) == 3 and trials["trial_id"].is_unique  # none lost, none duplicated
    assert (trials["status"] == "COMPLETED").all(), trials[["trial_id", "status", "epochs"]]
    assert sorted(p.name for p in (exp / f"trial_{finished}").glob("checkpoint_*")) == done_ckpts
    history = pd.read_parquet(exp / "history.parquet")
    assert sorted(history[history.trial_id == finished]["epoch"]) == [1, 2, 3, 4]
    # the interrupted trial continued from its checkpoint: every epoch once in the history
    assert sorted(history[history.trial_id == started_after]["epoch"]) == [1, 2, 3, 4]
    # The extra source through the resume: every epoch reports it, the first epoch the new
    # process ran scored it afresh (no figure survives a process), the others as scheduled.
    first = int(re.search(rf"\] {started_after}\s+epoch (\d)/4", resumed.stdout)[1])
    mid = history[history.trial_id == started_after].set_index("epoch")
    assert mid["val_auc@dff"].notna().all()
    assert mid.loc[first, "sources_epoch"] == first and mid.loc[4, "sources_epoch"] == 4
    assert mid.loc[1, "sources_epoch"] == 1
    done = history[history.trial_id == finished].set_index("epoch")["sources_epoch"]
    assert done.tolist() == [1, 1, 1, 4]


def test_ctrl_c_ends_with_tables_and_the_resume_command(tmp_path, demo_shards, ray_cluster):
    """SIGINT (Ctrl-C) mid-trial: the search still writes its tables, labels the running
    trial INTERRUPTED (not stopped early), prints this project's resume command instead of
    Tune's ``Tuner.restore(...)`` hint, and exits 130; ``--resume`` then finishes it."""
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _config(tmp_path / "exp.yaml", demo_shards, tmp_path / "results", address)
    proc = subprocess.Popen(_cli("run", "--config", str(cfg), "--no-test"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    running = None
    deadline = time.time() + 600
    for line in proc.stdout:
        m = re.search(r"\] (\w+)\s+epoch 2/4", line)
        if m:
            running = m.group(1)
            break
        assert time.time() < deadline
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert running and proc.returncode == 130, out[-2000:] + err[-3000:]
    assert f"continue with: deepfake-search run --config {cfg} --no-test --resume" in err, err[-2000:]
    assert "Tuner.restore" not in out + err
    trials = pd.read_csv(tmp_path / "results" / "resume" / "trials.csv")
    status = dict(zip(trials["trial_id"], trials["status"], strict=True))
    assert status[running] == "INTERRUPTED", status
    assert "STOPPED_EARLY" not in status.values(), status  # the scheduler is off here


def test_resume_of_a_multi_objective_search(tmp_path, demo_shards, ray_cluster):
    """search.objectives [val_auc, latency_ms] through a SIGKILL and --resume: the study
    holds each trial once, every one COMPLETE with the last val_auc and latency_ms its
    trial reported; the finished trial is not rerun, the interrupted one continues with
    the latency it measured before the kill, and the Pareto front is written."""
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _config(tmp_path / "exp.yaml", demo_shards, tmp_path / "results", address,
                  name="moresume", objectives=["val_auc", "latency_ms"])
    tiny = yaml.safe_load(cfg.read_text())
    tiny["model"]["input_size"] = 32  # the demo shards' own size: quick epochs
    tiny["optim"]["epochs"] = epochs = 5
    cfg.write_text(yaml.safe_dump(tiny))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    finished, interrupted = _kill_mid_search(cfg, env, epochs)
    exp = tmp_path / "results" / "moresume"
    done_reports = (exp / f"trial_{finished}" / "result.json").read_text().splitlines()

    resumed = subprocess.run(_cli("run", "--config", str(cfg), "--resume", "--no-test"),
                             capture_output=True, text=True, env=env, timeout=600)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{finished}  started" not in resumed.stdout and f"{finished}  epoch" not in resumed.stdout
    assert (exp / f"trial_{finished}" / "result.json").read_text().splitlines() == done_reports
    # The interrupted trial continued from its checkpoint in the new driver, and finished.
    assert not re.search(rf"\] {interrupted}\s+epoch 1/{epochs}", resumed.stdout), out[-3000:]
    assert re.search(rf"\] {interrupted}\s+epoch {epochs}/{epochs}", resumed.stdout), out[-3000:]
    for noise in ("already reported", "UpdateFinishedTrialError", "additional completion"):
        assert noise not in out, out[-3000:]

    trials = pd.read_parquet(exp / "trials.parquet")
    history = pd.read_parquet(exp / "history.parquet")
    assert len(trials) == 3 and trials["trial_id"].is_unique
    assert (trials["status"] == "COMPLETED").all(), trials[["trial_id", "status"]]
    for tid, epochs_run in history.groupby("trial_id"):
        assert sorted(epochs_run["epoch"]) == list(range(1, epochs + 1)), tid
        # Measured once per trial, the resumed one too: the figure it reported before the kill.
        assert epochs_run["latency_ms"].nunique() == 1, (tid, epochs_run["latency_ms"].tolist())
    study = optuna.load_study(study_name="moresume", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 3, [(t.number, t.state, t.params) for t in study.trials]
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    # Each study trial is one Tune trial (the sampled lr tells them apart), told that
    # trial's last reported values.
    last = history.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    by_lr = {float(r["lr"]): r["trial_id"] for _, r in trials.iterrows()}
    assert sorted(by_lr) == sorted(float(t.params["lr"]) for t in study.trials)
    for t in study.trials:
        row = last.loc[by_lr[float(t.params["lr"])]]
        np.testing.assert_array_equal(t.values, [row["val_auc"], row["latency_ms"]])
    board = (exp / "leaderboard.md").read_text()
    front = board.split("## Pareto front", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("|")[1].strip() for line in front.splitlines()
              if line.startswith("|")} - {"trial", "---"}
    assert listed and listed <= set(trials["trial_id"]), front

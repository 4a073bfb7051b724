"""--resume after the search's driver is killed mid-search: no finished trial rerun, none lost.

The driver runs as a separate process joined to the session's cluster (as on a real cluster,
where the head outlives a crashed driver) and is killed with SIGKILL, no clean-up at all.

Every kill waits for a condition it can observe (a printed line, a trial's history files,
Tune's saved experiment state), never for a fixed time: how long the driver takes to write
anything after an event grows with the machine's load, so a sleep that covered it on a quiet
machine stops covering it when other jobs share the cores (issue 21: a finished trial's
result.json was still empty 1.5 s after its "finished" line). These tests were run with a
busy loop on every core as well as on a quiet machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from search.filenames import TRIAL_HISTORY, checkpoint_in, trial_dirname
from search.study import FINALISTS_LINE
from search.tune import study_store
from search.tune.tables import read_trials_csv

pytestmark = pytest.mark.ray  # every test here joins the session's Ray cluster

#: How long a condition may take to come true: generous, for a loaded machine.
WAIT_S = 900


@pytest.fixture(autouse=True, scope="module")
def _data_coordinator_of_the_session(ray_cluster):
    """Ray Data's detached ``AutoscalingCoordinator`` actor, made by the session's own job
    before any driver here is killed. Otherwise the first trial to run a dataset makes it,
    and a driver killed just then (the first-epoch kill) can leave it registered by a job
    the GCS has already marked finished: the actor lives on but its class is gone, and every
    later trial's dataset fails ("Expected str or bytes, got NoneType", seen once here,
    GCS log: the actor registered 19 ms after its job ended). A Ray race, not the search's."""
    try:
        from ray.data._internal.cluster_autoscaler import get_or_create_autoscaling_coordinator
    except ImportError:  # another Ray version: nothing to make first
        return
    coordinator = get_or_create_autoscaling_coordinator()
    ray_cluster.get(coordinator.__ray_ready__.remote(), timeout=120)


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


class _Driver:
    """A search driver (the CLI) in its own process group; a thread reads its output, so the
    test can wait on printed lines and on files at once."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def line(self, pattern: str) -> re.Match | None:
        """The first printed line matching ``pattern`` so far."""
        return next((m for m in map(re.compile(pattern).search, list(self.lines)) if m), None)

    def wait_for(self, condition: Callable[[], Any], what: str) -> Any:
        """Poll ``condition`` until it is true (returns its value); fails if the driver ends
        first or after ``WAIT_S``."""
        deadline = time.monotonic() + WAIT_S
        while True:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                self._reader.join(timeout=10)
                value = condition()
                assert value, f"the driver ended (rc {self.proc.returncode}) before {what}:\n" \
                    + self.out[-4000:]
                return value
            assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}:\n" + self.out[-4000:]
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the driver (and its process group): no clean-up at all."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=30)


def _history(exp: Path, tid: str) -> dict[str, bytes]:
    """A trial's own history files (name -> content), as the trial wrote them."""
    folder = exp / trial_dirname(tid) / TRIAL_HISTORY
    return {p.name: p.read_bytes() for p in sorted(folder.glob("epoch_*.json"))}


def _history_epochs(exp: Path, tid: str) -> list[int]:
    return [json.loads(b)["epoch"] for b in _history(exp, tid).values()]


def _reported(out: str) -> set[tuple[str, int]]:
    """(trial, epoch) of every epoch line the driver printed: each one Tune received."""
    return {(m[1], int(m[2])) for m in re.finditer(r"\] (\w+)\s+epoch (\d+)/", out)}


def _tune_state(exp: Path, tid: str) -> dict[str, Any] | None:
    """The trial as Tune's newest saved experiment state knows it: status, last_result and
    the indices of the checkpoints its checkpoint manager holds (what a restore resumes
    from; Tune registers a checkpoint only after a round trip to the trial, so it can lag
    the result that came with it); None when there is no state yet, the trial is not in
    it, or the file was caught mid-write."""
    states = sorted(exp.glob("experiment_state-*.json"))
    if not states:
        return None
    try:
        saved = json.loads(states[-1].read_text())
        for trial, meta in saved["trial_data"]:
            trial, meta = json.loads(trial), json.loads(meta)
            if trial.get("trial_id") != tid:
                continue
            # The manager is stored pickled (hex); its checkpoints' paths are plain strings.
            manager = bytes.fromhex((meta.get("checkpoint_manager") or {}).get("value", ""))
            held = re.findall(trial_dirname(tid).encode() + rb"/checkpoint_(\d{6})", manager)
            return {"status": trial.get("status"), "last_result": meta.get("last_result") or {},
                    "checkpoints": sorted({int(i) for i in held})}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def _kill_mid_search(cfg: Path, exp: Path, env: dict[str, str], epochs: int) -> tuple[str, str]:
    """Run the search and SIGKILL its driver once one trial has finished and another has
    reported its first epoch, and Tune's saved state holds that epoch's checkpoint (so the
    resumed trial continues from it); returns (finished trial, interrupted trial)."""
    driver = _Driver(["run", "--config", str(cfg), "--no-test"], env)
    try:
        finished = driver.wait_for(lambda: driver.line(r"\] (\w+)\s+finished after"),
                                   "a trial's end")[1]
        started_after = driver.wait_for(
            lambda: next((m[1] for m in re.finditer(rf"\] (\w+)\s+epoch 1/{epochs}", driver.out)
                          if m[1] != finished), None), "a second trial's first epoch")
        driver.wait_for(lambda: (_tune_state(exp, started_after) or {}).get("checkpoints"),
                        "Tune's state to hold that epoch's checkpoint")
    finally:
        driver.kill()
    return finished, started_after


def test_resume_after_driver_killed(tmp_path, demo_shards, dff_shards, ray_cluster):
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _config(tmp_path / "exp.yaml", demo_shards, tmp_path / "results", address,
                  extra=dff_shards)
    # Tune saves its experiment state at least every second (auto: less often), so the state
    # the kill leaves behind already knows the second trial's first checkpoint.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    exp = tmp_path / "results" / "resume"
    finished, started_after = _kill_mid_search(cfg, exp, env, 4)
    done_ckpts = sorted(p.name for p in (exp / f"trial_{finished}").glob("checkpoint_*"))
    # The finished trial's own history, complete the moment Tune heard its last epoch
    # (Tune's result.json, written later by the driver, may still be empty here).
    done_history = _history(exp, finished)
    assert _history_epochs(exp, finished) == [1, 2, 3, 4]

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
    assert _history(exp, finished) == done_history  # not a byte rewritten: not rerun
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
    # The study is the default journal (issue 29), read back whole after the kill: one
    # Optuna trial per Tune trial, none told twice.
    assert (exp / "optuna.journal").is_file() and not (exp / "optuna.db").exists()
    study = optuna.load_study(study_name="resume", storage=study_store.reader(exp))
    assert len(study.trials) == 3 and {t.state for t in study.trials} == {
        optuna.trial.TrialState.COMPLETE}
    # Retention (cluster.keep_weights: 1): the best trial of each architecture keeps weights.
    kept = {p.parent.parent.name for p in exp.glob("trial_*/checkpoint_*/model.safetensors")}
    best = trials.drop_duplicates("arch")["trial_id"]  # sorted best first
    assert kept == {trial_dirname(t) for t in best}, (kept, trials[["trial_id", "arch"]])


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
    trials = read_trials_csv(tmp_path / "results" / "resume" / "trials.csv")
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
    exp = tmp_path / "results" / "moresume"
    finished, interrupted = _kill_mid_search(cfg, exp, env, epochs)
    done_history = _history(exp, finished)
    assert _history_epochs(exp, finished) == list(range(1, epochs + 1))

    resumed = subprocess.run(_cli("run", "--config", str(cfg), "--resume", "--no-test"),
                             capture_output=True, text=True, env=env, timeout=600)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{finished}  started" not in resumed.stdout and f"{finished}  epoch" not in resumed.stdout
    assert _history(exp, finished) == done_history
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
    study = optuna.load_study(study_name="moresume", storage=study_store.reader(exp))
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


def _every_reported_epoch_is_on_disk(exp: Path, drivers: list[_Driver]) -> set[tuple[str, int]]:
    """Each epoch any driver printed (Tune had it) is in its trial's own history files."""
    reported = set().union(*(_reported(d.out) for d in drivers))
    for tid, epoch in reported:
        assert epoch in _history_epochs(exp, tid), (tid, epoch, _history_epochs(exp, tid))
    return reported


def _each_epoch_once(exp: Path, trials: list[str], epochs: int) -> pd.DataFrame:
    history = pd.read_parquet(exp / "history.parquet")
    assert not history.duplicated(["trial_id", "epoch"]).any(), history[["trial_id", "epoch"]]
    assert sorted(history["trial_id"].unique()) == sorted(trials)
    for tid in trials:
        assert sorted(history[history.trial_id == tid]["epoch"]) == list(range(1, epochs + 1))
    return history


def test_driver_killed_at_three_points_loses_no_epoch(tmp_path, demo_shards, ray_cluster):
    """One tiny search (2 trials, 2 epochs, one at a time), its driver SIGKILLed three times
    and resumed with ``run --resume`` after each: while the first trial runs its first epoch,
    as soon as Tune's saved state counts a trial as finished (Tune's result.json may still
    lack epochs, the trial's own history does not), and when the finalists' test evaluation
    starts. Every epoch any driver printed is in its trial's history files at each
    kill and in history.parquet exactly once at the end; the last resume trains nothing and
    scores each finalist's test split once.

    Each kill waits on a printed line or a file, never on a time: under load (run with a
    busy loop on both cores) the driver's writes after an event take longer, and a fixed
    sleep either lands after them (the kill tests nothing) or before them (flaky)."""
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _config(tmp_path / "exp.yaml", demo_shards, tmp_path / "results", address,
                  name="kills", num_samples=2,
                  points_to_evaluate=[{"arch": "custom_cnn", "lr": 0.003},
                                      {"arch": "resnet10t", "lr": 0.003}])
    tiny = yaml.safe_load(cfg.read_text())
    tiny["model"]["input_size"] = 32  # the demo shards' own size
    tiny["optim"]["epochs"] = epochs = 2
    cfg.write_text(yaml.safe_dump(tiny))
    exp = tmp_path / "results" / "kills"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    run, resume = ["run", "--config", str(cfg)], ["run", "--config", str(cfg), "--resume"]
    drivers: list[_Driver] = []

    # 1. During the first trial's first epoch: started, in Tune's saved state (so there is
    #    something to resume), nothing reported yet.
    first = _Driver(run, env)
    drivers.append(first)
    try:
        t1 = first.wait_for(lambda: first.line(r"\] (\w+)\s+started"), "a trial's start")[1]
        first.wait_for(lambda: _tune_state(exp, t1), "Tune's state to hold the trial")
        assert not _history(exp, t1) and not _reported(first.out), first.out[-3000:]
    finally:
        first.kill()

    # 2. Right after a trial finishes: killed as soon as Tune's saved state counts it as
    #    ended (so --resume will not run it again), whatever Tune's loggers have written.
    #    Before issue 21 this lost the trial's epochs that result.json had not yet flushed.
    second = _Driver(resume, env)
    drivers.append(second)
    try:
        done = second.wait_for(lambda: second.line(rf"\] (\w+)\s+finished after {epochs} "),
                               "a trial's end")[1]
        second.wait_for(lambda: (_tune_state(exp, done) or {}).get("status") == "TERMINATED",
                        "Tune's state to count the trial as ended")
    finally:
        second.kill()
    assert _history_epochs(exp, done) == [1, 2]
    _every_reported_epoch_is_on_disk(exp, drivers)

    # 3. When the finalists' test evaluation starts (the trials done, the tables written):
    #    the trial ended in 2 is not run again, its epochs come from its own files.
    third = _Driver(resume, env)
    drivers.append(third)
    try:
        third.wait_for(lambda: third.line(FINALISTS_LINE), "the finalists' evaluation")
    finally:
        third.kill()
    assert not third.line(rf"\] {done}\s+(started|epoch) "), third.out[-3000:]  # not rerun
    trials = sorted(pd.read_parquet(exp / "trials.parquet")["trial_id"])
    assert len(trials) == 2 and done in trials
    _each_epoch_once(exp, trials, epochs)
    reported = _every_reported_epoch_is_on_disk(exp, drivers)
    assert {t for t, _ in reported} == set(trials)
    ckpts = sorted(p.relative_to(exp) for p in exp.glob("trial_*/checkpoint_*"))
    files = {tid: _history(exp, tid) for tid in trials}

    # 4. The last resume: no trial to run; the finalists' stage runs again, whole.
    final = subprocess.run(_cli(*resume), capture_output=True, text=True, env=env, timeout=WAIT_S)
    out = final.stdout + final.stderr
    assert final.returncode == 0, out[-4000:]
    assert not re.search(r"\] \w+\s+(started|epoch) ", final.stdout), out[-3000:]  # no training
    assert sorted(p.relative_to(exp) for p in exp.glob("trial_*/checkpoint_*")) == ckpts
    assert {tid: _history(exp, tid) for tid in trials} == files
    assert final.stdout.count(FINALISTS_LINE) == 1, out[-3000:]
    history = _each_epoch_once(exp, trials, epochs)
    assert len(history) == len(reported) == 2 * epochs
    table = pd.read_parquet(exp / "trials.parquet")
    assert (table["status"] == "COMPLETED").all() and (table["missing_epochs"] == "").all()
    assert "note: trial" not in final.stdout

    # The test split scored once per finalist: one entry each, every test image once.
    finalists = sorted(table[table["checkpoint"].astype(bool)].drop_duplicates("arch")["trial_id"])
    test = json.loads((exp / "test_metrics.json").read_text())
    robust = json.loads((exp / "robustness.json").read_text())
    assert sorted(test) == sorted(robust) == finalists, (test.keys(), robust.keys())
    n_test = sum(json.loads((demo_shards / "manifest.json").read_text())["counts"]["test"].values())
    for tid in finalists:
        ckpt = checkpoint_in(exp, table.set_index("trial_id").loc[tid, "checkpoint"])
        preds = pd.read_csv(ckpt / "test_predictions.csv")
        assert len(preds) == n_test and preds["id"].is_unique, tid
        assert test[tid]["tp"] + test[tid]["tn"] + test[tid]["fp"] + test[tid]["fn"] == n_test
    assert (exp / "report" / "report.html").is_file() and (exp / "latency.json").is_file()
    board = (exp / "leaderboard.md").read_text()
    assert "| test |" in board, board[:3000]

"""The search itself (search/tune/tuner.py) on a real local Ray cluster: checks made before
Ray starts, the Optuna study, TensorBoard, resources released, the stale-study guard, and
the export ``run --export`` leaves (the tables: test_tables.py; the space: test_space.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from search.config import ConfigError, load_config
from search.model.checkpoint import load_checkpoint_model
from search.model.folder import load_model
from search.tune import study_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# ------------------------------------------------------------------ progress lines
def _trial(tid: str, status: str, best: float | None = None):
    from types import SimpleNamespace

    analysis = {} if best is None else {"val_auc": {"max": best, "min": best / 2}}
    return SimpleNamespace(trial_id=tid, status=status, metric_analysis=analysis, config={})


def test_progress_lines_say_done_of_total_best_and_elapsed(capsys):
    import pickle

    from search.tune.tuner import ProgressPrinter

    printer = ProgressPrinter("val_auc", "max", max_epochs=4, total=24)
    trials = [_trial("a", "TERMINATED", 0.71), _trial("b", "ERROR"), _trial("c", "RUNNING", 0.65)]
    printer.t0 -= 3725  # 1 h 2 min 5 s ago
    printer.line(trials, trials[2], "epoch 2/4", latest=0.74)
    assert capsys.readouterr().out == "[1:02:05  2/24 done  best 0.7400] c  epoch 2/4\n"
    printer.line(trials, trials[2], "finished", ended=trials[2])  # the 0.74 it reported stays
    assert capsys.readouterr().out.startswith("[1:02:05  3/24 done  best 0.7400] c")
    # Kept per event, not read from every trial per line (issue 29): a trial Tune ended
    # without an event to this printer is not counted again.
    trials.append(_trial("d", "TERMINATED", 0.99))
    printer.line(trials, trials[2], "x")
    assert capsys.readouterr().out.startswith("[1:02:05  3/24 done  best 0.7400] c")
    assert ProgressPrinter("val_auc", "min", 4, 2).best(trials) == 0.325  # mode min
    assert printer.best([_trial("x", "RUNNING")], latest=float("nan")) is None
    # Unpickled in a resumed driver: the old process's clock is dropped, not carried on.
    resumed = pickle.loads(pickle.dumps(printer))
    assert resumed.resumed and not printer.resumed
    assert resumed.status([]).startswith("0:00:0")


def test_resume_command_repeats_the_arguments():
    from search.cli import resume_command

    assert resume_command(["run", "--config", "my study.yaml", "optim.lr=1e-3"]) == \
        "deepfake-search run --config 'my study.yaml' optim.lr=1e-3 --resume"
    assert resume_command(["--config", "x.yaml", "--resume"]) == "deepfake-search run --config x.yaml --resume"


# ------------------------------------------------------------------ before a search starts
def test_run_search_rejects_a_bad_point_before_starting_ray(demo_shards, tmp_path):
    import ray

    from search.study import run_search

    started = ray.is_initialized()
    cfg = load_config(EXAMPLES / "tiny.yaml",
                      [f"data.shards={demo_shards}", f"cluster.storage_path={tmp_path}",
                       "search.points_to_evaluate=[{arch: custom_cnn, lrr: 0.1}]"])
    with pytest.raises(ConfigError, match="'lrr' is not a parameter.*Did you mean 'lr'"):
        run_search(cfg)
    assert ray.is_initialized() == started


@pytest.mark.parametrize("overrides, startup", [
    ([], 2),  # 8 samples: a quarter, at least 2
    (["search.num_samples=100"], 5),  # at most 5 (results/bench/peer.md)
    (["search.num_samples=100", "search.startup_trials=3"], 3),  # as configured
])
def test_tpe_startup_trials(tmp_path, overrides, startup):
    from search.tune.searcher import build_searcher as _searcher
    from search.tune.space import space_for

    cfg = load_config(EXAMPLES / "tiny.yaml", ["search.num_samples=8", *overrides])
    sampler = _searcher(cfg, space_for(cfg), "max", tmp_path)._sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == startup  # Optuna keeps it private


def test_ddp_trials_are_capped_at_whole_trials_that_fit(ray_cluster):
    """A DDP trial's workers get their own placement group after the trial starts: uncapped,
    Tune starts every trial whose small group fits and their worker groups then wait for
    each other for ever (two 2-worker trials on 4 CPUs hung). The cap counts whole trials."""
    from search.tune.tuner import check_fits, max_concurrent, trials_that_fit

    cpus = ray_cluster.cluster_resources()["CPU"]  # the tests' one-node cluster
    ddp = load_config(None, ["cluster.num_workers=2", "cluster.cpus_per_worker=1",
                             "cluster.data_cpus=1", "cluster.use_gpu=false"])
    whole = 0.01 + 1 + 2 * 1  # the trial's own sliver, its data CPU, two workers
    assert trials_that_fit(ddp, with_workers=True) == int(cpus // whole)
    assert trials_that_fit(ddp) == int(cpus // 1.01) > max_concurrent(ddp)  # what Tune would do
    assert max_concurrent(ddp) == max(1, int(cpus // whole))
    big = load_config(None, ["cluster.num_workers=2", "cluster.cpus_per_worker=64",
                             "cluster.use_gpu=false"])
    assert max_concurrent(big) == 1  # none fits now: one at a time, never zero
    with pytest.raises(ConfigError, match="cluster.num_workers.*no node of this cluster"):
        check_fits(big)  # refused before any trial starts: its workers could never be placed
    assert max_concurrent(load_config(None, ["cluster.use_gpu=false"])) is None  # one worker
    capped = load_config(None, ["cluster.num_workers=2", "cluster.max_concurrent_trials=3"])
    assert max_concurrent(capped) == 3  # the user's cap wins


def test_negative_startup_trials_is_a_config_error():
    with pytest.raises(ConfigError, match="search.startup_trials"):
        load_config(None, ["search.startup_trials=-1"])


def test_a_stale_study_is_set_aside(tmp_path, capsys):
    from search.config import ExperimentConfig
    from search.filenames import OPTUNA_DB, OPTUNA_JOURNAL
    from search.tune.tuner import _set_aside_stale_study

    journal = ExperimentConfig()  # the default: search.optuna_storage journal
    sqlite = load_config(None, ["search.optuna_storage=sqlite"])
    for cfg, name in ((journal, OPTUNA_JOURNAL), (sqlite, OPTUNA_DB)):
        assert _set_aside_stale_study(cfg, tmp_path) is None
        (tmp_path / name).write_bytes(b"old")
        moved = _set_aside_stale_study(cfg, tmp_path)
        assert moved is not None and moved.read_bytes() == b"old"
        assert not (tmp_path / name).exists()
    assert "cannot be resumed" in capsys.readouterr().out


# ------------------------------------------------------------------ one real search
def test_optuna_study_persisted(tiny_search):
    study = optuna.load_study(study_name="tiny", storage=study_store.reader(tiny_search))
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


def test_ctrl_c_works_after_a_tune_run_in_the_same_process():
    """Tune leaves its SIGINT handler installed after fit (it only sets the finished run's
    flag): the search and ``train`` put the process's own back, so the next Ctrl-C is a
    KeyboardInterrupt. Tune's own installer is called here, as ``Tuner.fit`` calls it."""
    import signal

    from ray.tune.tune import _setup_signal_catching

    from search.train.driver import tune_signals_restored

    # Python's own handler first: a test earlier in the session may have run Tune unwrapped.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with tune_signals_restored():
            _setup_signal_catching()
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # Tune's
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGINT, outer)


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


def test_run_exports_the_best_trial(tiny_search):
    """``run --export`` leaves export/ beside the tables: the best trial's model, rebuilt from
    the folder alone, is the one in its checkpoint (export's own checks: test_export.py)."""
    config = json.loads((tiny_search / "export" / "config.json").read_text())
    trials = pd.read_parquet(tiny_search / "trials.parquet")
    ok = trials[(trials["status"] != "ERROR") & trials["checkpoint"].astype(bool)
                & trials["best_val_auc"].notna()]
    best = ok.sort_values("best_val_auc", ascending=False, kind="stable").iloc[0]
    assert config["trial_id"] == str(best["trial_id"])
    reference, _ = load_checkpoint_model(tiny_search / best["checkpoint"])
    model, info = load_model(tiny_search / "export")
    x = torch.randn(4, 3, info.input_size, info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert (model(x) - reference(x)).abs().max().item() < 1e-5


def test_finalists_are_scored_under_perturbation(tiny_search):
    """The search ends with each finalist's test AUC clean, under JPEG 75/50 and down-up
    scaling (robustness.json), and the leaderboard and report show the drop."""
    robust = json.loads((tiny_search / "robustness.json").read_text())
    trials = pd.read_parquet(tiny_search / "trials.parquet")
    finalists = trials.drop_duplicates("arch")  # best per architecture (sorted best first)
    assert set(robust) == set(finalists["trial_id"].astype(str))
    for result in robust.values():
        conditions = result["conditions"]
        assert set(conditions) == {"clean", "jpeg_q75", "jpeg_q50", "downup_x2"}
        for row in conditions.values():
            assert row["auc_drop"] == pytest.approx(conditions["clean"]["auc"] - row["auc"])
    board = (tiny_search / "leaderboard.md").read_text()
    assert "## Robustness (test split)" in board and "JPEG quality 50" in board
    assert "Robustness" in (tiny_search / "report" / "report.html").read_text()

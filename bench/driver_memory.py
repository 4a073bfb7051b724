"""Benchmark the search driver's memory over many trials: does it grow per trial?

    python -m bench.driver_memory [--trials 50]

Runs a search of ``--trials`` tiny one-epoch trials (demo set, 32 px) twice, each in a fresh
driver process: with Tune's default logger callbacks (JSON, CSV, TensorBoard: the project's
TensorBoard files come from them) and with ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``. A thread
in the driver samples its RSS every 0.2 s beside the number of trials that have reported;
the growth per trial is the least-squares slope of RSS against trials ended, from the 10th
trial on (the first ones load torch, timm and Ray Data into the driver). Ray issue 64231
reports about 300 KB per trial from the default loggers. Goal (issue: distributed): flat
within noise. Each row also checks that the search's tables are complete (every trial, every
epoch: the trials' own history files make the loggers optional, issue 21). Writes
results/bench/driver_memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import REPO, write_table

WARMUP = 10  # trials before the slope is fitted


def _sample(experiment: Path, out: list[tuple[int, int]], stop: threading.Event) -> None:
    import psutil

    me = psutil.Process()
    while not stop.is_set():
        # A one-epoch trial has ended when its checkpoint is in (written with or without
        # Tune's logger callbacks, unlike result.json).
        ended = sum(1 for _ in experiment.glob("trial_*/checkpoint_*"))
        out.append((ended, me.memory_info().rss))
        stop.wait(0.2)


def child(args: argparse.Namespace) -> None:
    """One search in this process; writes [(trials ended, rss bytes)] samples as JSON."""
    from search.config import load_config
    from search.study import run_search

    cfg = load_config(REPO / "examples" / "tiny.yaml", [
        f"data.shards={args.shards}", f"cluster.storage_path={args.storage}",
        f"search.num_samples={args.trials}", "optim.epochs=1", "search.name=memory",
        "cluster.cpus_per_worker=1", "cluster.threads=1", "cluster.data_cpus=1",
        "search.space={arch: [custom_cnn], ratio: ['1:1', '1:2'], "
        "lr: {low: 1.0e-4, high: 1.0e-2, log: true}, conv_blocks: 2, base_width: 8, dense_units: 16}"])
    samples: list[tuple[int, int]] = []
    stop = threading.Event()
    thread = threading.Thread(target=_sample, args=(Path(args.storage) / "memory", samples, stop),
                              daemon=True)
    thread.start()
    t0 = time.monotonic()
    error = ""
    try:
        outcome = run_search(cfg, evaluate_test=False)
        error = tables_complete(outcome.trials, outcome.history, args.trials)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    stop.set()
    thread.join()
    Path(args.out).write_text(json.dumps({"samples": samples, "wall_s": time.monotonic() - t0,
                                          "error": error}))


def tables_complete(trials: Any, history: Any, expected: int) -> str:
    """``""`` when the search's tables hold every trial and every epoch it reported (one
    one-epoch row per trial in history.parquet, no epoch named missing), else what lacks."""
    problems = []
    if len(trials) != expected:
        problems.append(f"{len(trials)} of {expected} trials")
    epochs = int(trials["epochs"].sum()) if "epochs" in trials else 0
    rows = len(history)
    if rows != expected or epochs != expected:
        problems.append(f"history.parquet {rows} rows, trials table {epochs} epochs, "
                        f"for {expected} one-epoch trials")
    gaps = trials.get("missing_epochs")
    if gaps is not None and gaps.astype(bool).any():
        problems.append(f"{int(gaps.astype(bool).sum())} trial(s) with missing epochs")
    return "incomplete: " + "; ".join(problems) if problems else ""


def growth(samples: Sequence[tuple[int, int]], trials: int, warmup: int = WARMUP
           ) -> tuple[float, float, float]:
    """(KB per trial, RSS MB after ``warmup`` trials, RSS MB at the end): the least-squares
    slope of the highest RSS sampled at each count of trials ended."""
    by_count: dict[int, int] = {}
    for ended, rss in samples:
        by_count[ended] = max(rss, by_count.get(ended, 0))
    # The last count also spans the tables and importances written after the search: left out.
    xs = np.array([n for n in sorted(by_count) if warmup <= n < trials], dtype=float)
    ys = np.array([by_count[int(n)] for n in xs], dtype=float)
    slope = float(np.polyfit(xs, ys, 1)[0]) if len(xs) >= 3 else float("nan")
    return slope / 1024, ys[0] / 2**20, ys[-1] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from search.data.prepare import PrepareOptions, prepare

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        prepare(PrepareOptions(layout="demo", source=str(Path(tmp) / "src"), out=str(shards),
                               size=32, demo_images=600), progress=False)
        for label, extra in [("Tune's default loggers", {}),
                             ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1",
                              {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"})]:
            out = Path(tmp) / "samples.json"
            storage = Path(tempfile.mkdtemp(dir=tmp))
            subprocess.run([sys.executable, "-m", "bench.driver_memory", "--child",
                            f"--trials={args.trials}", f"--shards={shards}",
                            f"--storage={storage}", f"--out={out}"],
                           cwd=REPO, env={**os.environ, **extra}, check=True,
                           stdout=subprocess.DEVNULL)
            result = json.loads(out.read_text())
            kb, start, end = growth(result["samples"], args.trials)
            rows.append([label, args.trials, start, end, kb, result["wall_s"],
                         result["error"] or f"complete ({args.trials} trials, every epoch)"])
            print(rows[-1], flush=True)
    write_table(
        "driver_memory",
        f"Search driver RSS over {args.trials} one-epoch trials",
        ["driver", "trials", f"RSS after {WARMUP} trials (MB)", "RSS at the end (MB)",
         "growth per trial (KB, least squares)", "search wall (s)", "tables"],
        rows,
        [f"Command: `python -m bench.driver_memory --trials {args.trials}`. Each row is a fresh "
         "driver process (a local Ray cluster of its own) running the same tiny search (demo "
         "set at 32 px, custom CNN, one epoch per trial, trials one at a time). RSS sampled "
         "every 0.2 s; per trial the highest sample while that many trials had reported; slope "
         f"fitted from trial {WARMUP} on. Ray issue 64231 reports ~300 KB per trial from Tune's "
         "default logger callbacks.",
         "",
         "Where it goes (tracemalloc over trials 8 to 28 of a 30-trial run, 2026-11-29): 186 KB "
         "per trial, of which Tune's per-trial metric bookkeeping (`Trial.run_metadata`: "
         "max/min/avg/last-5/last-10 windows of each of the ~50 numeric keys a trial reports, "
         "and its cached JSON) is ~125 KB; the logger callbacks hold only a config dict or a "
         "flag per ended trial. Hence the same slope without them: the goal (flat) is not met, "
         "and the growth is per trial and per reported key, not per epoch.",
         "",
         "`tables`: whether trials.parquet and history.parquet hold every trial and every "
         "epoch it reported (one history row per one-epoch trial, no epoch named missing). "
         "Since issue 21 each trial writes its own history (search.train.history) and the "
         "tables read it, so without Tune's loggers (no result.json/progress.csv) they are "
         "complete too; before it (2026-11-29 run) that row's search ended without error but "
         "its history.parquet was empty. Without the loggers the project loses only Tune's "
         "TensorBoard files."])


if __name__ == "__main__":
    main()

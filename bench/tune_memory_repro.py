"""Minimal reproduction for Ray upstream: a Tune driver's memory grows per finished trial.

    python bench/tune_memory_repro.py [--trials 200] [--keys 3 50] [--epochs 3]

Nothing of this project: a Ray Tune function trainable that reports ``--epochs`` results of
``--keys`` numeric keys each (and a checkpoint of one small file per result with
``--checkpoint``), ``--trials`` trials, 16 at once, on a local cluster, Tune's logger
callbacks off (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``: Ray issue 64231's suspect out of
the way). The driver's RSS is sampled after every ended trial; the growth per trial is the
least-squares slope from the 20th trial on. ``--trace`` adds tracemalloc's top tracebacks
between two trial counts (the allocations still alive at the second).

Each ``--keys`` value runs in a fresh process. Prints a table and writes it to
``results/bench/tune_memory_repro.md`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench"


def trainable(config: dict) -> None:
    """``epochs`` reports of ``keys`` numbers each (plus a checkpoint when asked)."""
    from ray import tune

    for epoch in range(config["epochs"]):
        metrics = {f"m{i}": float(epoch + i) for i in range(config["keys"])}
        metrics["score"] = config["x"] * (epoch + 1)
        if config["checkpoint"]:
            with tempfile.TemporaryDirectory() as d:
                Path(d, "state.json").write_text(json.dumps({"epoch": epoch}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)


#: What the sampling callback records (module state: Tune pickles its callbacks).
_SEEN: dict = {"rss": {}, "traced": [], "snaps": [], "trace": []}


class Sample:
    """A Tune callback: the driver's RSS after every ended trial, and tracemalloc's top
    tracebacks between the two trial counts of ``--trace``."""

    def __new__(cls):
        from ray import tune

        class _Sample(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                _sample(sum(t.status == "TERMINATED" for t in trials))

        return _Sample()


def _sample(ended: int) -> None:
    import tracemalloc

    import psutil

    seen = _SEEN
    seen["rss"][ended] = psutil.Process().memory_info().rss
    trace, snaps = seen["trace"], seen["snaps"]
    if not trace or len(snaps) >= 2 or ended < trace[len(snaps)]:
        return
    if not snaps:
        tracemalloc.start(10)
    snaps.append((ended, tracemalloc.take_snapshot()))
    if len(snaps) == 2:
        (n0, a), (n1, b) = snaps
        for stat in b.compare_to(a, "traceback")[:12]:
            frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}"
                      for f in reversed(stat.traceback)][:3]
            seen["traced"].append((" < ".join(frames), stat.size_diff / 1024 / (n1 - n0)))


def child(args: argparse.Namespace) -> dict:
    """One Tuner.fit in this process; RSS per trials ended (and tracemalloc's top lines)."""
    import numpy as np
    import ray
    from ray import tune

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    _SEEN["trace"] = [int(v) for v in args.trace.split(",")] if args.trace else []
    ray.init(num_cpus=16, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"x": tune.uniform(0, 1), "keys": args.keys, "epochs": args.epochs,
                         "checkpoint": args.checkpoint},
            tune_config=tune.TuneConfig(num_samples=args.trials, metric="score", mode="max",
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name="repro", verbose=0,
                                      callbacks=[Sample()],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
        ).fit()
    ray.shutdown()
    rss = _SEEN["rss"]
    xs = np.array(sorted(n for n in rss if n >= 20), dtype=float)
    slope = float(np.polyfit(xs, [rss[int(n)] for n in xs], 1)[0]) if len(xs) > 2 else float("nan")
    return {"keys": args.keys, "kb_per_trial": slope / 1024, "traced": _SEEN["traced"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--keys", type=int, nargs="+", default=[3, 50])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--checkpoint", action="store_true")
    parser.add_argument("--trace", default="", help="N0,N1: tracemalloc between these counts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.keys = args.keys[0]
        Path(args.out).write_text(json.dumps(child(args)))
        return
    rows = []
    for keys in args.keys:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, __file__, "--child", f"--out={out.name}", "--keys", str(keys),
                   f"--trials={args.trials}", f"--epochs={args.epochs}", f"--trace={args.trace}",
                   *(["--checkpoint"] if args.checkpoint else [])]
            subprocess.run(cmd, check=True)
            rows.append(json.loads(Path(out.name).read_text()))
            print(json.dumps(rows[-1]), flush=True)  # each row as it comes
    import platform

    lines = [f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}, `python bench/tune_memory_repro.py "
             + " ".join(sys.argv[1:]) + "`", "",
             "| keys per report | driver growth per trial (KB) |", "|---|---|"]
    lines += [f"| {r['keys']} | {r['kb_per_trial']:.1f} |" for r in rows]
    for r in rows:
        if r["traced"]:
            lines += ["", f"tracemalloc, {r['keys']} keys, KB per trial by traceback:"]
            lines += [f"- {where}: {kb:.2f}" for where, kb in r["traced"]]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tune_memory_repro.md").write_text(text)


if __name__ == "__main__":
    main()

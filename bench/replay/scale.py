"""1,000 replayed trials at once: the driver's memory, trial throughput, tables and storage.

    python -m bench.replay scale [--trials 1000] [--cpus 64] [--trial-cpus 2]
        [--loggers on off] [--recording results/bench/replay/grid-32px.parquet]

Each row is a fresh driver process that joins a new local Ray cluster of ``--cpus`` logical
CPUs (the project's ``search.cluster.connect``, as ``deepfake-search run`` starts one) and
runs a TPE + ASHA search (the project's searcher and scheduler, :mod:`bench.replay.replay`)
of ``--trials`` replayed trials, as many at once as the cluster holds (``--trial-cpus``
each). A trial reports to Tune only what the search needs: the epoch and the search metric
(and the virtual clock, one more number); every other recorded figure of the epoch goes to
its own history files (``search.train.history``, what the tables read) before the report,
and each epoch reports a checkpoint holding the epoch's ``config.json`` (no weights),
kept as the project keeps them: ``num_to_keep=2`` by the metric.

Measured as ``bench/driver_memory.py`` measures it: a thread samples the driver's RSS every
0.2 s beside the number of trials ended; the growth per trial is the least-squares slope
of the highest RSS at each count, from trial ``--warmup`` on. Also: trials started per
second, the time the project's tables (``write_tables``), leaderboard (with parameter
importances) and HTML report take at that many trials, the Optuna database's size and the
storage per trial. Rows are added to ``results/bench/driver_memory.md`` (its other rows
stay).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench._common import REPO, RESULTS, machine
from bench.driver_memory import growth

RECORDING = RESULTS / "replay" / "grid-32px.parquet"
TABLE = RESULTS / "driver_memory.md"


def _sample(counter: dict, out: list, stop: threading.Event, trace: Sequence[int] = (),
            traced: list | None = None) -> None:
    """RSS every 0.2 s beside trials ended; with ``trace`` (two trial counts), a tracemalloc
    snapshot at each, compared by file into ``traced`` (KB per trial between them)."""
    import psutil

    me = psutil.Process()
    snaps: list = []
    while not stop.is_set():
        out.append((counter["ended"], me.memory_info().rss))
        if trace and len(snaps) < 2 and counter["ended"] >= trace[len(snaps)]:
            import tracemalloc

            if not snaps:  # traced from here on: what is still held at the second snapshot
                tracemalloc.start(1)
            snaps.append((counter["ended"], tracemalloc.take_snapshot()))
            if len(snaps) == 2 and traced is not None:
                (n0, a), (n1, b) = snaps
                for stat in b.compare_to(a, "filename")[:15]:
                    traced.append((stat.traceback[0].filename.split("site-packages/")[-1],
                                   stat.size_diff / 1024 / max(1, n1 - n0)))
        stop.wait(0.2)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child(args: argparse.Namespace) -> None:
    """One search in this process; its measurements as JSON in ``args.out``."""
    import optuna
    from ray.tune import Callback

    from bench.replay.replay import Curves, build_replay_tuner, replay_config
    from search.cluster import connect
    from search.filenames import OPTUNA_DB, TRIAL_HISTORY

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = Curves.load(args.recording)
    cfg = replay_config(curves, ["search.algorithm=tpe", "search.scheduler=asha",
                                 f"search.num_samples={args.trials}", "seed=0",
                                 "cluster.max_concurrent_trials=0"],
                        storage=args.storage, name="scale")
    counter = {"ended": 0, "starts": [], "results": 0}

    class Count(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            counter["starts"].append(time.monotonic())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            counter["results"] += 1

        def on_trial_complete(self, iteration, trials, trial, **info):
            counter["ended"] += 1

        def on_trial_error(self, iteration, trials, trial, **info):
            counter["ended"] += 1

    connect("local", num_cpus=args.cpus)
    samples: list = []
    traced: list = []
    trace = [int(v) for v in args.trace.split(",")] if args.trace else []
    stop = threading.Event()
    thread = threading.Thread(target=_sample, args=(counter, samples, stop, trace, traced),
                              daemon=True)
    thread.start()
    t0 = time.monotonic()
    tuner = build_replay_tuner(cfg, curves, callbacks=[Count()], history=True, checkpoints=True,
                               cpus=args.trial_cpus, logs=args.loggers == "on")
    results = tuner.fit()
    wall = time.monotonic() - t0
    stop.set()
    thread.join()
    out = {"samples": samples, "wall_s": wall, "results": counter["results"], "traced": traced,
           "starts": [s - t0 for s in counter["starts"]], "errors": 0, "timings": {}}
    out["errors"] = sum(1 for r in results if r.error is not None)
    exp_dir = Path(args.storage) / "scale"
    timings = out["timings"]
    try:
        from search.study import finish
        from search.tune import tables, tuner
        from search.tune.importance import param_importances

        t = time.monotonic()
        written = tuner.write_tables(cfg, results)
        timings["tables"] = time.monotonic() - t
        t = time.monotonic()
        imp = param_importances(exp_dir / OPTUNA_DB, cfg.search.name)
        timings["importances"] = time.monotonic() - t
        t = time.monotonic()
        tables.leaderboard(written.trials, metric=cfg.search.metric,
                           mode=cfg.search.resolved_mode(), test={}, importances=imp,
                           title=cfg.search.name)
        timings["leaderboard"] = time.monotonic() - t
        t = time.monotonic()
        finish(cfg, results, evaluate_test=False)  # tables + leaderboard.md, as a search ends
        timings["finish"] = time.monotonic() - t
        from search.report.page import write_report

        t = time.monotonic()
        page = write_report(exp_dir)
        timings["report"] = time.monotonic() - t
        out["report_bytes"] = _du(Path(page).parent) if Path(page).is_file() else 0
        out["history_rows"] = len(written.history)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        out["tables_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    trial_dirs = list(exp_dir.glob("trial_*"))
    out["storage"] = {
        "trials": len(trial_dirs),
        "experiment_bytes": _du(exp_dir),
        "trial_bytes": sum(_du(d) for d in trial_dirs),
        "checkpoint_bytes": sum(_du(c) for d in trial_dirs for c in d.glob("checkpoint_*")),
        "checkpoints": sum(1 for d in trial_dirs for _ in d.glob("checkpoint_*")),
        "history_bytes": sum(_du(d / TRIAL_HISTORY) for d in trial_dirs),
        "optuna_db_bytes": (exp_dir / OPTUNA_DB).stat().st_size,
        "experiment_state_bytes": sum(p.stat().st_size
                                      for p in exp_dir.glob("experiment_state-*.json")),
    }
    Path(args.out).write_text(json.dumps(out))


def tpe_cost(curves_path: str, sizes: Sequence[int], asks: int = 20) -> list[dict]:
    """Seconds per ``ask`` (a trial's parameters drawn by the project's define-by-run space)
    of the project's TPE sampler over a study that already holds ``n`` finished trials, in
    memory and in SQLite (as the search keeps it): what sampling costs the driver as a
    search grows. The trials are random draws from the recorded space, valued at random."""
    import random

    import optuna

    from bench.replay.replay import Curves, replay_config
    from search.tune.space import sample, space_for

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = Curves.load(curves_path)
    space = space_for(replay_config(curves, storage=tempfile.gettempdir(), name="x"))
    rng = random.Random(0)
    out = []
    for n in sizes:
        for where in ("memory", "sqlite"):
            with tempfile.TemporaryDirectory() as tmp:
                storage = None if where == "memory" else f"sqlite:///{tmp}/optuna.db"
                seed_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0),
                                                 direction="maximize")
                for _ in range(n):
                    t = seed_study.ask()
                    sample(t, space)
                    seed_study.tell(t, rng.random())
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=10,
                                                         multivariate=True, group=True,
                                                         constant_liar=True)
                study = optuna.create_study(sampler=sampler, direction="maximize",
                                            storage=storage, study_name="cost")
                t0 = time.monotonic()
                study.add_trials(seed_study.trials)
                load = time.monotonic() - t0
                t0 = time.monotonic()
                for _ in range(asks):
                    t = study.ask()
                    sample(t, space)
                    study.tell(t, rng.random())
                size = Path(tmp, "optuna.db").stat().st_size if storage else 0
                out.append({"trials": n, "storage": where, "ask_tell_s": (time.monotonic() - t0) / asks,
                            "load_s": load, "db_bytes": size})
                print(out[-1], flush=True)
    return out


def add_rows(rows: list[list[str]], notes: list[str]) -> None:
    """Add rows to the table of ``driver_memory.md`` (after its last row) and notes at the
    end, leaving every other row and note as it is."""
    lines = TABLE.read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("|"))
    new = ["| " + " | ".join(r) + " |" for r in rows]
    lines = lines[: last + 1] + new + lines[last + 1:] + [""] + notes
    TABLE.write_text("\n".join(lines).rstrip() + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay scale")
    parser.add_argument("--recording", default=str(RECORDING))
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=64, help="logical CPUs of the local cluster")
    parser.add_argument("--trial-cpus", type=float, default=2.0, help="CPUs a trial reserves")
    parser.add_argument("--warmup", type=int, default=100, help="trials before the fit")
    parser.add_argument("--loggers", nargs="+", default=["on", "off"],
                        help="Tune's default logger callbacks (JSON, CSV, TensorBoard)")
    parser.add_argument("--keep", default="", help="keep the results folders here")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--reuse", action="store_true",
                        help="take the rows from the --keep folder's earlier runs where present")
    parser.add_argument("--tpe-cost", type=int, nargs="*", default=None,
                        help="only time TPE's ask over studies of these many trials")
    parser.add_argument("--trace", default="", help="N0,N1: tracemalloc from N0 trials ended to "
                        "N1, by file (slows the driver then; RSS then includes its own)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.loggers = args.loggers[0]
        return child(args)
    if args.tpe_cost is not None:
        tpe_cost(args.recording, args.tpe_cost or [100, 1000, 5000])
        return
    rows, notes = [], []
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="replay-scale-"))
    for loggers in args.loggers:
        storage = base / f"loggers-{loggers}"
        out = base / f"scale-{loggers}.json"
        # Tune warns at every forced experiment snapshot (a trial checkpointed num_to_keep
        # times since the last one): hundreds of lines here; the cost is measured instead.
        env = {**os.environ, "PYTHONPATH": str(REPO),
               "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
        cmd = [sys.executable, "-m", "bench.replay", "scale", "--child", f"--trials={args.trials}",
               f"--cpus={args.cpus}", f"--trial-cpus={args.trial_cpus}",
               f"--recording={args.recording}", f"--storage={storage}", f"--out={out}",
               f"--trace={args.trace}", "--loggers", loggers]
        if not (args.reuse and out.is_file()):
            subprocess.run(cmd, cwd=REPO, env=env, check=True)
        res = json.loads(out.read_text())
        kb, start, end = growth(res["samples"], args.trials, args.warmup)
        starts = sorted(res["starts"])
        rate = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else float("nan")
        st, tm = res["storage"], res["timings"]
        label = (f"replay, TPE + ASHA, {int(args.cpus / args.trial_cpus)} at once, reports epoch + "
                 f"{'val_auc'} + virtual time; Tune's loggers {loggers} (RSS column: after "
                 f"{args.warmup} trials)")
        tables = res.get("tables_error") or (
            f"tables {tm['tables']:.1f} s, importances {tm['importances']:.1f} s, leaderboard "
            f"{tm['leaderboard']:.1f} s, report {tm['report']:.1f} s")
        rows.append([label, f"{args.trials}", f"{start:.0f}", f"{end:.0f}", f"{kb:.1f}",
                     f"{res['wall_s']:.0f}", tables])
        per = st["trial_bytes"] / max(1, st["trials"]) / 1024
        notes.append(
            f"- {label}: {rate:.1f} trials started per second ({len(starts)} starts in "
            f"{starts[-1] - starts[0]:.0f} s), {res['results']} results, {res['errors']} errors; "
            f"Optuna DB {st['optuna_db_bytes'] / 2**20:.1f} MB, Tune's experiment state "
            f"{st['experiment_state_bytes'] / 2**20:.1f} MB; storage {per:.1f} KB per trial "
            f"(checkpoints {st['checkpoint_bytes'] / max(1, st['trials']) / 1024:.1f} KB in "
            f"{st['checkpoints'] / max(1, st['trials']):.1f} folders: config.json only, no "
            f"weights, num_to_keep=2; history files "
            f"{st['history_bytes'] / max(1, st['trials']) / 1024:.1f} KB); whole experiment "
            f"folder {st['experiment_bytes'] / 2**20:.0f} MB.")
        if res.get("traced"):
            notes.append(f"  - where it grows (tracemalloc, trials {args.trace}, KB per trial by "
                         "file): " + "; ".join(f"{f} {kb:.1f}" for f, kb in res["traced"]
                                               if abs(kb) >= 0.5))
        print(rows[-1], notes[-1], flush=True)
    if args.no_write:
        return
    shown = " ".join(argv if argv is not None else sys.argv[2:])
    shown = re.sub(r"--reuse|--keep[ =]\S+", "", shown)  # how the figures were kept, not made
    cmd = re.sub(r"\s+", " ", "python -m bench.replay scale " + shown).strip()
    add_rows(rows, [
        f"Replayed rows ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{machine()}): `{cmd}` ({bench_doc()})", *notes])


def bench_doc() -> str:
    return ("bench/replay/scale.py: a fresh driver per row, a local cluster of many logical "
            "CPUs, trials replaying the recorded grid so that only Tune, Optuna and the "
            "project's own files are measured; slope fitted from the warm-up on")


if __name__ == "__main__":
    main()

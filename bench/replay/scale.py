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
and each epoch reports a checkpoint holding the epoch's ``config.json`` (with
``--weights-kb``, dummy weights of that size and optimiser state of twice it), kept as the
project keeps them (``tuner.checkpoint_config``; weights by ``cluster.keep_weights``, the
project's retention callback and progress printer in the driver, as in a real search).

Measured as ``bench/driver_memory.py`` measures it: a thread samples the driver's RSS every
0.2 s beside the number of trials ended; the growth per trial is the least-squares slope
of the highest RSS at each count, from trial ``--warmup`` on. Also: trials started per
second, the time the project's tables (``write_tables``), leaderboard (with parameter
importances) and HTML report take at that many trials, the Optuna database's size and the
storage per trial; the start rate over the first and the last 100 trials; with
``--profile N0,N1`` a cProfile of the driver over ``--profile-width`` trial starts from
each; with ``--trace N0,N1`` tracemalloc by file and by traceback and gc's objects by type
between them. Rows are added to ``results/bench/driver_memory.md`` (its other rows stay);
profiles and tracebacks go to ``results/bench/driver_scale-<trials>-<loggers>.txt``.
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
from typing import Any

from bench._common import REPO, RESULTS, machine
from bench.driver_memory import growth

RECORDING = RESULTS / "replay" / "grid-32px.parquet"
TABLE = RESULTS / "driver_memory.md"


def _sample(counter: dict, out: list, stop: threading.Event, weights: Path | None = None) -> None:
    """RSS every 0.2 s beside trials ended; with ``weights`` (the experiment folder), the
    bytes of weights and optimiser state on disk every 5 s."""
    import psutil

    me = psutil.Process()
    last_du = 0.0
    while not stop.is_set():
        out.append((counter["ended"], me.memory_info().rss))
        if weights is not None and time.monotonic() - last_du > 5:
            last_du = time.monotonic()
            counter["weights"].append((counter["ended"], counter["running"], _weight_bytes(weights)))
        stop.wait(0.2)


def _trace(ended: int, trace: Sequence[int], snaps: list, traced: dict) -> None:
    """At the two trial counts of ``trace``: a tracemalloc snapshot and gc's live objects by
    type, compared into ``traced`` (per trial between them, by file and by traceback). Run
    in the driver's main thread (a Tune callback): gc.get_objects from another thread can
    catch a tuple half-built and crash the interpreter's generator (seen: SystemError)."""
    if trace and len(snaps) < 2 and ended >= trace[len(snaps)]:
        snaps.append(_snapshot(ended, first=not snaps))
        if len(snaps) == 2:
            traced.update(_compare(*snaps))


def _snapshot(ended: int, first: bool) -> tuple:
    """(trials ended, tracemalloc snapshot, live objects by type)."""
    import gc
    import tracemalloc
    from collections import Counter

    if first:  # traced from here on: what is still held at the second snapshot
        tracemalloc.start(4)  # 4 frames: 12 slowed the driver tenfold at load 30
    gc.collect()
    return ended, tracemalloc.take_snapshot(), Counter(type(o).__name__ for o in gc.get_objects())


def _compare(a: tuple, b: tuple) -> dict:
    """Growth per trial between two snapshots: by file, by traceback (the allocating frame
    and the project's or Tune's frames above it) and gc objects by type."""
    (n0, s0, g0), (n1, s1, g1) = a, b
    per = max(1, n1 - n0)

    def where(frames) -> str:
        keep = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in frames
                if "tracemalloc" not in f.filename][:4]
        return " < ".join(keep)

    return {
        "trials": [n0, n1],
        "by_file": [(s.traceback[0].filename.split("site-packages/")[-1], s.size_diff / 1024 / per)
                    for s in s1.compare_to(s0, "filename")[:15]],
        "by_traceback": [(where(reversed(s.traceback)), s.size_diff / 1024 / per,
                          s.count_diff / per) for s in s1.compare_to(s0, "traceback")[:25]],
        "gc_by_type": [(k, (g1[k] - g0.get(k, 0)) / per)
                       for k, _ in (g1 - g0).most_common(20)],
    }


def _weight_bytes(exp_dir: Path) -> int:
    """Bytes of weights and optimiser state under the experiment's checkpoint folders."""
    from search.filenames import STATE, WEIGHTS

    total = 0
    if not exp_dir.is_dir():
        return 0
    for trial in os.scandir(exp_dir):
        if not trial.name.startswith("trial_"):
            continue
        try:
            folders = list(os.scandir(trial.path))
        except OSError:  # a trial folder being made or removed
            continue
        for ckpt in folders:
            if ckpt.name.startswith("checkpoint_"):
                for name in (WEIGHTS, STATE):
                    try:
                        total += os.stat(os.path.join(ckpt.path, name)).st_size
                    except OSError:
                        pass
    return total


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child(args: argparse.Namespace) -> None:
    """One search in this process; its measurements as JSON in ``args.out``."""
    import optuna

    from bench.replay.replay import Curves, build_replay_tuner, replay_config
    from search import storage
    from search.cluster import connect
    from search.tune.retention import retention
    from search.tune.tuner import ProgressPrinter

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = Curves.load(args.recording)
    cfg = replay_config(curves, ["search.algorithm=tpe", "search.scheduler=asha",
                                 f"search.num_samples={args.trials}", "seed=0",
                                 "cluster.max_concurrent_trials=0",
                                 f"cluster.keep_weights={args.keep_weights}",
                                 f"search.optuna_storage={args.optuna}"],
                        storage=args.storage, name="scale")
    counter = {"ended": 0, "starts": [], "results": 0, "running": 0, "weights": []}
    profiles: dict[str, str] = {}
    traced: dict = {}
    count = _count(args, counter, profiles, traced)
    connect("local", num_cpus=args.cpus)
    samples: list = []
    stop = threading.Event()
    exp_dir = Path(args.storage) / "scale"
    thread = threading.Thread(target=_sample, daemon=True, args=(
        counter, samples, stop, exp_dir if args.weights_kb else None))
    thread.start()
    t0 = time.monotonic()
    printer = ProgressPrinter(cfg.search.metric, cfg.search.resolved_mode(), cfg.optim.epochs,
                              args.trials)
    project = [printer.callback(), *retention(cfg, storage.experiment_dir(cfg))]
    tuner = build_replay_tuner(cfg, curves, callbacks=[count, *project], history=True,
                               checkpoints=True, cpus=args.trial_cpus, logs=args.loggers == "on",
                               weights_bytes=args.weights_kb * 1024)
    results = tuner.fit()
    wall = time.monotonic() - t0
    stop.set()
    thread.join()
    out = {"samples": samples, "wall_s": wall, "results": counter["results"], "traced": traced,
           "starts": [s - t0 for s in counter["starts"]], "errors": 0, "timings": {},
           "weights": counter["weights"], "profiles": profiles,
           "checkpoint_bytes_each": 3 * args.weights_kb * 1024}
    out["errors"] = sum(1 for r in results if r.error is not None)
    _after_search(cfg, results, exp_dir, out)
    Path(args.out).write_text(json.dumps(out))


def _count(args: argparse.Namespace, counter: dict, profiles: dict, traced: dict) -> Any:
    """The benchmark's own Tune callback: trial starts, results and ends into ``counter``;
    the cProfile windows (``--profile``) and the memory snapshots (``--trace``)."""
    from ray.tune import Callback

    windows = [int(v) for v in args.profile.split(",")] if args.profile else []
    trace = [int(v) for v in args.trace.split(",")] if args.trace else []
    profiler: list = []
    snaps: list = []

    class Count(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            counter["starts"].append(time.monotonic())
            counter["running"] += 1
            _profile_window(len(counter["starts"]), windows, profiler, profiles,
                            args.profile_width)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            counter["results"] += 1

        def on_trial_complete(self, iteration, trials, trial, **info):
            counter["ended"] += 1
            counter["running"] -= 1
            _trace(counter["ended"], trace, snaps, traced)

        def on_trial_error(self, iteration, trials, trial, **info):
            counter["ended"] += 1
            counter["running"] -= 1

    return Count()


def _after_search(cfg: Any, results: Any, exp_dir: Path, out: dict) -> None:
    """What the search's end costs at this many trials (tables, importances, leaderboard,
    report) and what it left on disk, into ``out``."""
    from search.filenames import TRIAL_HISTORY
    from search.tune import study_store

    timings = out["timings"]
    try:
        from search.leaderboard import leaderboard
        from search.study import finish
        from search.tune import tuner
        from search.tune.importance import param_importances

        t = time.monotonic()
        written = tuner.write_tables(cfg, results)
        timings["tables"] = time.monotonic() - t
        t = time.monotonic()
        imp = param_importances(study_store.reader(exp_dir, cfg), cfg.search.name)
        timings["importances"] = time.monotonic() - t
        t = time.monotonic()
        leaderboard(written.trials, metric=cfg.search.metric,
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
        "optuna_db_bytes": sum((exp_dir / n).stat().st_size for n in study_store.LOCAL_FILES
                               if (exp_dir / n).is_file()),
        "weight_bytes": _weight_bytes(exp_dir),
        "experiment_state_bytes": sum(p.stat().st_size
                                      for p in exp_dir.glob("experiment_state-*.json")),
    }


def _profile_window(started: int, windows: Sequence[int], profiler: list,
                    profiles: dict[str, str], width: int = 50) -> None:
    """cProfile of the driver's main thread (Tune's loop and every callback) over ``width``
    trial starts from each count in ``windows``: what a trial start costs at that size."""
    import cProfile
    import io
    import pstats

    if started in windows and not profiler:  # windows do not overlap
        profiler[:] = [cProfile.Profile(), started, time.monotonic()]
        profiler[0].enable()
    elif profiler and started == profiler[1] + width:
        prof, first, t = profiler
        prof.disable()
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(35)
        profiles[f"{first}-{started}"] = (f"{width} starts in {time.monotonic() - t:.1f} s\n"
                                         + text.getvalue())
        profiler.clear()


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
    parser.add_argument("--weights-kb", type=int, default=0, help="dummy weights per checkpoint "
                        "(KB; optimiser state twice that): storage under retention")
    parser.add_argument("--keep-weights", default="1", help="cluster.keep_weights")
    parser.add_argument("--optuna", default="journal", help="search.optuna_storage")
    parser.add_argument("--profile", default="", help="N0,N1: cProfile of the driver over "
                        "--profile-width trial starts from each")
    parser.add_argument("--profile-width", type=int, default=50)
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
        cmd = _run_child(args, loggers, base, storage, out)
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
            f"{st['checkpoints'] / max(1, st['trials']):.1f} folders: config.json, and dummy "
            f"weights where retention kept them; history files "
            f"{st['history_bytes'] / max(1, st['trials']) / 1024:.1f} KB); whole experiment "
            f"folder {st['experiment_bytes'] / 2**20:.0f} MB.")
        notes += _scale_notes(res, args)
        print(rows[-1], *notes, sep="\n", flush=True)
        (RESULTS / f"driver_scale-{args.trials}-{loggers}.txt").write_text(_details(res, cmd))
    if args.no_write:
        return
    shown = " ".join(argv if argv is not None else sys.argv[2:])
    shown = re.sub(r"--reuse|--keep[ =]\S+", "", shown)  # how the figures were kept, not made
    cmd = re.sub(r"\s+", " ", "python -m bench.replay scale " + shown).strip()
    add_rows(rows, [
        f"Replayed rows ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{machine()}): `{cmd}` ({bench_doc()})", *notes])


def _run_child(args: argparse.Namespace, loggers: str, base: Path, storage: Path,
               out: Path) -> list[str]:
    """One row's search in a fresh driver process (unless ``--reuse`` finds its figures);
    its progress lines go to ``base/scale-<loggers>.log``. Returns its command line."""
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
    cmd = [sys.executable, "-m", "bench.replay", "scale", "--child", f"--trials={args.trials}",
           f"--cpus={args.cpus}", f"--trial-cpus={args.trial_cpus}",
           f"--recording={args.recording}", f"--storage={storage}", f"--out={out}",
           f"--trace={args.trace}", f"--weights-kb={args.weights_kb}", f"--keep-weights={args.keep_weights}",
           f"--optuna={args.optuna}", f"--profile={args.profile}",
           f"--profile-width={args.profile_width}", "--loggers", loggers]
    if not (args.reuse and out.is_file()):
        base.mkdir(parents=True, exist_ok=True)
        with open(base / f"scale-{loggers}.log", "w") as log:  # the progress lines
            subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=log)
    return cmd


def start_rates(starts: Sequence[float], window: int = 100) -> tuple[float, float]:
    """Trials started per second over the first and the last ``window`` starts."""
    starts = sorted(starts)
    first, last = starts[:window], starts[-window:]
    def rate(s: Sequence[float]) -> float:
        return (len(s) - 1) / (s[-1] - s[0]) if len(s) > 1 and s[-1] > s[0] else float("nan")

    return rate(first), rate(last)


def _scale_notes(res: dict, args: argparse.Namespace) -> list[str]:
    """Issue 29's figures of one run: the start rate's fall, weights under retention, and
    where the driver's memory goes."""
    first, last = start_rates(res["starts"])
    n = len(res["starts"])
    notes = [f"  - start rate: {first:.2f}/s over trials 0-100, {last:.2f}/s over trials "
             f"{n - 100}-{n} ({last / first:.0%} of the first; goal >= 80%); optuna storage "
             f"{args.optuna}, Tune's num_to_keep: {_keep_folders()}"]
    one = res.get("checkpoint_bytes_each") or 0
    if one and res["weights"]:
        peak = max(w for _, _, w in res["weights"])
        running = max(r for _, r, _ in res["weights"])
        notes.append(f"  - weights + optimiser state on disk (keep_weights {args.keep_weights} per "
                     f"architecture): peak {peak / one:.1f} checkpoints, at the end "
                     f"{res['storage']['weight_bytes'] / one:.1f} (one checkpoint = "
                     f"{one / 1024:.0f} KB of dummy bytes, {running} trials running at most; "
                     f"{res['storage']['checkpoints']} checkpoint folders at the end, each of "
                     "which would hold one without retention)")
    traced = res.get("traced") or {}
    if traced:
        notes.append(f"  - where it grows (tracemalloc, trials {traced['trials']}, KB per trial "
                     "by file): " + "; ".join(f"{f} {kb:.1f}" for f, kb in traced["by_file"]
                                             if abs(kb) >= 0.5))
    return notes


def _keep_folders() -> str:
    import inspect

    from search.tune import tuner

    return ("a trial's epochs" if "max_epochs" in inspect.signature(tuner.checkpoint_config).parameters
            else "2")


def _details(res: dict, cmd: list[str]) -> str:
    """The profiles, tracebacks and gc counts of one run, as text."""
    out = [f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}",
           " ".join(cmd), ""]
    traced = res.get("traced") or {}
    for key in ("by_traceback", "gc_by_type"):
        out.append(f"== {key} (per trial, trials {traced.get('trials')})")
        out += [" | ".join(str(round(v, 2)) if isinstance(v, float) else str(v) for v in row)
                for row in traced.get(key, [])]
    for window, text in (res.get("profiles") or {}).items():
        out += [f"== cProfile, trial starts {window}", text]
    return _portable("\n".join(out) + "\n")


def _portable(text: str) -> str:
    """``text`` without this machine's folders (results name no machine: the committed
    pages are checked by tests/test_results_portable.py): site-packages, the repository and
    the temporary folder become short names."""
    import site
    import tempfile

    for folder, name in ([(p, "site-packages") for p in site.getsitepackages()]
                         + [(str(REPO), "."), (tempfile.gettempdir(), "$TMPDIR")]):
        text = text.replace(folder.rstrip("/") + "/", name + "/")
    return text


def bench_doc() -> str:
    return ("bench/replay/scale.py: a fresh driver per row, a local cluster of many logical "
            "CPUs, trials replaying the recorded grid so that only Tune, Optuna and the "
            "project's own files are measured; slope fitted from the warm-up on")


if __name__ == "__main__":
    main()

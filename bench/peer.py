"""The project's search on a peer's benchmark: HPOLib, NAS-Bench-201 and HPOBench tables.

    python -m bench.peer [--seeds 50] [--trials 200] [--slice-seeds 2] [--slice-trials 30]
        [--jobs 2] [--workdir results/bench/peer]
    python -m bench.peer --replot        # the page again from the saved reports

Every search is the project's: its space (:class:`bench.replay.tables.TableSource` gives
the table's parameters as the project's ``Param`` objects, drawn by its define-by-run
``sample``), its sampler (``search.tune.searcher.build_sampler``: TPE multivariate + grouped,
start-up trials a quarter of ``num_samples`` capped at 10, or random), its config defaults;
only training is replaced by a table look-up whose ``train_time`` is the virtual clock.

Two ways of running it, because a Tune trial costs 0.3-1 s of driver time on this 2-core
machine and the 50-seed comparison is about 70,000 trials:

1. **The Tune slice** (``--slice-seeds`` x ``--slice-trials`` per table, random and the
   default TPE, plus the Pareto search): ``bench.replay.replay.run_replay``, the project's
   ``Tuner`` + ``OptunaSearch`` + scheduler over the look-up, one trial at a time, exactly as
   ``python -m bench.replay compare`` runs a recorded grid. Each of its searches is checked
   against (2) on the same seed: the configurations must be the same, in the same order.
2. **The 50-seed comparison**: the same sampler factory, space and ``sample`` in a plain
   ``optuna`` ask/tell loop (:func:`direct`), in ``--jobs`` processes. With one trial at a
   time, OptunaSearch does exactly this (``ask``, the define-by-run function, ``report`` of
   the one epoch, ``tell``); (1) shows it draws the same configurations.

Methods (``METHODS``): random; TPE as the project configures it; and levers: 20 start-up
trials; the numeric parameters as ranges (as a project YAML writes ``lr``), mapped to the
nearest tabulated value; a univariate TPE (Optuna's default before 4.x, the paper's
baseline; not a project option, built here). Reported per table and method over the seeds,
median [IQR]: trials and train-seconds until random search's final best (same seed) was
reached, their ratio to random's own, and the best after 1/4, 1/3, 1/2 and all of the
budget. The Pareto search (NAS-Bench-201 CIFAR-10, ``val_acc`` against ``latency_ms``):
hypervolume of each search's front. The page (``results/bench/peer.md``) is rebuilt from
``--workdir``'s reports by ``--replot``; a run without it replaces them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._common import RESULTS
from bench.replay.tables import LATENCY, TableSource

WORKDIR = RESULTS / "peer"
#: The tables: every HPOLib set, NAS-Bench-201 CIFAR-10, the first two HPOBench sets of the
#: package's list (chosen before any run, not by result).
TABLES: tuple[tuple[str, str], ...] = (
    ("hpolib", "naval_propulsion"), ("hpolib", "parkinsons_telemonitoring"),
    ("hpolib", "protein_structure"), ("hpolib", "slice_localization"),
    ("nasbench201", "cifar10"), ("hpobench", "car"), ("hpobench", "phoneme"))
PARETO_TABLE = ("nasbench201", "cifar10")


@dataclass(frozen=True)
class Method:
    """A search: config overrides; ``ranges`` (see TableSource); ``univariate``: a plain
    univariate TPESampler instead of the project's (direct loop only); ``seeds``: run on the
    first that many seeds only (0: all); ``benches``: only on these benchmarks (): all."""

    overrides: tuple[str, ...]
    ranges: bool = False
    univariate: bool = False
    seeds: int = 0
    benches: tuple[str, ...] = ()


BASELINE, DEFAULT = "random", "TPE (project default)"
METHODS: dict[str, Method] = {
    BASELINE: Method(("search.algorithm=random",)),
    DEFAULT: Method(("search.algorithm=tpe",)),
    # The levers on the first seeds only: the machine was shared with three other sessions'
    # test runs and a study (load 20-28 on 2 cores), where a multivariate TPE over numeric
    # ranges took up to a minute a search and the univariate one 10-25 s. Ranges: HPOLib
    # (NAS-Bench-201 has no numeric parameter; HPOBench's five are, but it was left out).
    "TPE, 5 start-up trials": Method(("search.algorithm=tpe", "search.startup_trials=5"),
                                     seeds=20),
    "TPE, 20 start-up trials": Method(("search.algorithm=tpe", "search.startup_trials=20"),
                                      seeds=5),
    "TPE, numeric parameters as ranges": Method(("search.algorithm=tpe",), ranges=True,
                                                seeds=5, benches=("hpolib",)),
    "TPE, univariate (not a project option)": Method(("search.algorithm=tpe",),
                                                     univariate=True, seeds=5,
                                                     benches=("hpolib", "nasbench201")),
}
SLICE_METHODS = (BASELINE, DEFAULT)
FRACTIONS = (0.25, 1 / 3, 0.5, 1.0)


def table_name(bench: str, dataset: str) -> str:
    return f"{bench}/{dataset}"


def search_config(source: TableSource, method: Method, seed: int, trials: int) -> Any:
    """The experiment config of one search: what ``run_replay`` builds (one trial at a time)."""
    from bench.replay.replay import replay_config

    return replay_config(source, ["cluster.max_concurrent_trials=1", f"seed={seed}",
                                  f"search.num_samples={trials}", *method.overrides],
                         storage=tempfile.gettempdir(), name="peer")


def _sampler(cfg: Any, method: Method) -> Any:
    import optuna

    from search.tune import searcher

    if not method.univariate:
        return searcher.build_sampler(cfg)
    return optuna.samplers.TPESampler(seed=cfg.seed, multivariate=False,
                                      n_startup_trials=cfg.search.resolved_startup_trials())


def config_index(source: TableSource, key: Sequence[Any]) -> int:
    """A tabulated configuration as one integer (mixed radix over the tabulated values)."""
    index = 0
    for (_name, values), value in zip(source.choices.items(), key):
        index = index * len(values) + list(values).index(value)
    return index


def direct(source: TableSource, method: Method, seed: int, trials: int) -> pd.DataFrame:
    """One search outside Tune: the project's sampler, space and ``sample`` in an ask/tell
    loop, as OptunaSearch drives them (see the module doc). One row per trial."""
    import optuna

    from search.tune.space import sample

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = source.with_seed(seed)
    cfg = search_config(source, method, seed, trials)
    space = source.space(cfg)
    objectives = list(cfg.search.objectives) or [cfg.search.metric]
    modes = cfg.search.objective_modes() if cfg.search.objectives else [cfg.search.resolved_mode()]
    study = optuna.create_study(sampler=_sampler(cfg, method), pruner=optuna.pruners.NopPruner(),
                                directions=["minimize" if m == "min" else "maximize" for m in modes])
    rows = []
    for order in range(trials):
        trial = study.ask()
        config = {**sample(trial, space), **trial.params}
        row = source.curve(config)[-1]
        if len(objectives) == 1:
            trial.report(row[objectives[0]], 1)
        study.tell(trial, [row[o] for o in objectives] if len(objectives) > 1 else row[objectives[0]])
        rows.append({"order": order, "config": config_index(source, source.key(config)),
                     "value": row[source.metric], "train_s": row["time_total_s"],
                     LATENCY: row.get(LATENCY, np.nan)})
    return pd.DataFrame(rows)


def _task(job: tuple[str, str, str, int, int, bool]) -> pd.DataFrame:
    bench, dataset, method, seed, trials, pareto = job
    m = METHODS[method]
    source = TableSource(bench, dataset, ranges=m.ranges, pareto=pareto)
    return direct(source, m, seed, trials).assign(
        table=table_name(bench, dataset), method=method, seed=seed, pareto=pareto)


def run_direct(jobs: list[tuple], processes: int, store: Path,
               done: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every direct search, ``processes`` at a time; the reports saved (after ``done``'s)
    as they come."""
    frames, t0 = ([done] if done is not None and len(done) else []), time.monotonic()
    if not jobs:
        return pd.concat(frames, ignore_index=True)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for i, frame in enumerate(pool.imap_unordered(_task, jobs, chunksize=2)):
            frames.append(frame)
            if (i + 1) % 10 == 0 or i + 1 == len(jobs):
                pd.concat(frames, ignore_index=True).to_parquet(store, index=False,
                                                                compression="zstd")
                print(f"[{i + 1}/{len(jobs)}] direct searches, {time.monotonic() - t0:.0f} s",
                      flush=True)
    return pd.concat(frames, ignore_index=True)


def run_slice(seeds: int, trials: int, budget: int, store: Path) -> pd.DataFrame:
    """The Tune slice: random and the default TPE on every table, and the Pareto search,
    through ``run_replay``; each search's configurations in order (the page sets them beside
    the direct loop's, :func:`bench.peer_report.slice_lines`), saved as each ends."""
    from bench.replay.replay import run_replay
    from search.cluster import connect

    for attempt in range(3):  # a raylet may miss Ray's 30-s start on a loaded machine
        try:
            connect("local", num_cpus=2)
            break
        except Exception:
            import ray

            ray.shutdown()  # the failed start's processes, before the next
            if attempt == 2:
                raise
    rows = []
    jobs = [(t, m, s, False) for t in TABLES for m in SLICE_METHODS for s in range(seeds)]
    jobs += [(PARETO_TABLE, m, s, True) for m in SLICE_METHODS for s in range(seeds)]
    for i, ((bench, dataset), method, seed, pareto) in enumerate(jobs):
        source = TableSource(bench, dataset, seed=seed, pareto=pareto)
        m = METHODS[method]
        with tempfile.TemporaryDirectory() as tmp:
            out = run_replay(source, [f"seed={seed}", f"search.num_samples={budget}",
                                      *m.overrides], storage=tmp, name="slice", budget=trials)
        tune_keys = [config_index(source, k) for k in out.reports.sort_values("order")["key"]]
        rows.append({"table": table_name(bench, dataset), "method": method, "seed": seed,
                     "pareto": pareto, "trials": len(tune_keys), "configs": tune_keys,
                     "wall_s": out.wall_s})
        pd.DataFrame(rows).to_parquet(store, index=False)
        print(f"[{i + 1}/{len(jobs)}] Tune slice {table_name(bench, dataset)} {method} seed "
              f"{seed}{' (Pareto)' if pareto else ''}: {len(tune_keys)} trials, "
              f"{out.wall_s:.1f} s", flush=True)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--slice-seeds", type=int, default=2)
    parser.add_argument("--slice-trials", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--workdir", default=str(WORKDIR))
    parser.add_argument("--replot", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="keep the saved direct searches and run only the missing ones")
    parser.add_argument("--keep-slice", action="store_true",
                        help="with --resume: keep the saved Tune slice instead of rerunning it")
    parser.add_argument("--slice-only", action="store_true",
                        help="run only the Tune slice (beside a direct run in another process)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    if args.slice_only:
        t0 = time.time()
        run_slice(args.slice_seeds, args.slice_trials, args.trials, workdir / "tune-slice.parquet")
        (workdir / "slice.json").write_text(json.dumps({"wall_s": time.time() - t0}))
        return
    if not args.replot:
        run(args, workdir, list(argv if argv is not None else sys.argv[1:]))
    from bench.peer_report import write_page

    write_page(workdir)


def all_jobs(seeds: int, trials: int) -> list[tuple]:
    """Every direct search: random and the default on every table first, then the Pareto
    searches, then the levers (what a stopped run has done is what matters most)."""
    jobs = [(b, d, m, s, trials, False) for m, how in METHODS.items() for b, d in TABLES
            if not how.benches or b in how.benches
            for s in range(min(seeds, how.seeds or seeds))]
    jobs += [(*PARETO_TABLE, m, s, trials, True) for m in SLICE_METHODS for s in range(seeds)]
    core = set(SLICE_METHODS)
    # the start-up lever first (the default it may change), then the others; each seed by
    # seed, so that a run stopped early has every table's first seeds
    rank = {m: i for i, m in enumerate(["TPE, 5 start-up trials"])}
    return sorted(jobs, key=lambda j: (j[2] not in core, rank.get(j[2], 1),
                                       j[3] if j[2] not in core else 0))


def run(args: argparse.Namespace, workdir: Path, argv: list[str]) -> None:
    """Both parts; without ``--resume`` from scratch (the reports of a previous run are
    replaced), with it only the direct searches not saved yet."""
    from bench._common import machine

    store = workdir / "reports.parquet"
    done = pd.read_parquet(store) if args.resume and store.is_file() else pd.DataFrame()
    before = json.loads((workdir / "run.json").read_text()) \
        if args.resume and (workdir / "run.json").is_file() else {}
    if not args.resume:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    have = set(map(tuple, done[["table", "method", "seed", "pareto"]].drop_duplicates()
                   .to_numpy())) if len(done) else set()
    jobs = [j for j in all_jobs(args.seeds, args.trials)
            if (table_name(j[0], j[1]), j[2], j[3], j[5]) not in have]
    run_direct(jobs, args.jobs, store, done)
    direct_s = time.time() - t0 + before.get("direct_wall_s", 0.0)
    if not (args.resume and args.keep_slice and (workdir / "tune-slice.parquet").is_file()):
        run_slice(args.slice_seeds, args.slice_trials, args.trials,
                  workdir / "tune-slice.parquet")
    command = "python -m bench.peer " + " ".join(shlex.quote(a) for a in argv)
    commands = [*before.get("commands", [before["command"]] if "command" in before else []),
                command]
    (workdir / "run.json").write_text(json.dumps({
        "command": "; then ".join(commands), "commands": commands,
        "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": time.time() - t0 + before.get("wall_s", 0.0), "direct_wall_s": direct_s,
        "jobs": args.jobs,
        "seeds": args.seeds, "trials": args.trials, "slice_seeds": args.slice_seeds,
        "slice_trials": args.slice_trials}, indent=1))


if __name__ == "__main__":
    main()

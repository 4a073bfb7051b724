"""Random, TPE, random + ASHA and TPE + ASHA over many seeds, replayed at one epoch budget.

    python -m bench.replay compare [--recording results/bench/replay/grid-32px.parquet]
        [--seeds 50] [--trials 12] [--workdir /tmp/replay-compare]
        [--variant 'LABEL=override override ...' ...] [--variant-seeds 20] [--replot]

Every search is the project's (:mod:`bench.replay.replay`: the space, OptunaSearch with the
project's samplers, ASHA) over the recorded curves, one trial at a time, and spends the same
budget: ``--trials`` x the recording's epochs, counted in epochs reported, all trials
together. Random and TPE without a scheduler run ``--trials`` trials to the end; with ASHA
``num_samples`` is the budget itself (so TPE's start-up trials are the project's default for
such a search, ``max(2, min(5, num_samples // 4))``) and the search ends when the
budget is spent. Per seed, every method gets the same experiment seed (TPE's start-up trials
are random search's first draws: a paired comparison).

Reported, per method, as median [interquartile range] over the seeds:

- the epochs spent until some epoch's validation AUC reached random search's final best (of
  the same seed), and its ratio to what random search itself needed (goal: TPE + ASHA at
  most 1/3, at the median); not reached within the budget counts as infinite;
- the best validation AUC so far after 1/4, 1/3, 1/2 and all of the budget, plotted against
  epochs spent (median and IQR band).

Each (method, seed)'s reports are kept in ``--workdir/reports.parquet`` as they finish (a
stopped run continues where it was; ``--replot`` only rewrites the table and plot), and the
table goes to ``results/bench/efficiency.md``, the plot and the reports beside the recording.
``--variant 'tpe+asha g2=search.algorithm=tpe search.scheduler=asha search.grace_period=2'``
adds a method (the levers: grace period, reduction factor, start-up trials, ``lr-range``:
the learning rate as a log range mapped to the nearest recorded value, as the project's
default space has it; ``rung-best``: each trial reports its best epoch so far as the metric,
so ASHA's rungs and TPE compare what a trial is finally chosen by), run on
``--variant-seeds`` seeds (default all). The best-so-far curves are measured on the epochs'
own values either way.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench._common import REPO, RESULTS, scratch_free, write_table
from bench.replay.replay import Curves, run_replay
from search.config import SearchConfig

RECORDING = RESULTS / "replay" / "grid-32px.parquet"
METRIC = "val_auc"
INF = math.inf
#: The four searches of the issue: (label, overrides).
METHODS = {
    "random": ["search.algorithm=random", "search.scheduler=none"],
    "TPE": ["search.algorithm=tpe", "search.scheduler=none"],
    "random + ASHA": ["search.algorithm=random", "search.scheduler=asha"],
    "TPE + ASHA": ["search.algorithm=tpe", "search.scheduler=asha"],
}
BASELINE, DEFAULT = "random", "TPE + ASHA"
LR_RANGE = "lr-range"  # a variant's pseudo-override: lr as a log range, nearest grid value
#: A variant's pseudo-override: trials report their best epoch so far as the metric (ASHA's
#: rungs and Optuna compare that), not the epoch's own value.
BEST_SO_FAR = "rung-best"
PSEUDO = (LR_RANGE, BEST_SO_FAR)
FRACTIONS = (0.25, 1 / 3, 0.5, 1.0)


def asha(overrides: Sequence[str]) -> bool:
    return "search.scheduler=asha" in overrides


def search_overrides(overrides: Sequence[str], seed: int, trials: int, budget: int) -> list[str]:
    """A method's overrides for one seed: ``num_samples`` the trials (no scheduler) or the
    budget (ASHA: the budget, not the trial count, ends the search)."""
    n = budget if asha(overrides) else trials
    return [f"seed={seed}", f"search.num_samples={n}",
            *[o for o in overrides if o not in PSEUDO]]


def run_all(curves: Curves, methods: dict[str, list[str]], seeds: dict[str, list[int]],
            trials: int, workdir: Path) -> pd.DataFrame:
    """Every (method, seed) not yet in ``workdir/reports.parquet``, added there as it ends."""
    from search.cluster import connect

    budget = trials * int(curves.meta["epochs"])
    store = workdir / "reports.parquet"
    done = pd.read_parquet(store) if store.is_file() else pd.DataFrame()
    have = set(map(tuple, done[["method", "seed"]].drop_duplicates().to_numpy())) \
        if len(done) else set()
    todo = [(m, s) for m in methods for s in seeds[m] if (m, s) not in have]
    if todo:
        connect("local", num_cpus=2)
    frames = [done] if len(done) else []
    for i, (method, seed) in enumerate(todo):
        overrides = methods[method]
        storage = workdir / "runs"
        out = run_replay(curves, search_overrides(overrides, seed, trials, budget),
                         storage=storage, name=f"s{seed}", budget=budget,
                         lr_range=LR_RANGE in overrides, best_so_far=BEST_SO_FAR in overrides)
        shutil.rmtree(storage, ignore_errors=True)
        keys = pd.DataFrame(out.reports["key"].tolist(), columns=list(curves.keys))
        frame = pd.concat([out.reports.drop(columns="key"), keys], axis=1).assign(
            method=method, seed=seed, wall_s=out.wall_s)
        frames.append(frame)
        pd.concat(frames, ignore_index=True).to_parquet(store, index=False)
        print(f"[{i + 1}/{len(todo)}] {method} seed {seed}: {out.trials} trials, "
              f"best {frame[METRIC].max():.4f}, {out.wall_s:.1f} s", flush=True)
    return pd.concat(frames, ignore_index=True)


def to_reach(values: np.ndarray, target: float) -> float:
    """Epochs spent (1-based) until a value reached ``target``; inf if none did."""
    hit = np.flatnonzero(values >= target - 1e-12)
    return float(hit[0] + 1) if len(hit) else INF


def per_seed(reports: pd.DataFrame, budget: int) -> pd.DataFrame:
    """One row per (method, seed): epochs to random's final best, its ratio to random's own,
    the best so far at each fraction of the budget, trials, wall."""
    rows = []
    base = {s: g.sort_values("order")[METRIC].to_numpy()
            for s, g in reports[reports.method == BASELINE].groupby("seed")}
    for (method, seed), g in reports.groupby(["method", "seed"]):
        if seed not in base:
            continue
        values = g.sort_values("order")[METRIC].to_numpy()
        target = float(base[seed].max())
        r, t = to_reach(base[seed], target), to_reach(values, target)
        r1, t1 = to_reach(base[seed], target - 0.01), to_reach(values, target - 0.01)
        row = {"method": method, "seed": seed, "target": target, "epochs": t,
               "ratio": t / r, "ratio_0.01": t1 / r1, "trials": g["trial_id"].nunique(),
               "stopped_early": int((g.groupby("trial_id").size() < g["epoch"].max()).sum()),
               "wall_s": float(g["wall_s"].iloc[0]), "spent": len(values)}
        for f in FRACTIONS:
            upto = values[: max(1, int(round(f * budget)))]
            row[f"best@{f:.2f}"] = float(upto.max())
        rows.append(row)
    return pd.DataFrame(rows)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile); inf counts as larger than anything."""
    arr = np.sort(np.asarray(values, dtype=float))
    q = [float(np.quantile(arr, p, method="lower" if p < 0.5 else "higher"))
         if p != 0.5 else float(statistics.median(arr)) for p in (0.5, 0.25, 0.75)]
    return q[0], q[1], q[2]


def fmt_q(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    def one(v: float) -> str:
        return "n.r." if v == INF else fmt.format(v)
    med, lo, hi = quartiles(values)
    return f"{one(med)} [{one(lo)}-{one(hi)}]"


def curve_band(reports: pd.DataFrame, method: str, budget: int) -> np.ndarray:
    """(3, budget): median, 25th and 75th percentile of the best so far, per epoch spent."""
    series = []
    for _, g in reports[reports.method == method].groupby("seed"):
        values = np.maximum.accumulate(g.sort_values("order")[METRIC].to_numpy())
        if len(values) < budget:  # a search that ran out of trials keeps its best
            values = np.concatenate([values, np.full(budget - len(values), values[-1])])
        series.append(values[:budget])
    arr = np.vstack(series)
    return np.vstack([np.median(arr, 0), np.quantile(arr, 0.25, 0), np.quantile(arr, 0.75, 0)])


def plot(reports: pd.DataFrame, methods: Sequence[str], budget: int, grid_best: float,
         out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [m for m in methods if m not in METHODS]
    panels = [[m for m in methods if m in METHODS]]
    if variants:
        panels.append([BASELINE, DEFAULT, *variants])
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 4.8), dpi=100,
                             squeeze=False, sharey=True)
    x = np.arange(1, budget + 1)
    lo = float(np.quantile(curve_band(reports, BASELINE, budget)[1], 0.02))
    colours = {m: plt.get_cmap("tab10")(i) if i < 10 else "black" for i, m in enumerate(methods)}
    table = per_seed(reports, budget)
    best_lever = min(variants, key=lambda m: quartiles(table[table.method == m]["ratio"])[0],
                     default=None)
    for i, (ax, group) in enumerate(zip(axes[0], panels)):
        for method in group:
            band = curve_band(reports, method, budget)
            n = reports[reports.method == method]["seed"].nunique()
            ax.plot(x, band[0], label=f"{method} ({n} seeds)", lw=1.6, color=colours[method],
                    ls="-" if method in METHODS else "--")
            if i == 0 or method in (BASELINE, DEFAULT, best_lever):  # bands: legible
                ax.fill_between(x, band[1], band[2], color=colours[method], alpha=0.12, lw=0)
        ax.axhline(grid_best, color="grey", lw=0.8, ls=":", label="best of the recorded grid")
        ax.axvline(budget / 3, color="grey", lw=0.6, ls="--")
        ax.set_xlabel("epochs spent (all trials, in order)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_ylim(max(0.45, lo - 0.01), grid_best + 0.01)
    axes[0][0].set_ylabel("best validation AUC so far")
    axes[0][0].set_title("The four searches: median and IQR band")
    if variants:
        axes[0][1].set_title(f"Levers on TPE + ASHA (dashed): median; IQR band for "
                             f"{best_lever}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def reports_name(page: str) -> str:
    """The file beside the recording that keeps a page's per-search reports."""
    return "compare-reports.parquet" if page == "efficiency" else f"{page}-reports.parquet"


def grid_text(curves: Curves) -> str:
    """What the recording's grid varies, and which keys apply to which architecture."""
    keys = ", ".join(f"{k} {curves.values(k)}" for k in curves.keys)
    only = [f"{k} only for {'custom_cnn' if k == 'conv_blocks' else 'the timm families'}"
            for k in ("conv_blocks", "frozen_stages") if k in curves.keys]
    pretrained = "; timm families from their pretrained weights" \
        if curves.meta.get("pretrained") else ""
    return keys + "".join(f"; {o}" for o in only) + pretrained


def report(curves: Curves, reports: pd.DataFrame, run: dict, plot_path: Path,
           page: str = "efficiency") -> None:
    meta = curves.meta
    epochs, trials = int(meta["epochs"]), int(run["trials"])
    budget = trials * epochs
    table = per_seed(reports, budget)
    methods = [m for m in run["methods"] if m in set(table["method"])]
    frame = curves.frame()
    finals = frame.sort_values("epoch").groupby(list(curves.keys), dropna=False)[METRIC]
    grid_best = float(frame[METRIC].max())
    plot(reports, methods, budget, grid_best, plot_path)
    header = ["method", "seeds", "trials per search", "stopped early", "epochs to random's best",
              "÷ random's epochs", "reached", "÷ random's, to its best - 0.01", *[f"best AUC after {lab} of the budget"
                                               for lab in ("1/4", "1/3", "1/2", "all")],
              "wall per search (s)"]
    rows = []
    for m in methods:
        t = table[table.method == m]
        reached = int(np.isfinite(t["epochs"]).sum())
        rows.append([m, len(t), fmt_q(t["trials"]), fmt_q(t["stopped_early"]),
                     fmt_q(t["epochs"]), fmt_q(t["ratio"], "{:.2f}"), f"{reached}/{len(t)}",
                     fmt_q(t["ratio_0.01"], "{:.2f}"),
                     *[fmt_q(t[f"best@{f:.2f}"], "{:.3f}") for f in FRACTIONS],
                     f"{t['wall_s'].median():.1f}"])
    default = table[table.method == DEFAULT]
    med = quartiles(default["ratio"])[0]
    paired = []  # each lever against the default on the same seeds
    for m in methods:
        if m in METHODS:
            continue
        t = table[table.method == m]
        d = default[default.seed.isin(t.seed)]
        paired.append(f"{m}: {fmt_q(t['ratio'], '{:.2f}')} against the default's "
                      f"{fmt_q(d['ratio'], '{:.2f}')} on the same {len(t)} seeds; reached "
                      f"{int(np.isfinite(t['epochs']).sum())} against "
                      f"{int(np.isfinite(d['epochs']).sum())}; final best "
                      f"{fmt_q(t['best@1.00'], '{:.3f}')} against {fmt_q(d['best@1.00'], '{:.3f}')}")
    verdict = ("**met**" if med <= 1 / 3 else "**not met**")
    n_points = len(curves)
    top = finals.max().sort_values(ascending=False)
    notes = [
        f"Recording: `{Path(run['recording']).relative_to(REPO)}`: a grid of "
        f"{n_points} configurations ({grid_text(curves)}), each trained "
        f"{epochs} epochs, {n_points * epochs} epochs in all, on {meta['images']} deepfake_faces "
        f"images prepared at {meta['size']} px. "
        f"Recorded {meta['date']} on {meta['machine']} by `{meta['command']}` "
        f"({meta.get('wall_s_this_run', 0) / 60:.0f} min).",
        *run.get("grid_note", []),
        "",
        f"Budget: {trials} trials x {epochs} epochs = {budget} epochs per search (a third of "
        f"the grid's {n_points * epochs}), one trial at a time. Random and TPE run {trials} "
        f"trials; with ASHA (grace period {run.get('grace_period', 1)}, reduction factor "
        f"{run.get('reduction_factor', 2)}: the project's defaults when it ran) "
        f"num_samples = {budget} and the search ends when the budget is spent, TPE's start-up "
        f"trials then the project's default, {run.get('startup_trials', 10)}. Epochs to "
        "random's best: epochs spent, all "
        "trials in order, until some epoch's val AUC reached random search's final best of "
        "the same seed; ÷ random's epochs: that over random search's own (per seed, then the "
        "median); n.r. = not reached within the budget (infinite in the quartiles). Cells: "
        "median [25th-75th percentile] over the seeds.",
        "",
        f"Best val AUC of the grid (any configuration, any epoch): {grid_best:.4f}; the "
        f"five best configurations' best epochs: "
        + "; ".join(f"{', '.join(str(x) for x in k if x is not None and x == x)}: {v:.4f}"
                    for k, v in top.head(5).items()) + ".",
        "",
        f"Goal (the default sampler and scheduler, TPE + ASHA, reach random search's final "
        f"best with at most 1/3 of its epochs, at the median over the seeds): {verdict}: "
        f"median ratio {med:.2f}.",
        *(["", "Levers (dashed in the plot's right panel), each against TPE + ASHA on the "
            "same seeds (÷ random's epochs, median [IQR]):", ""]
          + [f"- {line}" for line in paired] if paired else []),
        "",
        f"![best so far]({plot_path.relative_to(RESULTS)})",
        "",
        f"Command: `{run['command']}` (the reports of every search are in "
        f"`{(plot_path.parent / reports_name(page)).relative_to(REPO)}`: "
        "`--replot` rewrites this page from them).",
        *run.get("conclusion", []),
    ]
    write_table(page, f"Search efficiency on a replayed grid ({n_points} configurations x "
                f"{epochs} epochs, deepfake_faces prepared at {meta['size']} px): random, TPE, random + "
                f"ASHA, TPE + ASHA, {table[table.method == BASELINE].shape[0]} seeds each",
                header, rows, notes)


def parse_variants(items: Sequence[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        label, _, rest = item.partition("=")
        if not rest:
            raise SystemExit(f"--variant {item!r}: write 'LABEL=override override ...'")
        out[label.strip()] = shlex.split(rest)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay compare")
    parser.add_argument("--recording", default=str(RECORDING))
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--trials", type=int, default=12, help="random search's trials")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--variant-seeds", type=int, default=0, help="0: --seeds")
    parser.add_argument("--workdir", default="/tmp/replay-compare")
    parser.add_argument("--replot", action="store_true")
    parser.add_argument("--conclusion", default="", help="a file of lines to add to the notes")
    parser.add_argument("--page", default="efficiency",
                        help="the table's name under results/bench/ (and the plot's)")
    args = parser.parse_args(argv)
    curves = Curves.load(args.recording)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    variants = parse_variants(args.variant)
    methods = {**METHODS, **variants}
    seeds = {m: list(range(args.seeds)) for m in METHODS}
    seeds.update({m: list(range(args.variant_seeds or args.seeds)) for m in variants})
    run_file = workdir / "run.json"
    run = json.loads(run_file.read_text()) if run_file.is_file() else {"wall_s": 0.0}
    t0 = time.time()
    if args.replot:
        reports = pd.read_parquet(workdir / "reports.parquet")
    else:
        reports = run_all(curves, methods, seeds, args.trials, workdir)
        run["wall_s"] = run.get("wall_s", 0.0) + time.time() - t0
        run["command"] = scratch_free("python -m bench.replay compare " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[2:])))
        # the default ASHA grace the methods ran with (a replot keeps the measured one)
        run["grace_period"] = SearchConfig().grace_period
        run["reduction_factor"] = SearchConfig().reduction_factor
        run["startup_trials"] = SearchConfig(
            num_samples=args.trials * int(curves.meta["epochs"])).resolved_startup_trials()
    run.update(methods=list(methods), trials=args.trials,
               recording=str(Path(args.recording).resolve()))
    if args.conclusion:
        run["conclusion"] = ["", *Path(args.conclusion).read_text().splitlines()]
    run_file.write_text(json.dumps(run, indent=1))
    out = Path(args.recording).resolve().parent
    reports.to_parquet(out / reports_name(args.page), index=False, compression="zstd")
    report(curves, reports, run, out / f"{args.page}.png", args.page)


if __name__ == "__main__":
    main()

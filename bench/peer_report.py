"""The page of ``python -m bench.peer`` (``results/bench/peer.md``), from its saved reports.

Reads ``reports.parquet`` (every direct search, one row per trial), ``tune-slice.parquet``
(the Tune slice and whether it drew what the direct loop drew) and ``run.json`` from the
benchmark's folder, and writes the page; nothing is re-run (``python -m bench.peer
--replot``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._common import write_table
from bench.peer import BASELINE, DEFAULT, FRACTIONS
from bench.replay.compare import INF, fmt_q, quartiles, to_reach
from bench.replay.tables import BENCHMARKS, LATENCY

#: How a table's metric is printed.
FORMATS = {"hpolib": "{:.3g}", "nasbench201": "{:.2f}", "hpobench": "{:.4f}"}


def _sign(table: str) -> float:
    """+1 where the table's metric is maximised, -1 where minimised (so larger is better)."""
    from search import catalog

    return 1.0 if catalog.mode(BENCHMARKS[table.split("/")[0]]["metric"]) == "max" else -1.0


def _series(g: pd.DataFrame, sign: float) -> tuple[np.ndarray, np.ndarray]:
    g = g.sort_values("order")
    return sign * g["value"].to_numpy(), np.cumsum(g["train_s"].to_numpy())


def per_seed(reports: pd.DataFrame) -> pd.DataFrame:
    """One row per (table, method, seed): trials and train-seconds until random search's
    final best of the same seed, their ratios to random's own, and the best so far at each
    fraction of the budget (in the table's own sign)."""
    rows = []
    for table, g in reports[~reports["pareto"]].groupby("table"):
        sign = _sign(table)
        base = {s: _series(b, sign) for s, b in g[g.method == BASELINE].groupby("seed")}
        for (method, seed), h in g.groupby(["method", "seed"]):
            if seed not in base:
                continue
            values, seconds = _series(h, sign)
            rv, rs = base[seed]
            target = float(rv.max())
            r, t = to_reach(rv, target), to_reach(values, target)
            t_s = float(seconds[int(t) - 1]) if t != INF else INF
            row = {"table": table, "method": method, "seed": seed, "trials": t,
                   "ratio": t / r, "of_budget": t / len(rv), "seconds": t_s,
                   "seconds_ratio": t_s / float(rs[int(r) - 1])}
            for f in FRACTIONS:
                row[f"best@{f:.2f}"] = sign * float(values[: max(1, int(round(f * len(values))))].max())
            rows.append(row)
    return pd.DataFrame(rows)


def _table_rows(stats: pd.DataFrame, methods: list[str]) -> list[list[Any]]:
    rows = []
    for table, g in stats.groupby("table", sort=False):
        fmt = FORMATS[table.split("/")[0]]
        for method in [m for m in methods if m in set(g.method)]:
            t = g[g.method == method]
            reached = int(np.isfinite(t["trials"]).sum())
            rows.append([table, method, len(t), fmt_q(t["trials"]), fmt_q(t["ratio"], "{:.2f}"),
                         f"{reached}/{len(t)}", fmt_q(t["of_budget"], "{:.2f}"),
                         fmt_q(t["seconds"], "{:.3g}"), fmt_q(t["seconds_ratio"], "{:.2f}"),
                         *[fmt_q(t[f"best@{f:.2f}"], fmt) for f in FRACTIONS]])
    return rows


def goals(stats: pd.DataFrame) -> list[str]:
    """The issue's goal, per table: the default's median trials to random's best at most
    1/3 of random's own (the ratio) and, the literal reading, of random's budget."""
    lines, met = [], {"ratio": [], "of_budget": []}
    for table, g in stats.groupby("table", sort=False):
        t = g[g.method == DEFAULT]
        ratio, budget = quartiles(t["ratio"])[0], quartiles(t["of_budget"])[0]
        for key, value in (("ratio", ratio), ("of_budget", budget)):
            if value <= 1 / 3:
                met[key].append(table)
        lines.append(f"- {table}: ÷ random's trials {ratio:.2f} "
                     f"({'met' if ratio <= 1 / 3 else 'not met'}), ÷ random's budget "
                     f"{budget:.2f} ({'met' if budget <= 1 / 3 else 'not met'})")
    hpolib = [t for t in stats["table"].unique() if t.startswith("hpolib/")]
    for key, label in (("ratio", "÷ random's trials to its best"),
                       ("of_budget", "÷ random's budget")):
        n = sum(t in met[key] for t in hpolib)
        nb = any(t.startswith("nasbench201/") for t in met[key])
        verdict = "**met**" if n >= 3 and nb else "**not met**"
        lines.append(f"- Goal by {label}: {verdict}: {n} of {len(hpolib)} HPOLib sets, "
                     f"NAS-Bench-201 {'met' if nb else 'not met'}.")
    return lines


def levers(stats: pd.DataFrame) -> list[str]:
    """Each lever against the default on the same seeds: ÷ random's trials and final best."""
    lines = []
    for table, g in stats.groupby("table", sort=False):
        default = g[g.method == DEFAULT]
        fmt = FORMATS[table.split("/")[0]]
        for method, t in g.groupby("method", sort=False):
            if method in (BASELINE, DEFAULT):
                continue
            d = default[default.seed.isin(t.seed)]
            lines.append(f"- {table}, {method}: ÷ random's trials {fmt_q(t['ratio'], '{:.2f}')} "
                         f"against the default's {fmt_q(d['ratio'], '{:.2f}')} on the same "
                         f"{len(t)} seeds; ÷ random's budget {quartiles(t['of_budget'])[0]:.2f} "
                         f"against {quartiles(d['of_budget'])[0]:.2f}; final best "
                         f"{fmt.format(quartiles(t['best@1.00'])[0])} against "
                         f"{fmt.format(quartiles(d['best@1.00'])[0])}")
    return lines


def trimmed(reports: pd.DataFrame) -> pd.DataFrame:
    """The reports of each method's own seeds and benchmarks (``bench.peer.METHODS``): a
    run stopped and resumed with fewer lever seeds keeps what the page describes."""
    from bench.peer import METHODS

    keep = pd.Series(True, index=reports.index)
    for name, how in METHODS.items():
        mine = reports.method == name
        if how.seeds:
            keep &= ~(mine & (reports.seed >= how.seeds))
        if how.benches:
            keep &= ~(mine & ~reports.table.str.split("/").str[0].isin(how.benches))
    return reports[keep]


def hypervolume(acc: np.ndarray, latency: np.ndarray, ref: tuple[float, float]) -> float:
    """The 2-D hypervolume of points (accuracy, max; latency, min) against ``ref``
    (worst accuracy, worst latency): the area they dominate."""
    keep = (acc > ref[0]) & (latency < ref[1])
    order = np.argsort(latency[keep], kind="stable")
    hv, best = 0.0, ref[0]
    for a, lat in zip(acc[keep][order], latency[keep][order]):
        if a > best:
            hv += (ref[1] - lat) * (a - best)
            best = a
    return hv


def pareto_lines(reports: pd.DataFrame) -> list[str]:
    """The Pareto search: each method's hypervolume after 1/4, 1/2 and all of the budget,
    and the default's against random's on the same seeds."""
    mo = reports[reports["pareto"]]
    if mo.empty:
        return []
    ref = (float(mo["value"].min()), float(mo[LATENCY].max()))
    rows, per = [], {}
    for (method, seed), g in mo.groupby(["method", "seed"]):
        g = g.sort_values("order")
        n = len(g)
        per[(method, seed)] = [hypervolume(g["value"].to_numpy()[:k], g[LATENCY].to_numpy()[:k],
                                           ref) for k in (n // 4, n // 2, n)]
    lines = ["| method | seeds | hypervolume after 1/4 | after 1/2 | after all | ÷ random's, same "
             "seed (all) | seeds above random |", "|---|---|---|---|---|---|---|"]
    for method in (BASELINE, DEFAULT):
        seeds = sorted(s for m, s in per if m == method)
        hv = np.array([per[(method, s)] for s in seeds])
        ratio = [per[(method, s)][2] / per[(BASELINE, s)][2] for s in seeds]
        above = sum(per[(method, s)][2] > per[(BASELINE, s)][2] for s in seeds)
        rows.append(f"| {method} | {len(seeds)} | {fmt_q(hv[:, 0], '{:.1f}')} | "
                    f"{fmt_q(hv[:, 1], '{:.1f}')} | {fmt_q(hv[:, 2], '{:.1f}')} | "
                    f"{fmt_q(ratio, '{:.3f}')} | {above}/{len(seeds)} |")
    return [*lines, *rows, "", f"Reference point: the worst accuracy and the largest latency "
            f"any search saw ({ref[0]:.2f} %, {ref[1]:.2f} ms); hypervolume in % x ms."]


def slice_agrees(tune: pd.DataFrame, reports: pd.DataFrame) -> pd.Series:
    """For each search of the Tune slice: whether the direct loop, same table, method and
    seed, drew the same configurations in the same order (its first as many)."""
    def same(row: Any) -> bool:
        mine = reports[(reports.table == row.table) & (reports.method == row.method)
                       & (reports.seed == row.seed) & (reports.pareto == row.pareto)]
        drawn = mine.sort_values("order")["config"].tolist()[: len(row.configs)]
        return len(drawn) == len(row.configs) and drawn == list(row.configs)

    return pd.Series([same(r) for r in tune.itertuples()], index=tune.index, dtype=bool)


def slice_lines(tune: pd.DataFrame, reports: pd.DataFrame) -> list[str]:
    """The Tune slice: how many searches drew what the direct loop drew."""
    if tune.empty:
        return ["No Tune slice was run."]
    tune = tune.assign(same=slice_agrees(tune, reports))
    same = int(tune["same"].sum())
    per_trial = (tune["wall_s"] / tune["trials"]).median()
    differ = tune[~tune["same"]]
    out = [f"{same} of {len(tune)} searches through Tune ({tune['trials'].sum()} trials: "
           f"{', '.join(sorted(tune['table'].unique()))}; random and the default TPE, seeds "
           f"{sorted(int(s) for s in tune['seed'].unique())}, {int(tune['trials'].max())} trials each, and "
           f"the Pareto search) drew the same configurations in the same order as the direct "
           f"loop on the same seed; {per_trial:.2f} s of wall per Tune trial (median)."]
    if len(differ):
        out.append("Differed: " + "; ".join(f"{r.table} {r.method} seed {r.seed}"
                                            for r in differ.itertuples()))
    return out


def write_page(workdir: Path) -> Path:
    """``results/bench/peer.md`` from ``workdir``'s reports."""
    from bench.peer_text import COMMENTARY

    run = json.loads((workdir / "run.json").read_text())
    reports = trimmed(pd.read_parquet(workdir / "reports.parquet"))
    path = workdir / "tune-slice.parquet"
    tune = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
    stats = per_seed(reports)
    methods = list(dict.fromkeys([BASELINE, DEFAULT, *reports["method"].unique()]))
    header = ["table", "method", "seeds", "trials to random's best", "÷ random's trials",
              "reached", "÷ random's budget", "train-s to random's best", "÷ random's train-s",
              *[f"best after {f} of the budget" for f in ("1/4", "1/3", "1/2", "all")]]
    notes = [
        f"Measured {run['date']} on {run['machine']}; wall {run['wall_s'] / 60:.1f} min "
        f"({run['direct_wall_s'] / 60:.1f} of it the direct searches, {run['jobs']} processes "
        f"at nice 10{run.get('load', '')})"
        + (f", and {run['slice_wall_s'] / 60:.1f} min for the Tune slice beside them"
           if run.get("slice_wall_s") else "")
        + f". Command: `{run['command']}`; "
        "`python -m bench.peer --replot` rebuilds this page from `results/bench/peer/`.",
        "", f"Budget: {run['trials']} trials per search, one at a time. Cells: median "
        "[25th-75th percentile] over the seeds; n.r. = not reached within the budget.",
        "", "## Goals", "", *goals(stats),
        "", "## Levers, each against the default on the same seeds", "", *levers(stats),
        "", "## Through Tune, and outside it", "", *slice_lines(tune, reports),
        "", "## Multi-objective: NAS-Bench-201 CIFAR-10, val_acc against latency", "",
        *pareto_lines(reports), "", *COMMENTARY]
    return write_table("peer", "The project's search on a peer's benchmark: HPOLib, "
                       "NAS-Bench-201, HPOBench tables", header, _table_rows(stats, methods),
                       notes)


__all__ = ["goals", "hypervolume", "levers", "pareto_lines", "per_seed", "slice_agrees",
           "trimmed", "write_page"]

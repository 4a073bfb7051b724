"""Benchmark search efficiency: TPE + ASHA against random search without early stopping.

    python -m bench.efficiency [--seeds 0 1 2] [--trials 6] [--epochs 4] [--tpe-trials 12]
        [--images 6000] [--size 32] [--grace-period 1] [--reduction-factor 3]
        [--variant search.grace_period=2 ...] [--keep DIR]
    python -m bench.efficiency --replot DIR   # the table again from a --keep folder
    python -m bench.efficiency --replot DIR --variant search.grace_period=2   # + a variant

(``--replot`` also prints a ``conclusion`` list of lines from DIR/efficiency-run.json under
the figures: the reading of a run, written by hand after it.)

Where samplers can differ: real deepfake_faces faces (a class-stratified subset of
``--images``, grouped 6:2:2 split) at 32 px, where the learning rate, the architecture and
the layer settings move validation AUC from chance to ~0.7, not the demo set (random search
reaches 0.99 there). Both searches get the same space and, per seed, the same experiment
seed: the sampler, the weight init and the data order all follow it (so TPE's first, random
startup trials are random search's first trials: a paired comparison).

The budget is counted in epochs trained, in trial start order (trials run one at a time):
random search trains every trial to the end; TPE + ASHA samples twice as many trials, most
stopped after ``--grace-period`` epochs. Reported per seed and as median [range] over seeds:
random search's best validation AUC and the epochs each search needed to reach it (and it
less 0.01 and 0.02). Goal (issue 11): TPE + ASHA at most a third of random's budget.
``--variant`` runs one more TPE + ASHA search on one seed (``--variant-seed``, default the
first) with those overrides (e.g. ``search.grace_period=2``), reported as such.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench._common import SHARED, write_table

SPACE = ("search.space={arch: [custom_cnn, resnet10t], ratio: ['1:1', '1:2'], "
         "lr: {low: 1.0e-5, high: 1.0e-1, log: true}, conv_blocks: {low: 2, high: 4}, "
         "base_width: [16, 32], kernel_size: 3, dense_units: [64, 128], batch_size: 64, "
         "frozen_stages: 0}")
TARGETS = (("random's best", 0.0), ("best - 0.01", 0.01), ("best - 0.02", 0.02))
BEST = TARGETS[0][0]
INF = float("inf")
RUN_FILE = "efficiency-run.json"


def start_order(history: pd.DataFrame) -> list[str]:
    """Trial ids in the order they started: first report's time less the time it had run."""
    first = history.sort_values("epoch").groupby("trial_id").first()
    return list((first["timestamp"] - first["time_total_s"]).sort_values().index)


def budget_to_reach(history: pd.DataFrame, target: float) -> float:
    """Epochs spent, in trial start order, until some epoch's val_auc reached target."""
    spent = 0
    for tid in start_order(history):
        for auc in history[history.trial_id == tid].sort_values("epoch")["val_auc"]:
            spent += 1
            if auc >= target - 1e-12:
                return spent
    return INF


def trajectory(history: pd.DataFrame) -> str:
    """Each trial in start order: 'arch lr: epochs trained, best val AUC'."""
    parts = []
    for tid in start_order(history):
        h = history[history.trial_id == tid]
        arch = {"custom_cnn": "cnn", "resnet10t": "r10t"}.get(h["arch"].iloc[0], h["arch"].iloc[0])
        parts.append(f"{arch} {h['lr_param'].iloc[0]:.0e}: {len(h)}, {h['val_auc'].max():.3f}")
    return "; ".join(parts)


def search(args, shards: Path, root: Path, name: str, algo: str, sched: str, n: int, seed: int,
           extra: list[str]) -> pd.DataFrame:
    """One search; its history (one row per trial-epoch, with arch and lr), saved under root."""
    from search.config import load_config
    from search.study import run_search

    cfg = load_config(None, [
        f"data.shards={shards}", f"cluster.storage_path={root / 'results'}", "cluster.address=local",
        f"model.input_size={args.size}", "model.pretrained=false", f"optim.epochs={args.epochs}",
        "optim.batch_size=64", "cluster.use_gpu=false", "cluster.num_workers=1",
        "cluster.cpus_per_worker=1", "cluster.data_cpus=1", f"cluster.threads={args.threads}",
        "cluster.max_concurrent_trials=1", f"search.name={name}", f"search.num_samples={n}",
        f"search.grace_period={args.grace_period}", f"search.reduction_factor={args.reduction_factor}",
        f"search.algorithm={algo}", f"search.scheduler={sched}", f"seed={seed}", SPACE, *extra])
    t0 = time.time()
    out = run_search(cfg, evaluate_test=False)
    params = out.trials.set_index("trial_id")[["arch", "lr"]].rename(columns={"lr": "lr_param"})
    hist = out.history.join(params, on="trial_id").assign(wall_s=time.time() - t0)
    hist.to_parquet(root / f"{name}.parquet", index=False)
    return hist


def compare(rand: pd.DataFrame, tpe: pd.DataFrame) -> dict:
    """Budgets of both searches to random's best (and less 0.01, 0.02), totals, walls."""
    best = float(rand["val_auc"].max())
    out = {"best": best, "tpe_best": float(tpe["val_auc"].max()),
           "totals": (len(rand), len(tpe)), "wall": (rand.wall_s.iloc[0], tpe.wall_s.iloc[0])}
    for label, less in TARGETS:
        r, t = budget_to_reach(rand, best - less), budget_to_reach(tpe, best - less)
        out[label] = (r, t, t / r if t != INF else INF)
    return out


def rank_agreement(rands: list[pd.DataFrame], epochs: int) -> dict[int, float]:
    """Spearman correlation, over random search's full-length trials (per seed, then the
    median), between val AUC at epoch g and at the last epoch: how well a rung at g ranks."""
    out = {}
    for g in range(1, epochs):
        rhos = []
        for h in rands:
            wide = h.pivot_table(index="trial_id", columns="epoch", values="val_auc")
            if g in wide and epochs in wide and len(wide.dropna()) >= 3:
                rhos.append(wide[g].corr(wide[epochs], method="spearman"))
        if rhos:
            out[g] = float(statistics.median(rhos))
    return out


def fmt_budget(b: float) -> str:
    return "n.r." if b == INF else f"{b:.0f}"


def fmt_ratio(q: float) -> str:
    return "n.r." if q == INF else f"{q:.2f}"


def spread(values: list[float], fmt=fmt_ratio) -> str:
    """median [min-max]; not reached counts as infinite."""
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"


def best_position(h: pd.DataFrame) -> str:
    """'trial k, epoch e' of a search's best epoch."""
    row = h.loc[h["val_auc"].idxmax()]
    return f"trial {start_order(h).index(row['trial_id']) + 1}, epoch {int(row['epoch'])}"


def report(run: dict, root: Path) -> None:
    args = argparse.Namespace(**run["args"])
    stamp, tpe_n = run["stamp"], run["tpe_trials"]
    rands = {s: pd.read_parquet(root / f"random-s{s}-{stamp}.parquet") for s in args.seeds}
    tpes = {s: pd.read_parquet(root / f"tpe_asha-s{s}-{stamp}.parquet") for s in args.seeds}
    per_seed = {s: compare(rands[s], tpes[s]) for s in args.seeds}
    cs = list(per_seed.values())

    header = ["seed", "random best val AUC", "TPE+ASHA best", "epochs in all R / T"]
    for label, _ in TARGETS:
        header += [f"to {label}: R / T", "T/R"]

    def row(name, c):
        cells = [name, c["best"], c["tpe_best"], f"{c['totals'][0]} / {c['totals'][1]}"]
        for label, _ in TARGETS:
            r, t, q = c[label]
            cells += [f"{fmt_budget(r)} / {fmt_budget(t)}", fmt_ratio(q)]
        return cells

    def f3(v):
        return f"{v:.3f}"

    rows = [row(str(s), c) for s, c in per_seed.items()]
    agg = ["median [range]", spread([c["best"] for c in cs], f3), spread([c["tpe_best"] for c in cs], f3),
           f"{spread([c['totals'][0] for c in cs], fmt_budget)} / "
           f"{spread([c['totals'][1] for c in cs], fmt_budget)}"]
    for label, _ in TARGETS:
        agg += [f"{spread([c[label][0] for c in cs], fmt_budget)} / "
                f"{spread([c[label][1] for c in cs], fmt_budget)}", spread([c[label][2] for c in cs])]
    rows.append(agg)
    var_note = []
    if run.get("variant"):
        s = run.get("variant_seed", args.seeds[0])
        var = pd.read_parquet(root / f"variant-s{s}-{stamp}.parquet")
        v = compare(rands[s], var)
        rows.append(row(f"variant, seed {s}: {', '.join(run['variant'])}", v))
        var_note = [f"- variant, seed {s} ({', '.join(run['variant'])}): {trajectory(var)}"]

    med = {label: statistics.median(c[label][2] for c in cs) for label, _ in TARGETS}
    met = med[BEST] <= 1 / 3
    rho = rank_agreement(list(rands.values()), args.epochs)
    stopped = [int((h.groupby("trial_id").size() <= args.grace_period).sum()) for h in tpes.values()]
    title = (f"Search efficiency on deepfake_faces at {args.size} px ({args.images} images): "
             f"random {args.trials} trials x {args.epochs} epochs vs TPE + ASHA {tpe_n} trials "
             f"(grace {args.grace_period}, reduction factor {args.reduction_factor}), "
             f"{len(args.seeds)} seeds")
    walls = "; ".join(f"seed {s}: {c['wall'][0]:.0f} s / {c['wall'][1]:.0f} s" for s, c in per_seed.items())
    shows = (
        f"Goal (TPE + ASHA reaches random search's best val AUC with at most a third of its "
        f"epochs): **{'met' if met else 'not met'}**: median T/R {fmt_ratio(med[BEST])} "
        f"(per seed {', '.join(fmt_ratio(c[BEST][2]) for c in cs)}); to within 0.01 "
        f"{fmt_ratio(med['best - 0.01'])}, within 0.02 {fmt_ratio(med['best - 0.02'])}. "
        f"Random search's best came at "
        f"{'; '.join(f'seed {s}: {best_position(h)}' for s, h in rands.items())}. TPE + ASHA's best val AUC was "
        f"{', '.join(f3(c['tpe_best']) for c in cs)} against random's "
        f"{', '.join(f3(c['best']) for c in cs)}, with ASHA stopping "
        f"{', '.join(map(str, stopped))} of {tpe_n} trials at the grace period. "
        f"How well an early epoch ranks trials (Spearman, val AUC at epoch g vs epoch "
        f"{args.epochs}, random search's trials, median over seeds): "
        f"{', '.join(f'g={g}: {r:.2f}' for g, r in rho.items())}.")
    notes = [
        f"Command: `{run['command']}`  ",
        *([f"Variant: `{run['variant_command']}` ({run['variant_wall_s'] / 60:.1f} min)  "]
          if run.get("variant_command") else []),
        f"Wall time: {run['wall_s'] / 60:.1f} min in all (random / TPE + ASHA per seed: {walls}), "
        "on a 2-core machine shared with another search, under nice.",
        "",
        "R / T: epochs trained, in trial start order, until some epoch's val AUC reached the "
        "target (random search's own best, less 0, 0.01, 0.02) by random search (R) and "
        "TPE + ASHA (T); T/R their ratio, n.r. = not reached in the budget (counted as "
        "infinite in medians). Same space, same seed per row (sampler, init, data order).",
        "",
        "## What this shows",
        "",
        shows,
        *([""] + run["conclusion"] if run.get("conclusion") else []),
        "",
        "Trials in start order (architecture, learning rate: epochs trained, best val AUC):",
        "",
        *[f"- seed {s}: random: {trajectory(rands[s])}" for s in args.seeds],
        *[f"- seed {s}: TPE + ASHA: {trajectory(tpes[s])}" for s in args.seeds],
        *var_note,
    ]
    write_table("efficiency", title, header, rows, notes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=6, help="random search's trials")
    parser.add_argument("--tpe-trials", type=int, default=0,
                        help="TPE + ASHA's trials (default 2x --trials: ASHA stops most early)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of a trial")
    parser.add_argument("--source", default=str(SHARED / "deepfake_faces"))
    parser.add_argument("--variant", nargs="*", default=[],
                        help="overrides of one more TPE + ASHA search on one seed")
    parser.add_argument("--variant-seed", type=int, default=None,
                        help="the seed of the --variant search (default: the first)")
    parser.add_argument("--keep", default="", help="folder for shards, results and histories "
                        "(default: a temporary one)")
    parser.add_argument("--replot", default="", help="rewrite the table from a --keep folder "
                        "(with --variant: run that variant on its first seed first)")
    args = parser.parse_args()
    if args.replot:
        root = Path(args.replot)
        run = json.loads((root / RUN_FILE).read_text())
        if args.variant:  # one more TPE + ASHA search beside a finished run's first seed
            first = argparse.Namespace(**run["args"])
            seed = first.seeds[0] if args.variant_seed is None else args.variant_seed
            shards = root / f"shards-{first.size}-{first.images}"
            t0 = time.time()
            search(first, shards, root, f"variant-s{seed}-{run['stamp']}", "tpe", "asha",
                   run["tpe_trials"], seed, list(args.variant))
            run.update(variant=list(args.variant), variant_seed=seed, variant_wall_s=time.time() - t0,
                       variant_command="python -m bench.efficiency "
                       + " ".join(shlex.quote(a) for a in sys.argv[1:]))
            (root / RUN_FILE).write_text(json.dumps(run, indent=1))
        report(run, root)
        return
    tpe_n = args.tpe_trials or 2 * args.trials
    run = {"args": vars(args), "tpe_trials": tpe_n, "stamp": time.strftime("%H%M%S"),
           "variant": list(args.variant),
           "command": "python -m bench.efficiency " + " ".join(shlex.quote(a) for a in sys.argv[1:])}

    from search.data.prepare import PrepareOptions, prepare

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        shards = root / f"shards-{args.size}-{args.images}"
        prepare(PrepareOptions(layout="deepfake_faces", source=args.source, out=str(shards),
                               size=args.size, limit=args.images, seed=0, workers=1), progress=False)
        stamp = run["stamp"]
        for seed in args.seeds:
            search(args, shards, root, f"random-s{seed}-{stamp}", "random", "none", args.trials, seed, [])
            search(args, shards, root, f"tpe_asha-s{seed}-{stamp}", "tpe", "asha", tpe_n, seed, [])
        if args.variant:
            seed = args.seeds[0] if args.variant_seed is None else args.variant_seed
            run["variant_seed"] = seed
            search(args, shards, root, f"variant-s{seed}-{stamp}", "tpe", "asha", tpe_n, seed,
                   list(args.variant))
        run["wall_s"] = time.time() - t0
        (root / RUN_FILE).write_text(json.dumps(run, indent=1))
        report(run, root)


if __name__ == "__main__":
    main()

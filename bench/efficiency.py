"""Benchmark search efficiency: TPE + ASHA against random search without early stopping.

    python -m bench.efficiency [--trials 12] [--epochs 4] [--tpe-trials 24]

Same data (the demo set, 2,000 images at 64 px by default) and space. The budget is counted
in epochs trained (the resource both spend): random search trains every trial to the end;
TPE + ASHA samples twice as many trials (ASHA stops most of them after an epoch or two) and
its total is reported beside random's. Reports the budget, in trial start order, that each
needed to reach random search's best validation AUC and nearby targets. Goal (issue:
search): at most a third.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from bench._common import write_table


def budget_to_reach(history: pd.DataFrame, trials: pd.DataFrame, target: float) -> float:
    """Epochs spent, in trial start order, until some epoch's val_auc reached target."""
    spent = 0
    # Start order: when each trial's first epoch was reported, less the time it had run.
    first = history.sort_values("epoch").groupby("trial_id").first()
    order = (first["timestamp"] - first["time_total_s"]).sort_values().index
    for tid in order:
        h = history[history.trial_id == tid].sort_values("epoch")
        for _, row in h.iterrows():
            spent += 1
            if row["val_auc"] >= target:
                return spent
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12, help="random search's trials")
    parser.add_argument("--tpe-trials", type=int, default=0,
                        help="TPE + ASHA's trials (default 2x --trials: ASHA stops most early)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    from search.config import load_config
    from search.data.prepare import PrepareOptions, prepare
    from search.tune.tuner import run_search

    space = ("search.space={arch: [custom_cnn, resnet10t], ratio: ['1:1', '1:2'], "
             "lr: {low: 1.0e-5, high: 1.0e-1, log: true}, batch_size: 64, frozen_stages: 0}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(PrepareOptions(layout="demo", source=str(tmp / "src"), out=str(tmp / "shards"),
                               size=args.size, demo_images=args.images), progress=False)
        out = {}
        tpe_trials = args.tpe_trials or 2 * args.trials
        for name, algo, sched, n in (("random", "random", "none", args.trials),
                                     ("tpe_asha", "tpe", "asha", tpe_trials)):
            cfg = load_config(None, [
                f"data.shards={tmp / 'shards'}", f"cluster.storage_path={tmp / 'results'}",
                f"model.input_size={args.size}", f"optim.epochs={args.epochs}", "cluster.data_cpus=1",
                f"search.name={name}", f"search.num_samples={n}", "search.grace_period=1",
                f"search.reduction_factor={args.reduction_factor}",
                f"search.algorithm={algo}", f"search.scheduler={sched}", "seed=1", space])
            o = run_search(cfg, evaluate_test=False)
            out[name] = (o.trials, o.history)
    rand_trials, rand_hist = out["random"]
    tpe_trials, tpe_hist = out["tpe_asha"]
    best = float(rand_hist["val_auc"].max())
    rows = [["random, no early stopping", len(rand_hist), best, "-", "-", "-"],
            ["TPE + ASHA", len(tpe_hist), float(tpe_hist["val_auc"].max()), "-", "-", "-"]]
    # The exact target is brittle (one lucky trial); near-targets say more of the same run.
    for label, target in (("random's best", best), ("random's best - 0.01", best - 0.01),
                          ("AUC 0.95", 0.95), ("AUC 0.90", 0.90)):
        r = budget_to_reach(rand_hist, rand_trials, target)
        t = budget_to_reach(tpe_hist, tpe_trials, target)
        ratio = f"{t / r:.2f}" if r != float("inf") and t != float("inf") else "not reached"
        rows.append([f"epochs to reach {label} ({target:.4f})", "-", "-", r, t, ratio])
    write_table("efficiency", f"Search efficiency: random {args.trials} trials x {args.epochs} epochs "
                f"vs TPE + ASHA {tpe_trials} trials x up to {args.epochs} "
                f"(reduction factor {args.reduction_factor}), demo set {args.images} images at {args.size} px",
                ["", "epochs spent in all", "best val AUC", "random", "TPE + ASHA",
                 "ratio (TPE+ASHA / random)"], rows,
                ["Budget = epochs trained, counted in trial start order until some epoch's "
                 "val_auc reaches the target.",
                 "Goal: ratio <= 0.33 for random's best. One seed on a small set: a single "
                 "run, not a distribution."])


if __name__ == "__main__":
    main()

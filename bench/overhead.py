"""Benchmark the search's fixed costs: N short trials as plain PyTorch loops vs through the system.

    python -m bench.overhead [--trials 3] [--epochs 3] [--before /tmp/before]

(a) one process: read the demo shards with pyarrow, decode with Pillow, train the custom CNN;
(b) the same trials through deepfake-search (Tune + Train + Ray Data, FIFO, no early stop).
Reports the fixed cost per trial (wall time outside the epochs) and per epoch (epoch time
minus the plain loop's epoch time). ``--before CHECKOUT`` measures another checkout's code
in the same run (ratios, not absolute times, carry over on a VM whose speed drifts). Goal (issue: search): <= 10 s per trial and <= 1 s per
epoch on this machine; < 5% of a 10-minute trial on a GPU.
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

import numpy as np
import pandas as pd
import torch

from bench._common import write_table

SIZE = 32


def plain_trial(shards: Path, epochs: int, lr: float, seed: int) -> list[float]:
    """A minimal loop with the same model, data and batch size: epoch wall times."""
    import pyarrow.parquet as pq

    from search.data.stream import DecodeBatch, Normalize
    from search.model.registry import create_model

    torch.manual_seed(seed)
    model = create_model("custom_cnn", input_size=SIZE, conv_blocks=2, base_width=8, dense_units=32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    decode, normalize = DecodeBatch(SIZE), Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for split in ("train", "val"):
            for f in sorted(shards.glob(f"{split}-*.parquet")):
                table = pq.read_table(f, columns=["image", "label", "id"]).to_pydict()
                for s in range(0, len(table["id"]), 64):
                    batch = {k: np.asarray(v[s:s + 64], dtype=object) for k, v in table.items()}
                    out = decode(batch)
                    x, y = normalize(out["image"]), torch.from_numpy(out["label"])
                    if split == "train":
                        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y)
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                    else:
                        with torch.no_grad():
                            model(x)
        times.append(time.perf_counter() - t0)
    return times


def measure(trials: int, epochs: int, extra: list[str]) -> dict[str, float]:
    """Plain loops vs the same trials through the search (1 and N trials, FIFO, no stop)."""
    from search.config import load_config
    from search.data.prepare import PrepareOptions, prepare
    from search.study import run_search
    from search.train.driver import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(PrepareOptions(layout="demo", source=str(tmp / "src"), out=str(tmp / "shards"),
                               size=SIZE, demo_images=600), progress=False)
        t0 = time.perf_counter()
        plain = [plain_trial(tmp / "shards", epochs, 3e-3, s) for s in range(trials)]
        plain_wall = time.perf_counter() - t0
        walls, outcome = {}, None
        # The same search with 1 and with N trials: the slope is the true marginal cost of a
        # trial (start, epochs, teardown, Tune's gaps); the rest is the search's own start/end.
        # Ray is started first, so that neither search pays for it.
        for n in (0, 1, trials):
            cfg = load_config(None, [
                f"data.shards={tmp / 'shards'}", f"cluster.storage_path={tmp / 'results'}",
                f"model.input_size={SIZE}", "optim.batch_size=64", f"optim.epochs={epochs}",
                f"search.name=overhead{n}", f"search.num_samples={max(n, 1)}", "search.scheduler=none",
                "search.algorithm=random", "cluster.data_cpus=1", "cluster.max_concurrent_trials=1",
                "search.space={arch: custom_cnn, conv_blocks: 2, base_width: 8, dense_units: 32, "
                "lr: 0.003, ratio: natural, batch_size: 64, kernel_size: 3, dropout: 0.5, batch_norm: true}",
                *extra,
            ])
            if n == 0:
                init_ray(cfg)
                continue
            t0 = time.perf_counter()
            outcome = run_search(cfg)
            walls[n] = time.perf_counter() - t0
        hist = outcome.history
    plain_epoch = float(np.mean([t for tr in plain for t in tr]))
    per_trial = (walls[trials] - walls[1]) / max(trials - 1, 1)
    later = hist[hist["epoch"] > 1]
    waits = hist.groupby(hist["epoch"] > 1)["data_first_batch_s"].mean()
    return {
        "plain_epoch": plain_epoch, "plain_trial": plain_wall / trials, "per_trial": per_trial,
        "first_epoch": float(hist.groupby("trial_id")["epoch_time_s"].first().mean()),
        "first_wait": float(waits.get(False, float("nan"))),
        "later_epoch": float(later["epoch_time_s"].mean()) if len(later) else float("nan"),
        "later_wait": float(waits.get(True, float("nan"))),
        "epochs_per_trial": float(hist.groupby("trial_id")["epoch_time_s"].sum().mean()),
        "once": walls[1] - per_trial,
    }


def rows_for(m: dict[str, float]) -> list[tuple[str, float]]:
    """The table's rows from one :func:`measure`."""
    return [
        ("plain loop: one epoch (train + val)", m["plain_epoch"]),
        ("plain loop: one trial", m["plain_trial"]),
        ("system: one trial, marginal wall (slope of 1 vs N trials)", m["per_trial"]),
        ("system: first epoch (mean)", m["first_epoch"]),
        ("  of which waiting for the first batch", m["first_wait"]),
        ("system: later epochs (mean)", m["later_epoch"]),
        ("  of which waiting for the first batch", m["later_wait"]),
        ("**fixed cost per trial** (marginal wall - its epochs; goal <= 10 s)",
         m["per_trial"] - m["epochs_per_trial"]),
        ("**fixed cost per later epoch** (vs plain epoch; goal <= 1 s)",
         m["later_epoch"] - m["plain_epoch"]),
        ("once per search: start-up and end", m["once"]),
    ]


def measure_elsewhere(src: str, trials: int, epochs: int) -> dict[str, float]:
    """:func:`measure` with the ``search`` package of another checkout (e.g. the code before
    a change), in a subprocess: before and after come from the same hour of the same machine."""
    # This file's measure(), run against the other checkout's package (first on the path).
    code = ("import importlib.util, json; "
            f"spec = importlib.util.spec_from_file_location('overhead', {str(Path(__file__).resolve())!r}); "
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); "
            f"print('RESULT' + json.dumps(mod.measure({trials}, {epochs}, [])))")
    env = {**os.environ, "PYTHONPATH": src}
    # From the checkout's own folder: a script's folder comes before PYTHONPATH on sys.path.
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=src).stdout
    return json.loads(next(x for x in out.splitlines() if x.startswith("RESULT"))[6:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--before", metavar="CHECKOUT", help="also measure this checkout's "
                        "search package (git worktree add /tmp/before <commit>)")
    parser.add_argument("--before-label", default="before")
    args = parser.parse_args()
    runs: dict[str, dict[str, float]] = {}
    if args.before:
        runs[args.before_label] = measure_elsewhere(args.before, args.trials, args.epochs)
    runs["now (1 thread)"] = measure(args.trials, args.epochs, ["cluster.threads=1"])
    runs["now (2 threads)"] = measure(args.trials, args.epochs, ["cluster.threads=2"])
    labels = list(runs)
    table = [rows_for(runs[k]) for k in labels]
    rows = [[name, *(t[i][1] for t in table)] for i, (name, _) in enumerate(table[0])]
    if args.before:
        base = runs[args.before_label]["per_trial"] - runs[args.before_label]["epochs_per_trial"]
        now = runs[labels[1]]["per_trial"] - runs[labels[1]]["epochs_per_trial"]
        # A difference, not a ratio: the new cost is within the slope's noise of zero.
        rows.append(["fixed cost per trial, before - now (1 thread)", *([""] * (len(labels) - 1)),
                     f"{base - now:.1f} s"])
    write_table("overhead", f"Search overhead: {args.trials} trials x {args.epochs} epochs, "
                f"custom CNN, demo set at {SIZE} px",
                ["what (seconds)", *labels], rows,
                ["Trials run one at a time (max_concurrent_trials=1, data_cpus=1). Ray is "
                 "started before either search is timed. Columns measured one after the other "
                 "in one run of this script; 'before' is the code at the commit named below.",
                 pd.Timestamp.now(tz="UTC").strftime("Measured %Y-%m-%d %H:%M UTC.")])


if __name__ == "__main__":
    main()

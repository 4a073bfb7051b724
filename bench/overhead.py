"""Benchmark the search's fixed costs: N short trials as plain PyTorch loops vs through the system.

    python -m bench.overhead [--trials 3] [--epochs 3]

(a) one process: read the demo shards with pyarrow, decode with Pillow, train the custom CNN;
(b) the same trials through deepfake-search (Tune + Train + Ray Data, FIFO, no early stop).
Reports the fixed cost per trial (wall time outside the epochs) and per epoch (epoch time
minus the plain loop's epoch time). Goal (issue: search): <= 10 s per trial and <= 1 s per
epoch on this machine; < 5% of a 10-minute trial on a GPU.
"""

from __future__ import annotations

import argparse
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
    from search.train.models import create_model

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from search.config import load_config
    from search.data.prepare import PrepareOptions, prepare
    from search.tune.tuner import run_search

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(PrepareOptions(layout="demo", source=str(tmp / "src"), out=str(tmp / "shards"),
                               size=SIZE, demo_images=600), progress=False)
        t0 = time.perf_counter()
        plain = [plain_trial(tmp / "shards", args.epochs, 3e-3, s) for s in range(args.trials)]
        plain_wall = time.perf_counter() - t0
        walls, outcome = {}, None
        # The same search with 1 and with N trials: the slope is the true marginal cost of a
        # trial (start, epochs, teardown, Tune's gaps); the rest is the search's own start/end.
        for n in (1, args.trials):
            cfg = load_config(None, [
                f"data.shards={tmp / 'shards'}", f"cluster.storage_path={tmp / 'results'}",
                f"model.input_size={SIZE}", "optim.batch_size=64", f"optim.epochs={args.epochs}",
                f"search.name=overhead{n}", f"search.num_samples={n}", "search.scheduler=none",
                "search.algorithm=random", "cluster.data_cpus=1", "cluster.max_concurrent_trials=1",
                "search.space={arch: custom_cnn, conv_blocks: 2, base_width: 8, dense_units: 32, "
                "lr: 0.003, ratio: natural, batch_size: 64, kernel_size: 3, dropout: 0.5, batch_norm: true}",
            ])
            t0 = time.perf_counter()
            outcome = run_search(cfg)
            walls[n] = time.perf_counter() - t0
        hist = outcome.history
    plain_epoch = float(np.mean([t for tr in plain for t in tr]))
    per_trial = (walls[args.trials] - walls[1]) / max(args.trials - 1, 1)
    epochs_per_trial = float(hist.groupby("trial_id")["epoch_time_s"].sum().mean())
    first = hist.groupby("trial_id")["epoch_time_s"].first().to_numpy()
    later = hist[hist["epoch"] > 1]["epoch_time_s"].to_numpy()
    later_mean = float(np.mean(later)) if len(later) else float("nan")
    waits = hist.groupby(hist["epoch"] > 1)["data_first_batch_s"].mean()
    rows = [
        ["plain loop: one epoch (train + val)", plain_epoch, "-"],
        ["plain loop: one trial", plain_wall / args.trials, "-"],
        ["system: one trial, marginal wall (slope of 1 vs N trials)", per_trial,
         f"{per_trial / (plain_wall / args.trials):.0f}x plain"],
        ["system: first epoch (mean)", float(np.mean(first)), "-"],
        ["  of which waiting for the first batch", float(waits.get(False, float("nan"))), "-"],
        ["system: later epochs (mean)", later_mean, "-"],
        ["  of which waiting for the first batch", float(waits.get(True, float("nan"))), "-"],
        ["**fixed cost per trial** (marginal wall - its epochs)", per_trial - epochs_per_trial,
         "goal <= 10 s"],
        ["**fixed cost per later epoch** (vs plain epoch)", later_mean - plain_epoch, "goal <= 1 s"],
        ["once per search: start-up and end", walls[1] - per_trial,
         "Tune set-up, finalists' test evaluation, tables, importances"],
    ]
    write_table("overhead", f"Search overhead: {args.trials} trials x {args.epochs} epochs, custom CNN, demo set at {SIZE} px",
                ["what", "seconds", "note"], rows,
                ["Trials run one at a time (max_concurrent_trials=1). The 1-trial search runs "
                 "first and pays ray.init.",
                 pd.Timestamp.now(tz="UTC").strftime("Measured %Y-%m-%d %H:%M UTC.")])


if __name__ == "__main__":
    main()

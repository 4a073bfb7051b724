"""Benchmark the data path: Pillow loop vs torch DataLoader vs this project's Ray Data stream.

    python -m bench.pipeline [--images N]

All three deliver the same thing: 224 px deepfake_faces JPEGs decoded, flipped and normalised
to float32 NCHW batches of 64. Goal (issue: training): (c) >= 1.0x (b) and >= 0.7 x cores x (a)
on this machine. Each is run twice; the second pass (steady state) is what is compared, the
first pass's extra time is the start-up.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench._common import SHARED, write_table
from search.data.images import decode_to_array

MEAN, STD, SIZE, BATCH = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224, 64


def _normalise(arr: np.ndarray) -> np.ndarray:
    x = arr[:, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
    return (x - np.asarray(MEAN, np.float32)[:, None, None]) / np.asarray(STD, np.float32)[:, None, None]


class FolderDataset(torch.utils.data.Dataset):
    """What a user would write: one JPEG per item, decoded and normalised in the worker."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return torch.from_numpy(_normalise(decode_to_array(self.files[i].read_bytes(), SIZE))), 1.0


def pillow_loop(files: list[Path]) -> float:
    t0 = time.perf_counter()
    for f in files:
        _normalise(decode_to_array(f.read_bytes(), SIZE))
    return time.perf_counter() - t0


def dataloader(files: list[Path], workers: int) -> list[float]:
    loader = torch.utils.data.DataLoader(FolderDataset(files), batch_size=BATCH, num_workers=workers,
                                         persistent_workers=True, prefetch_factor=4)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        n = sum(len(x) for x, _ in loader)
        times.append(time.perf_counter() - t0)
        assert n == len(files)
    return times


def ray_stream(shards: Path, workers: int, *, preserve_order: bool = True
               ) -> tuple[list[float], int]:
    """This project's path: exactly what a CPU training worker iterates (uint8 from the
    decode tasks, normalised in Ray Data's collate threads), to the same float32 batches.
    ``preserve_order=False`` measures what the reproducible order (blocks in the seeded
    shard order, not as their tasks finish) costs."""
    import ray

    from search.config import DataConfig
    from search.data.stream import Normalize, train_dataset
    from search.train.worker import training_batches

    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = train_dataset(shards, DataConfig(ratio="natural", decode_workers=workers), size=SIZE,
                       seed=0, batch_size=BATCH, data_cpus=2 * workers + 1)
    ds.context.execution_options.preserve_order = preserve_order
    normalize = Normalize(MEAN, STD)
    times, n = [], 0
    for _ in range(2):
        t0 = time.perf_counter()
        n = 0
        for x, _y in training_batches(ds, batch_size=BATCH, device=torch.device("cpu"),
                                      normalize=normalize, prefetch_batches=4):
            n += len(x)
        times.append(time.perf_counter() - t0)
    ray.shutdown()
    return times, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=6000)
    args = parser.parse_args()
    from search.data.prepare import PrepareOptions, prepare

    cores = os.cpu_count() or 1
    source = SHARED / "deepfake_faces"
    with tempfile.TemporaryDirectory() as tmp:
        # prepare refuses empty validation/test splits: a thin share of each, the train
        # split (what the stream reads) measured by all three paths
        res = prepare(PrepareOptions(layout="deepfake_faces", source=str(source), out=tmp, size=224,
                                     limit=args.images, splits=(0.9, 0.05, 0.05)), progress=False)
        import pyarrow.parquet as pq

        ids = [i for sh in res.manifest["shards"] if sh["split"] == "train"
               for i in pq.read_table(Path(tmp) / sh["file"], columns=["id"])["id"].to_pylist()]
        files = [source / i for i in ids]
        pillow_loop(files[:300])
        loop_s = pillow_loop(files)
        dl = dataloader(files, cores)
        rs, n_stream = ray_stream(Path(tmp), cores)
        free, n_free = ray_stream(Path(tmp), cores, preserve_order=False)
    n = len(files)
    a = n / loop_s
    b = n / dl[1]
    c = n_stream / rs[1]
    d = n_free / free[1]
    rows = [
        ["(a) Pillow loop, 1 process", a, "-", "-", "-"],
        [f"(b) torch DataLoader, {cores} workers", b, f"{dl[0] - dl[1]:.1f}", f"{b / a:.2f}", "-"],
        [f"(c) Ray Data stream, {cores} decode tasks", c, f"{rs[0] - rs[1]:.1f}", f"{c / a:.2f}", f"{c / b:.2f}"],
        ["(d) (c) with preserve_order off (not reproducible)", d, f"{free[0] - free[1]:.1f}",
         f"{d / a:.2f}", f"{d / b:.2f}"],
    ]
    write_table("pipeline", "Data path: normalised 224 px batches of 64, deepfake_faces JPEGs",
                ["path", "images/s (steady)", "start-up s", "x (a)", "x (b)"], rows,
                [f"{n} images; steady state = second pass over the same images.",
                 f"Goal: (c) >= 1.0x (b) and (c) >= 0.7 x {cores} x (a) = {0.7 * cores:.1f}x (a).",
                 f"The reproducible order (c: blocks in the seeded shard order, what makes the "
                 f"same seed give the same numbers) against (d), blocks as their tasks finish: "
                 f"(c) runs at {c / d:.2f}x (d)'s throughput."])


if __name__ == "__main__":
    main()

"""Benchmark `prepare` on the 24,000-image deepfake_faces set against a plain Pillow loop.

    python -m bench.prepare [--limit N]

Goal (issue: foundation): in steady state, preparing the 224 px images takes at most 1.5x
the time of (one decode per image) / cores. The fixed start-up (scanning metadata, starting
the pool) is reported separately.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench._common import SHARED, write_table
from search.data.prepare import PrepareOptions, prepare


def pillow_loop(files: list[Path]) -> float:
    """Seconds for one process to read and fully decode every file once."""
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as img:
            img.load()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    source = SHARED / "deepfake_faces"
    files = sorted((source / "faces_224").glob("*.jpg"))[: args.limit]
    cores = os.cpu_count() or 1
    pillow_loop(files[:500])  # warm the page cache
    loop_s = pillow_loop(files)
    with tempfile.TemporaryDirectory() as tmp:
        res = prepare(PrepareOptions(layout="deepfake_faces", source=str(source), out=tmp,
                                     size=224, limit=args.limit), progress=False)
    n = sum(s["rows"] for s in res.manifest["shards"])
    decode_s, total_s = res.seconds["decode"], res.seconds["total"]
    startup_s = res.seconds["scan"]
    ideal = loop_s / cores
    rows = [
        ["Pillow decode loop, 1 process", len(files), loop_s, len(files) / loop_s, "-"],
        [f"ideal: loop / {cores} cores", len(files), ideal, len(files) / ideal, "1.00"],
        ["prepare, decode+validate stage (steady state)", n, decode_s, n / decode_s, f"{decode_s / ideal:.2f}"],
        ["prepare, end to end (scan + decode + write)", n, total_s, n / total_s, f"{total_s / ideal:.2f}"],
    ]
    write_table("prepare", "prepare throughput: deepfake_faces at 224 px",
                ["what", "images", "seconds", "images/s", "time / ideal"], rows,
                [f"Fixed start-up (metadata scan, split planning) {startup_s:.2f} s; writing shards "
                 f"{res.seconds['write']:.2f} s.",
                 "Goal: steady-state time / ideal <= 1.5. Images already at 224 px keep their bytes "
                 "(decoded once to validate, never re-encoded)."])


if __name__ == "__main__":
    main()

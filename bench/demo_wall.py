"""Benchmark the README's first command: wall time of the embedded demo search, end to end.

    python -m bench.demo_wall [--before /tmp/before]

Runs ``deepfake-search run`` (5 trials on the demo set, report and export included) in a
fresh process per variant, one after the other: the current code with the demo's default
CPU threads, the current code with 1 thread, and (``--before``) another checkout's code, so
that the ratios come from the same hour of the same machine. The demo shards are prepared
before timing, so no variant pays for them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench._common import write_table

# One thread instead of the demo's own default (its worker holds 2 CPUs, so 2 threads).
_ONE_THREAD = ("import sys; from dataclasses import replace; import search.cli as c; o = "
               "c.demo_experiment; c.demo_experiment = lambda cfg: (lambda d: replace(d, "
               "cluster=replace(d.cluster, cpus_per_worker=1.0)))(o(cfg)); "
               "sys.exit(c.main(['run', '--name', NAME]))")
_DEFAULT = "import sys; import search.cli as c; sys.exit(c.main(['run', '--name', NAME]))"


def timed_run(code: str, name: str, cwd: Path) -> tuple[float, str]:
    """Wall seconds of one demo run in a fresh process started in ``cwd`` (whose ``search``
    package it imports), and its last trial line."""
    shutil.rmtree(cwd / "results" / name, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code.replace("NAME", repr(name))], cwd=cwd,
                         env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    trials = next((x for x in out.splitlines() if x.startswith("Trials:")), "")
    return wall, trials


def prepare_demo(cwd: Path) -> None:
    """Make the checkout's demo shards now, so that no timed run pays for them."""
    # search.data.demo owns it now; a --before checkout may still have it in the tuner.
    code = ("try:\n    from search.data.demo import ensure_demo_shards\n"
            "except ImportError:\n    from search.tune.tuner import ensure_demo_shards\n"
            "from search.config import load_config; ensure_demo_shards(load_config(None))")
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**os.environ, "PYTHONPATH": str(cwd)},
                   check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", metavar="CHECKOUT")
    parser.add_argument("--before-label", default="before")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    variants = [("now (demo default: 2 threads)", _DEFAULT, here),
                ("now, 1 thread", _ONE_THREAD, here)]
    if args.before:
        variants.insert(0, (args.before_label, _DEFAULT, Path(args.before).resolve()))
    rows = []
    for label, code, cwd in variants:
        prepare_demo(cwd)
        wall, trials = timed_run(code, "demo-bench", cwd)
        rows.append([label, wall, trials])
    if args.before:
        base = rows[0][1]
        for row in rows[1:]:
            row.append(f"{row[1] / base:.2f}x")
        rows[0].append("1x")
    write_table("demo_wall", "The README's first command: the embedded demo search, end to end",
                ["code", "wall seconds", "trials", "vs before"][:len(rows[0])], rows,
                ["5 trials of 3 epochs (custom_cnn vs resnet10t, TPE + ASHA), finalists' test "
                 "evaluation, report and export; demo shards prepared beforehand. One run each, "
                 "one after the other.",
                 pd.Timestamp.now(tz="UTC").strftime("Measured %Y-%m-%d %H:%M UTC.")])


if __name__ == "__main__":
    main()

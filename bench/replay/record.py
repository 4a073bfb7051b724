"""Record a grid of configurations with the project's own search, one Parquet file of curves.

    python -m bench.replay record --shards DIR --workdir DIR [--epochs 12] [--size 32]
        [--archs custom_cnn resnet10t] [--lrs 3e-5 1e-4 ...] [--conv-blocks 2 3]
        [--out results/bench/replay/grid-32px.parquet] [--resume]
    python -m bench.replay record --extract-only --workdir DIR --out FILE   # tables -> curves

The grid is run by ``search.study.run_search`` itself: a discrete space (every searched
parameter a list of choices, every other one fixed), random sampling with the whole grid as
``search.points_to_evaluate`` and ``num_samples`` the grid's size, so each trial trains one
grid point; no scheduler (every point trains all its epochs), one trial at a time. When the
search ends, its ``trials.parquet`` (a trial's parameters) and ``history.parquet`` (its
epochs) are joined into one small file: the grid's key columns, ``epoch``, the validation
metrics, ``train_loss``, ``epoch_time_s`` and ``time_total_s``; the grid and the command go
into the file's metadata (:func:`read_recording`).

Resumable: ``--resume`` continues the same experiment (``run_search(resume=True)``: Tune's
state, the Optuna study and each trial's checkpoints are in ``--workdir``), so a recording
killed half way (a reboot, a Ctrl-C) loses at most the epochs of the trial in flight.

At 224 px on a GPU machine (one GPU per trial, several trials at once; data prepared at 224)::

    deepfake-search prepare --layout deepfake_faces --source ../shared/data/deepfake_faces \\
        --out /data/shards-224 --size 224
    python -m bench.replay record --shards /data/shards-224 --workdir /data/replay-224 \\
        --size 224 --epochs 12 --images 0 --concurrent 0 --gpu \\
        --out results/bench/replay/grid-224px.parquet          # add --resume after a stop

(``--concurrent 0``: as many trials as the GPUs hold, the project's default.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench._common import REPO, machine, scratch_free

#: The grid of issue 20, reduced (see ``main``'s defaults): 2 architectures, both ratios,
#: 6 learning rates, and for the custom CNN 2 depths.
ARCHS = ("custom_cnn", "resnet10t")
RATIOS = ("1:1", "1:2")
LRS = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
CONV_BLOCKS = (2, 3)
#: Everything else a trial could be given, fixed: the grid is exactly what varies.
FIXED = {"weight_decay": 1e-4, "base_width": 16, "kernel_size": 3, "dense_units": 64,
         "dropout": 0.25, "batch_norm": True, "head_dropout": 0.0, "frozen_stages": 0}
#: Columns of the recorded curves besides the grid's keys and ``epoch``.
METRICS = ("val_auc", "val_ap", "val_f1", "val_accuracy", "val_balanced_accuracy", "val_eer",
           "val_log_loss", "train_loss")
TIMES = ("epoch_time_s", "time_total_s")
META_KEY = b"replay"


def grid_points(archs: Sequence[str], ratios: Sequence[str], lrs: Sequence[float],
                conv_blocks: Sequence[int], frozen_stages: Sequence[int] = (),
                input_sizes: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Every configuration of the grid: ``conv_blocks`` only for the custom CNN and
    ``frozen_stages`` only for the timm (pretrained) families (the space applies each to
    nothing else); ``input_sizes``, where given, for every architecture."""
    points = []
    sizes = [int(v) for v in input_sizes] if len(input_sizes) > 1 else [None]
    for arch, ratio, lr, size in itertools.product(archs, ratios, lrs, sizes):
        custom = arch == "custom_cnn"
        depths = conv_blocks if custom and len(conv_blocks) > 1 else [None]
        frozen = frozen_stages if not custom and len(frozen_stages) > 1 else [None]
        for blocks, stages in itertools.product(depths, frozen):
            point: dict[str, Any] = {"arch": arch, "ratio": ratio, "lr": float(lr)}
            if size is not None:
                point["input_size"] = size
            if blocks is not None:
                point["conv_blocks"] = int(blocks)
            if stages is not None:
                point["frozen_stages"] = int(stages)
            points.append(point)
    return points


def grid_space(archs: Sequence[str], ratios: Sequence[str], lrs: Sequence[float],
               conv_blocks: Sequence[int], frozen_stages: Sequence[int] = (),
               input_sizes: Sequence[int] = ()) -> dict[str, Any]:
    """``search.space`` of the grid: each searched parameter a list, the rest fixed."""
    space: dict[str, Any] = {"arch": list(archs), "ratio": list(ratios),
                             "lr": [float(v) for v in lrs], **FIXED}
    space["conv_blocks"] = [int(v) for v in conv_blocks] if len(conv_blocks) > 1 \
        else int(conv_blocks[0])
    if frozen_stages:
        space["frozen_stages"] = [int(v) for v in frozen_stages] if len(frozen_stages) > 1 \
            else int(frozen_stages[0])
    if len(input_sizes) > 1:
        space["input_size"] = [int(v) for v in input_sizes]
    return space


def keys_of(space: Mapping[str, Any]) -> list[str]:
    """The searched parameters of a ``search.space`` (lists): the recording's key columns."""
    return [k for k, v in space.items() if isinstance(v, list | tuple) and len(v) > 1]


def flow_yaml(value: Any) -> str:
    """``value`` as one line of YAML that the project's loader reads back equal (floats
    always with a dot and a signed exponent: PyYAML reads ``3e-05`` as a string)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {flow_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow_yaml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10e}"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def record_config(args: argparse.Namespace, points: list[dict[str, Any]],
                  space: dict[str, Any]) -> Any:
    """The experiment that trains the grid: the project's config, nothing bench-specific."""
    from search.config import load_config

    overrides = [
        f"data.shards={args.shards}", f"cluster.storage_path={args.workdir}",
        "cluster.address=local",
        f"model.pretrained={'true' if args.pretrained else 'false'}",
        f"optim.epochs={args.epochs}", f"optim.batch_size={args.batch_size}",
        f"cluster.max_concurrent_trials={args.concurrent}", f"search.name={args.name}",
        f"search.num_samples={len(points)}", "search.algorithm=random", "search.scheduler=none",
        f"seed={args.seed}", "search.space=" + flow_yaml(space),
        "search.points_to_evaluate=" + flow_yaml(points)]
    if "input_size" not in space:  # a searched size must not be set beside it
        overrides.append(f"model.input_size={args.size}")
    if args.gpu:
        overrides += ["cluster.use_gpu=true"]
    else:
        overrides += ["cluster.use_gpu=false", "cluster.cpus_per_worker=1", "cluster.data_cpus=1",
                      f"cluster.threads={args.threads}"]
    return load_config(None, overrides)


def extract(exp_dir: Path, keys: Sequence[str]) -> pd.DataFrame:
    """One row per recorded trial-epoch from a finished search's tables: the grid's key
    columns, ``epoch``, the validation metrics, ``train_loss`` and the epoch's times."""
    trials = pd.read_parquet(exp_dir / "trials.parquet")
    history = pd.read_parquet(exp_dir / "history.parquet")
    bad = trials[trials["status"] != "COMPLETED"]
    if len(bad):
        print(f"note: {len(bad)} trial(s) did not complete: "
              f"{', '.join(f'{r.trial_id} ({r.status})' for r in bad.itertuples())}", flush=True)
    params = trials.set_index("trial_id")[[k for k in keys if k in trials]]
    cols = ["trial_id", "epoch", *[c for c in (*METRICS, *TIMES) if c in history]]
    out = history[cols].join(params, on="trial_id")
    for key in ("conv_blocks", "frozen_stages", "input_size"):  # some archs lack them
        if key in out:
            out[key] = out[key].astype("Int64")
    out = out[[*params.columns, "epoch", *cols[2:]]]
    # A grid point trained twice (a resumed trial counted anew) keeps its first trial.
    first = out.drop_duplicates([*params.columns], keep="first")[list(params.columns)]
    out = out.merge(first.assign(_keep=1), on=list(params.columns), how="left")
    out = out.drop(columns="_keep").drop_duplicates([*params.columns, "epoch"], keep="last")
    return out.sort_values([*params.columns, "epoch"], ignore_index=True)


def write_recording(frame: pd.DataFrame, out: Path, meta: Mapping[str, Any]) -> Path:
    """The curves as one Parquet file, ``meta`` (the grid, the command) in its metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           META_KEY: json.dumps(meta).encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    return out


def read_recording(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(curves, metadata) of a recording written by :func:`write_recording`."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table.to_pandas(), meta


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay record")
    parser.add_argument("--shards", help="prepared shard folder (deepfake-search prepare)")
    parser.add_argument("--workdir", required=True, help="the search's storage path")
    parser.add_argument("--name", default="record")
    parser.add_argument("--out", default=str(REPO / "results/bench/replay/grid-32px.parquet"))
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--ratios", nargs="+", default=list(RATIOS))
    parser.add_argument("--lrs", nargs="+", type=float, default=list(LRS))
    parser.add_argument("--conv-blocks", nargs="+", type=int, default=list(CONV_BLOCKS))
    parser.add_argument("--frozen-stages", nargs="+", type=int, default=[],
                        help="frozen stages of the timm families (pretrained weights only)")
    parser.add_argument("--input-sizes", nargs="+", type=int, default=[],
                        help="input sizes to grid over (the shards are resized to each)")
    parser.add_argument("--pretrained", action="store_true",
                        help="the timm families start from their pretrained weights")
    parser.add_argument("--backbone-lr-scale", type=float, default=1.0,
                        help="the timm families' backbone learning rate over the head's")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=1000,
                        help="images the shards were prepared from (recorded; 0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of a CPU trial")
    parser.add_argument("--concurrent", type=int, default=1,
                        help="trials at once (0: as many as the cluster holds)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per trial")
    parser.add_argument("--resume", action="store_true", help="continue the same experiment")
    parser.add_argument("--extract-only", action="store_true",
                        help="only turn a finished search's tables into the curves file")
    args = parser.parse_args(argv)
    grid = (args.archs, args.ratios, args.lrs, args.conv_blocks, args.frozen_stages,
            args.input_sizes)
    points, space = grid_points(*grid), grid_space(*grid)
    if args.backbone_lr_scale != 1.0:
        space["backbone_lr_scale"] = float(args.backbone_lr_scale)
    exp_dir = Path(args.workdir) / args.name
    t0 = time.time()
    if not args.extract_only:
        from search.study import run_search

        if not args.shards:
            parser.error("--shards is required to record")
        print(f"recording {len(points)} grid points x {args.epochs} epochs at {args.size} px "
              f"into {exp_dir}", flush=True)
        run_search(record_config(args, points, space), resume=args.resume, evaluate_test=False)
    frame = extract(exp_dir, keys_of(space))
    from search.filenames import EXPERIMENT

    cfg = json.loads((exp_dir / EXPERIMENT).read_text())
    meta = {"grid": {"arch": args.archs, "ratio": args.ratios, "lr": args.lrs,
                     "conv_blocks": args.conv_blocks, "frozen_stages": args.frozen_stages,
                     "input_size": args.input_sizes},
            "pretrained": bool(args.pretrained),
            "space": space, "keys": keys_of(space), "points": len(points),
            "epochs": args.epochs, "size": args.size, "images": args.images,
            "shards": scratch_free(cfg["data"]["shards"]), "seed": args.seed,
            "machine": machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "wall_s_this_run": round(time.time() - t0, 1),
            "command": scratch_free("python -m bench.replay record " + " ".join(
                shlex.quote(a) for a in (argv or sys.argv[2:])))}
    out = write_recording(frame, Path(args.out), meta)
    done = frame.groupby(keys_of(space), dropna=False).size()
    print(f"wrote {out}: {len(done)} of {len(points)} grid points, {len(frame)} epochs, "
          f"{out.stat().st_size / 1024:.1f} KB", flush=True)


if __name__ == "__main__":
    main()

"""Self-blended fakes: 16 examples to look at, and their cost per image against decode alone.

    python -m bench.synthetic_examples [--set demo=datasets/demo/shards ...] [--sizes 64 224]

For each prepared set (NAME=SHARD_FOLDER; default the embedded demo set) it takes REAL rows
of the train split and runs them through the training stream's own steps
(:class:`~search.data.stream.SelfBlendRows`, then :class:`~search.data.stream.DecodeBatch`
with the default :class:`~search.data.synthetic.BlendSpec`, no other augmentation), so the
pictures are exactly what a trial with ``data.synthetic: 1`` trains on:

- ``results/synthetic/examples[-NAME].png``: a 4x4 grid of 16 self-blends at the first size
  (the ``-NAME`` images of other sets than the demo are git-ignored: the faces of a
  research-only set are never committed);
- ``results/synthetic/pairs[-NAME].png``: each of them beside its REAL source and the
  amplified difference (x4), which shows where the blend changed the image;
- ``results/synthetic/cost.md``: milliseconds per image to decode (and resize) alone, and to
  decode and self-blend, in one process, the median of ``--repeat`` passes over the same
  rows (the first pass, which warms up, is not counted).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from bench._common import REPO, machine
from search.data import stream
from search.data.stream import DecodeBatch, SelfBlendRows
from search.data.synthetic import BlendSpec

OUT = REPO / "results" / "synthetic"


def real_rows(shards: Path, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` REAL rows of the train split (image bytes, label, id)."""
    rows: dict[str, list] = {"image": [], "label": [], "id": []}
    for path in sorted(shards.glob("train-*.parquet")):
        table = pq.read_table(path, columns=["image", "label", "id"]).to_pydict()
        for image, label, id_ in zip(table["image"], table["label"], table["id"]):
            if label == 0 and len(rows["id"]) < n:
                rows["image"].append(image)
                rows["label"].append(label)
                rows["id"].append(id_)
    if not rows["id"]:
        raise SystemExit(f"{shards} has no REAL image in its train split")
    return {"image": np.asarray(rows["image"], dtype=object),
            "label": np.asarray(rows["label"], dtype=np.int8),
            "id": np.asarray(rows["id"], dtype=object)}


def blended_pairs(rows: dict[str, np.ndarray], size: int, seed: int) -> tuple[np.ndarray, ...]:
    """(sources, blends) at ``size``: every REAL row and its one self-blend, as the stream
    makes them at epoch 0 with ``data.synthetic: 1`` and ratio 1:1."""
    marked = SelfBlendRows(share=1.0, blends=1.0, seed=seed)(rows)
    out = DecodeBatch(size, seed=seed, blend=BlendSpec())(marked)
    number = marked["synthetic"]
    return out["image"][number == 0], out["image"][number > 0]


def grid(images: list[np.ndarray], cols: int, scale: int = 3, gap: int = 2) -> Image.Image:
    """Images (HxWx3 uint8, one size) in a grid, upscaled ``scale``x with nearest pixels."""
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * (w * scale + gap) - gap, rows * (h * scale + gap) - gap),
                       (255, 255, 255))
    for i, img in enumerate(images):
        tile = Image.fromarray(img).resize((w * scale, h * scale), Image.Resampling.NEAREST)
        canvas.paste(tile, ((i % cols) * (w * scale + gap), (i // cols) * (h * scale + gap)))
    return canvas


def per_image_ms(runs: list[tuple], repeat: int) -> list[float]:
    """For each ``(fn, batch)``: the median over ``repeat`` timed passes of ``fn(batch)``,
    per row, in ms, after one warm-up. The passes alternate between the runs, so that a
    machine whose load changes (a shared one) weighs on each alike."""
    times: list[list[float]] = [[] for _ in runs]
    for fn, batch in runs:
        fn(batch)
    for _ in range(repeat):
        for i, (fn, batch) in enumerate(runs):
            t0 = time.perf_counter()
            fn(batch)
            times[i].append((time.perf_counter() - t0) / len(batch["id"]) * 1000)
    return [float(np.median(t)) for t in times]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[],
                        help="NAME=SHARD_FOLDER (repeatable; default demo=datasets/demo/shards)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--rows", type=int, default=256, help="REAL rows timed per set")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sets = [s.split("=", 1) for s in (args.set or ["demo=datasets/demo/shards"])]
    stream._execution_index = lambda: 0  # outside Ray: the first epoch's draws
    OUT.mkdir(parents=True, exist_ok=True)
    table = []
    for name, folder in sets:
        rows = real_rows(Path(folder), args.rows)
        suffix = "" if name == "demo" else f"-{name}"
        sixteen = {k: v[:16] for k, v in rows.items()}
        sources, blends = blended_pairs(sixteen, args.sizes[0], args.seed)
        grid(list(blends), 4).save(OUT / f"examples{suffix}.png")
        diff = [np.clip(np.abs(b.astype(int) - s.astype(int)) * 4, 0, 255).astype(np.uint8)
                for s, b in zip(sources, blends)]
        grid([img for trio in zip(sources, blends, diff) for img in trio], 6).save(
            OUT / f"pairs{suffix}.png")
        marked = SelfBlendRows(share=1.0, blends=1.0, seed=args.seed)(rows)
        blend_only = {k: v[marked["synthetic"] > 0] for k, v in marked.items()}
        for size in args.sizes:
            decode, both = per_image_ms(
                [(DecodeBatch(size, seed=args.seed), rows),
                 (DecodeBatch(size, seed=args.seed, blend=BlendSpec()), blend_only)],
                args.repeat)
            table.append([name, size, len(rows["id"]), f"{decode:.2f}", f"{both:.2f}",
                          f"{both - decode:.2f}", f"{both / decode:.1f}x"])
            print(table[-1])
    load = os.getloadavg()
    lines = ["# Self-blended fakes: cost per image against decode alone", "",
             f"Machine: {machine()}  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
             f"Load average at the end (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, "
             f"{load[2]:.1f} (the machine was shared: compare the columns, not the absolutes)",
             "", "| set | size px | REAL images | decode ms/img | decode + self-blend ms/img "
             "| blend ms/img | x decode |", "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table]
    lines += ["", "One process, no Ray: `DecodeBatch` on the same REAL rows without and with "
              "every row marked for a self-blend (default BlendSpec: ellipse mask, SBI's "
              "ratios and transforms), median of "
              f"{args.repeat} passes after one warm-up, the two alternating. Command: `python -m "
              "bench.synthetic_examples " + " ".join(argv if argv is not None else []) + "`.",
              "In a trial the blend runs in the same Ray Data tasks as decoding, so it scales "
              "with `cluster.data_cpus`; with `data.synthetic: s`, s x the epoch's FAKE rows "
              "pay it."]
    (OUT / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

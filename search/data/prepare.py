"""Records -> validated images -> grouped, stratified split -> Parquet shards + manifest.

The output is what every later step reads: ``<out>/{train,val,test}-NNNNN.parquet`` with the
columns in :data:`SCHEMA` and ``<out>/manifest.json``. Re-running with the same input and
options gives byte-identical shards, so results can be tied to the exact data they used.

This module is the public face of the writer; each step lives in a module of its own:

- :mod:`search.data._options`: :class:`PrepareOptions`, every option checked up front;
- :mod:`search.data.splits`: the seeded subset and the grouped, stratified split;
- :mod:`search.data._decode`: the decode pool and the duplicate check;
- :mod:`search.data._shard_writer`: the shards and the manifest written;
- :mod:`search.data._out_folder`: the --out folder's lock, staging, signals and install.

Reading a prepared set (:func:`load_manifest`, :func:`verify_shards`, :func:`manifest_hash`)
is :mod:`search.data.manifest`'s; the names are re-exported here for older imports.

Imports: prepare is torch- and Ray-free and starts fast; tqdm, the demo painter and
pyarrow's filesystems are imported by the steps that use them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.data._decode import decode_all, drop_duplicates
from search.data._options import PrepareOptions
from search.data._out_folder import (
    INSTALLING,
    LOCK,
    claim_out,
    install,
    locked,
    refuse_if_locked,
    signals_held,
)
from search.data._shard_writer import SCHEMA, build_manifest, write_shards
from search.data.layouts import LABEL_NAMES, SPLITS, Record, SourceError, scan_source
from search.data.manifest import (
    MAX_SIZE,
    STAGING_PREFIX,
    load_manifest,
    manifest_hash,
    verify_shards,
)
from search.data.splits import assign_splits, check_split_sizes, select
from search.filenames import MANIFEST

__all__ = ["INSTALLING", "LOCK", "MANIFEST", "MAX_SIZE", "SCHEMA", "STAGING_PREFIX",
           "PrepareOptions", "PrepareResult", "SourceError", "assign_splits", "check_split_sizes",
           "load_manifest", "manifest_hash", "prepare", "select", "verify_shards"]


@dataclass
class PrepareResult:
    """The manifest written, plus timings that are deliberately kept out of it."""

    manifest: dict
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """Human-readable counts, skips by reason and timings."""
        m = self.manifest
        lines = [f"prepared {sum(s['rows'] for s in m['shards'])} images into {self.out}"]
        for split in SPLITS:
            c = m["counts"].get(split, {"REAL": 0, "FAKE": 0})
            lines.append(f"  {split:<5} REAL {c['REAL']:>7}  FAKE {c['FAKE']:>7}")
        if m["skipped"]:
            lines.append(f"skipped {len(m['skipped'])} file(s) or row(s):")
            for reason, n in sorted(m["skipped_by_reason"].items(), key=lambda kv: -kv[1]):
                lines.append(f"  {n:>6}  {reason}")
            lines.append(f"  (every one with its path in {self.out / MANIFEST})")
        else:
            lines.append("skipped nothing")
        lines.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def prepare(options: PrepareOptions, *, progress: bool = True) -> PrepareResult:
    """Prepare a source into shards; see the module docstring. Raises SourceError on bad sources."""
    t0 = time.perf_counter()
    opts = options.resolved()
    out = Path(opts.out)
    try:
        claim_out(out)  # refuse a folder of the user's before hours of decoding (and the lock)
    except SourceError:
        refuse_if_locked(out)  # files another run is installing right now: say that instead
        raise
    with locked(out):
        return _prepare_locked(opts, out, progress, t0)


def _prepare_locked(opts: PrepareOptions, out: Path, progress: bool, t0: float) -> PrepareResult:
    """prepare(), while this process holds ``out``'s lock: scan, decode, split, write."""
    layout = _paint_demo(opts) if opts.layout == "demo" else opts.layout
    records, skipped = _scan(opts, layout)
    t_scan = time.perf_counter()
    images = _decode(records, opts, progress, skipped)
    t_decode = time.perf_counter()
    rows = _rows(records, images, opts, skipped)
    manifest = _write(opts, out, rows, images, skipped)
    t_end = time.perf_counter()
    return PrepareResult(manifest, out, {"scan": t_scan - t0, "decode": t_decode - t_scan,
                                         "write": t_end - t_decode, "total": t_end - t0})


def _paint_demo(opts: PrepareOptions) -> str:
    """Write the synthetic demo source (a folder only the generator may own); its layout."""
    from search.data.demo_painter import DEMO_SIZE, write_demo_source

    src = Path(opts.source)
    marker = src / ".deepfake-search-demo"
    if src.exists() and any(src.iterdir()) and not marker.exists():
        raise SourceError(f"{src} exists and was not made by the demo generator; "
                          "pass another --source for --layout demo")
    shutil.rmtree(src, ignore_errors=True)  # ours to regenerate: no stale files
    write_demo_source(opts.source, n_images=opts.demo_images, size=opts.size or DEMO_SIZE,
                      difficulty=opts.demo_difficulty, seed=opts.seed, grid=opts.demo_grid)
    marker.write_text("generated by deepfake-search prepare --layout demo\n")
    return "deepfake_faces"


def _scan(opts: PrepareOptions, layout: str) -> tuple[list[Record], list[tuple[str, str]]]:
    """The source's records, the seeded subset kept, and the skips of the scan."""
    scan = scan_source(layout, opts.source, group_regex=opts.group_regex, class_map=opts.class_map)
    records = select(scan.records, opts.limit, opts.max_per_class, opts.seed)
    # Before decoding: the split the fractions give the scanned images (checked again on
    # the images that decode, below), so an empty split costs no decoding. A class with no
    # image at all is named after decoding, as such.
    if len({r.label for r in records}) == len(LABEL_NAMES):
        check_split_sizes(records, assign_splits(records, opts.splits, opts.seed), opts)
    return records, list(scan.skipped)


def _decode(records: list[Record], opts: PrepareOptions, progress: bool,
            skipped: list[tuple[str, str]]) -> dict[int, Any]:
    """The decoded images by record index, duplicates dropped; each file that fails or is a
    duplicate is added to ``skipped`` with its reason."""
    images: dict[int, Any] = {}
    hashes: dict[int, str] = {}
    for idx, result in decode_all(records, opts, progress):
        if isinstance(result, str):
            skipped.append((records[idx].id, result))
        else:
            images[idx], hashes[idx] = result
    duplicates, dup_skips = drop_duplicates(records, hashes)
    skipped += dup_skips
    for idx in duplicates:
        del images[idx]
    return images


def _rows(records: list[Record], images: dict[int, Any], opts: PrepareOptions,
          skipped: list[tuple[str, str]]) -> list[dict]:
    """The shards' rows in their final order (split, then id), both classes and every split
    with a share checked to hold images."""
    kept = [records[i] for i in sorted(images)]
    labels = Counter(r.label for r in kept)
    for lab, name in LABEL_NAMES.items():
        if labels[lab] == 0:
            raise SourceError(
                f"{opts.source} has no usable {name} image ({len(skipped)} skipped): both classes "
                "are needed; check the layout (--layout), the class folder names (--class-map) "
                "or the metadata labels"
            )
    splits = assign_splits(kept, opts.splits, opts.seed)
    check_split_sizes(kept, splits, opts)
    rows = []
    for rec, split, idx in zip(kept, splits, sorted(images)):
        img = images[idx]
        rows.append({"image": img.data, "label": rec.label, "split": split, "group": rec.group,
                     "id": rec.id, "source": rec.id, "width": img.width, "height": img.height})
    rows.sort(key=lambda r: (SPLITS.index(r["split"]), r["id"]))
    return rows


def _write(opts: PrepareOptions, out: Path, rows: list[dict], images: dict[int, Any],
           skipped: list[tuple[str, str]]) -> dict:
    """Write the shards and manifest into a staging folder in ``out``, then install them in
    place of the earlier set; the manifest written."""
    old = claim_out(out)  # checked before any decoding too (at the start)
    staging: Path | None = None
    try:
        with signals_held():  # never a staging folder that no finally removes
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        shards = write_shards(rows, staging, int(opts.shard_mb * 1024 * 1024))
        manifest = build_manifest(opts, rows, images, shards, skipped)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        with signals_held():  # a Ctrl-C waits for the few renames: never half a shard set
            install(staging, out, old)
    finally:
        if staging is not None:
            with signals_held():
                shutil.rmtree(staging, ignore_errors=True)
    return manifest

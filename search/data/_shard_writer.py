"""prepare's output: rows written as size-bounded Parquet shards, and the manifest that lists
them with their hashes, the options and every skip.

Private (used by :mod:`search.data.prepare`, which writes into a staging folder and installs
it). Rows arrive in their final order and the Parquet settings are fixed, so the same input
and options give byte-identical shards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from search.data.layouts import LABEL_NAMES, SPLITS
from search.filenames import file_sha256

if TYPE_CHECKING:
    from search.data._options import PrepareOptions

__all__ = ["FORMAT_VERSION", "SCHEMA", "build_manifest", "write_shards"]

FORMAT_VERSION = 1

SCHEMA = pa.schema([
    ("image", pa.binary()),
    ("label", pa.int8()),
    ("split", pa.string()),
    ("group", pa.string()),
    ("id", pa.string()),
    ("source", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
])


def write_shards(rows: list[dict], out: Path, shard_bytes: int) -> list[dict]:
    """Write rows (already in final order) as size-bounded shards per split."""
    shards = []
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        start, index = 0, 0
        while start < len(part):
            end, size = start, 0
            while end < len(part) and (end == start
                                       or size + len(part[end]["image"]) <= shard_bytes):
                size += len(part[end]["image"])
                end += 1
            name = f"{split}-{index:05d}.parquet"
            table = pa.Table.from_pylist(part[start:end], schema=SCHEMA)
            pq.write_table(table, out / name, row_group_size=256, compression="snappy",
                           use_dictionary=["split", "group", "source"], write_statistics=True)
            shards.append({"file": name, "split": split, "rows": end - start,
                           "bytes": (out / name).stat().st_size, "sha256": file_sha256(out / name)})
            start, index = end, index + 1
    return shards


def build_manifest(opts: PrepareOptions, rows: list[dict], images: Mapping[int, Any],
                   shards: list[dict], skipped: list[tuple[str, str]]) -> dict:
    """The manifest of a prepared set: options, counts, shards with hashes, every skip."""
    counts = {s: {"REAL": 0, "FAKE": 0} for s in SPLITS}
    for r in rows:
        counts[r["split"]][LABEL_NAMES[r["label"]]] += 1
    skipped = sorted(skipped)
    return {
        "format": FORMAT_VERSION,
        "layout": opts.layout,
        "options": {**asdict(opts), "splits": list(opts.splits)},
        "image_size": opts.size,
        "counts": counts,
        "groups": {s: len({r["group"] for r in rows if r["split"] == s}) for s in SPLITS},
        "reencoded": sum(1 for i in images.values() if i.reencoded),
        "shards": shards,
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "skipped_by_reason": dict(Counter(r.split(":")[0] for _, r in skipped)),
    }

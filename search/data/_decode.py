"""prepare's decode step: every selected file read, validated and normalised on all cores,
then byte-identical files dropped.

Private (used by :mod:`search.data.prepare`). The pool is forked on Linux (workers start in
milliseconds and inherit the imports) and each worker leaves signals to the parent, which
ends the pool, and closes the parent's lock (:data:`search.data._out_folder.HELD`).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from search.data._out_folder import HELD
from search.data.images import ImageError, prepare_image, read_regular
from search.data.layouts import LABEL_NAMES, Record

if TYPE_CHECKING:
    from search.data._options import PrepareOptions

__all__ = ["decode_all", "drop_duplicates"]

CHUNK = 64  # files per pool task: few enough messages, small enough to keep all cores busy


def _work(args: tuple[list[tuple[int, str]], PrepareOptions]) -> list[tuple[int, object]]:
    """Decode and normalise a chunk of files in a pool process (regular files only): each
    usable file gives ``(PreparedImage, SHA-256 of the file's bytes)``, any other a reason."""
    items, opts = args
    out: list[tuple[int, object]] = []
    for idx, path in items:
        try:
            data = read_regular(path, opts.max_file_bytes)
            image = prepare_image(data, opts.size, quality=opts.quality,
                                  max_pixels=opts.max_pixels, min_side=opts.min_side)
            out.append((idx, (image, hashlib.sha256(data).hexdigest())))
        except ImageError as err:
            out.append((idx, str(err)))
        except OSError as err:
            out.append((idx, f"unreadable file: {err.strerror or err}"))
    return out


def _pool_worker() -> None:
    """A decode process leaves Ctrl-C and SIGTERM to the parent, which ends the pool, and
    closes its copy of the parent's lock (see :data:`HELD`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in list(HELD):
        with contextlib.suppress(OSError):
            os.close(fd)


def decode_all(records: Sequence[Record], opts: PrepareOptions, progress: bool) -> Iterator:
    """Yield (index, (PreparedImage, sha256) | reason) for every record, on all cores."""
    workers = opts.workers or os.cpu_count() or 1
    tasks = [([(i, str(records[i].path)) for i in range(s, min(s + CHUNK, len(records)))], opts)
             for s in range(0, len(records), CHUNK)]
    bar = _progress(len(records), progress)
    if workers == 1 or len(tasks) <= 1:
        results: Iterator = map(_work, tasks)
        pool = None
    else:
        # fork: workers start in milliseconds and inherit the imports; nothing here is threaded.
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        pool = ctx.Pool(min(workers, len(tasks)), initializer=_pool_worker)
        results = pool.imap(_work, tasks, chunksize=1)
    try:
        for batch in results:
            yield from batch
            bar.update(len(batch))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr, shown only for a run long enough to need one (tqdm loads here)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="decode", disable=not enabled or total < 500,
                file=sys.stderr, mininterval=1.0)


def drop_duplicates(records: Sequence[Record],
                    hashes: Mapping[int, str]) -> tuple[set[int], list[tuple[str, str]]]:
    """Byte-identical files: (indices to drop, (id, reason) skips).

    One copy of identical files is kept (the first by id, so on every run the same one), the
    others are skipped naming it: kept twice, an image could land in train and in test at
    once, a leak the identity grouping cannot see. Identical files labelled REAL and FAKE
    are all dropped, each skip naming a file of either label: no label is right for both.
    """
    by_hash: dict[str, list[int]] = {}
    for idx in sorted(hashes, key=lambda i: records[i].id):
        by_hash.setdefault(hashes[idx], []).append(idx)
    drop: set[int] = set()
    skipped: list[tuple[str, str]] = []
    for same in by_hash.values():
        if len(same) < 2:
            continue
        labels = {records[i].label for i in same}
        if len(labels) > 1:
            first = {lab: next(records[i].id for i in same if records[i].label == lab)
                     for lab in labels}
            names = " and ".join(f"{first[lab]} ({LABEL_NAMES[lab]})" for lab in sorted(labels))
            for i in same:
                skipped.append((records[i].id, f"same bytes labelled REAL and FAKE: {names}; "
                                               "both dropped, fix the label of one"))
            drop.update(same)
        else:
            for i in same[1:]:
                skipped.append((records[i].id, f"duplicate image: same bytes as "
                                               f"{records[same[0]].id} (kept that one)"))
            drop.update(same[1:])
    return drop, skipped

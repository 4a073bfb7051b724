"""Records -> validated images -> grouped, stratified split -> Parquet shards + manifest.

The output is what every later step reads: ``<out>/{train,val,test}-NNNNN.parquet`` with the
columns in :data:`SCHEMA` and ``<out>/manifest.json``. Re-running with the same input and
options gives byte-identical shards, so results can be tied to the exact data they used.

Imports: prepare is torch- and Ray-free and starts fast; tqdm, the demo painter and
pyarrow's filesystems are imported by the steps that use them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from search.data.images import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    ImageError,
    prepare_image,
    read_regular,
)
from search.data.layouts import LABEL_NAMES, SPLITS, Record, SourceError, scan_source
from search.filenames import MANIFEST, file_sha256
from search.paths import default_shards_dir, default_source_dir

FORMAT_VERSION = 1
# What prepare writes in --out besides the manifest: shards by this name, a hidden staging
# folder while it writes, its lock file while it runs, and the hash cache of verify_shards.
# It deletes nothing else.
SHARD_NAME = re.compile(r"^(train|val|test)-\d{5}\.parquet$")
STAGING_PREFIX = ".prepare-"
VERIFIED = ".verified.json"
LOCK = ".prepare.lock"  # flock()ed while a prepare writes the folder; holds its pid
INSTALLING = ".prepare.installing"  # the names an install is writing (gone when it is done)

# Bounds of the options (each refusal says why).
MAX_SIZE = 4096  # --size: a 4096 px square is 48 MiB decoded; face detectors train at 224-512
MAX_WORKERS = 256  # --workers: processes, each holding a decoded image or more
MAX_DEMO_IMAGES = 1_000_000
# Layouts whose labels (and groups) come from folder and file names, where --class-map and
# --group-regex apply; deepfake_faces (and the demo, painted in that layout) takes both from
# its metadata.csv.
NAMED_LAYOUTS = ("folders", "real_vs_fake")
SPLIT_WORDS = ("train", "validation", "test")

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


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that decides the shards' content (saved in the manifest)."""

    layout: str
    source: str = ""  # "" = datasets/<layout>/source
    out: str = ""  # "" = datasets/<layout>/shards
    size: int | None = 224  # square side; None keeps each image's own size
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    shard_mb: float = 32.0
    limit: int | None = None  # total images kept (class proportions preserved)
    max_per_class: int | None = None
    group_regex: str | None = None
    class_map: Mapping[str, str] | None = None
    quality: int = 95  # JPEG quality when an image must be re-encoded
    max_pixels: int = MAX_PIXELS
    min_side: int = MIN_SIDE  # images with a shorter side are skipped, never upscaled
    max_file_bytes: int = MAX_FILE_BYTES  # larger files are skipped unread
    workers: int = 0  # decode processes; 0 = all cores
    demo_images: int = 2000  # demo layout only
    demo_difficulty: float = 0.5  # demo layout only
    # demo layout only: which images carry a 1-px checkerboard ("none", "fake", "real"), so
    # two demo sources can differ in one artefact (a controlled shift; search/data/demo.py)
    demo_grid: str = "none"

    def resolved(self) -> PrepareOptions:
        """A copy with default paths filled in and every option checked (SourceError naming
        the option, the value and the fix)."""
        self._check_splits()
        for name in ("shard_mb", "quality", "max_pixels", "min_side", "max_file_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                               and value > 0):
                raise SourceError(f"--{name.replace('_', '-')} must be a positive number, not {value}")
        if not 1 <= self.quality <= 100:
            raise SourceError(f"--quality {self.quality} is not a JPEG quality: give 1 to 100 "
                              "(95 is the default; it is used as given, never clamped)")
        if self.size is not None and self.size < self.min_side:
            raise SourceError(f"--size {self.size} is below the minimum image side {self.min_side} px; "
                              "use a larger --size (224 is the study's)")
        if self.size is not None and self.size > MAX_SIZE:
            raise SourceError(
                f"--size {self.size} is above the maximum of {MAX_SIZE} px: every image is stored "
                f"and decoded at --size x --size ({self.size}x{self.size} RGB is "
                f"{self.size * self.size * 3 / 2**30:.1f} GiB per image); use 224 (the study's) "
                "to 512, or --size 0 to keep each image's own size")
        if not (isinstance(self.workers, int) and 0 <= self.workers <= MAX_WORKERS):
            raise SourceError(f"--workers {self.workers} must be 0 (one decode process per "
                              f"core) or a number of processes from 1 to {MAX_WORKERS}")
        if self.seed < 0:
            raise SourceError(f"--seed {self.seed} must be 0 or more")
        if self.group_regex is not None:
            try:
                re.compile(self.group_regex)
            except re.error as err:
                raise SourceError(f"--group-regex {self.group_regex!r} is not a valid regular "
                                  f"expression ({err}): e.g. '^([^/]+)/' groups by the first "
                                  "folder, '(\\w+?)_' by the name before '_'") from None
        if self.class_map:
            for folder, label in self.class_map.items():
                if not str(folder).strip() or str(label).strip().lower() not in ("real", "fake"):
                    raise SourceError(f"--class-map entry {folder}={label} must map a folder name "
                                      "to real or fake, e.g. original=real,manipulated=fake")
        if self.layout in ("deepfake_faces", "demo"):
            for flag, value in (("--class-map", self.class_map), ("--group-regex", self.group_regex)):
                if value:
                    raise SourceError(
                        f"{flag} does not apply to --layout {self.layout}: its labels and "
                        "identity groups come from metadata.csv (label, original), not from "
                        f"folder or file names; drop {flag} (it applies to "
                        f"{' and '.join(NAMED_LAYOUTS)})")
        if self.layout == "demo":
            if not 1 <= self.demo_images <= MAX_DEMO_IMAGES:
                raise SourceError(f"--demo-images {self.demo_images} must be 1 to {MAX_DEMO_IMAGES}")
            if not (math.isfinite(self.demo_difficulty) and 0 <= self.demo_difficulty <= 1):
                raise SourceError(f"--demo-difficulty {self.demo_difficulty} must be 0 (easy) to 1 (hard)")
        if self.layout == "demo":
            from search.data.demo_painter import check_grid  # the painter owns its styles

            try:
                check_grid(self.demo_grid, "--demo-grid")
            except ValueError as err:
                raise SourceError(str(err)) from None
        for name in ("limit", "max_per_class"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SourceError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        total = sum(self.splits)
        return PrepareOptions(**{
            **asdict(self),
            "source": str(Path(self.source or default_source_dir(self.layout)).expanduser().resolve()),
            "out": str(Path(self.out or default_shards_dir(self.layout)).expanduser().resolve()),
            "splits": tuple(round(f / total, 6) for f in self.splits),
        })


    def _check_splits(self) -> None:
        """Three finite fractions >= 0, with a validation and a test share: a search selects
        on validation and reports its finalists on test. Train may be 0 only for a set that
        is scored, never trained on (``data.extra_sources``)."""
        shown = ",".join(f"{f:g}" if isinstance(f, (int, float)) else repr(f) for f in self.splits)
        fix = "e.g. --splits 0.6,0.2,0.2 (train, validation, test)"
        if len(self.splits) != 3:
            raise SourceError(f"--splits {shown} must be three fractions; {fix}")
        for word, f in zip(SPLIT_WORDS, self.splits, strict=True):
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0:
                raise SourceError(f"--splits {shown}: the {word} fraction must be a finite number "
                                  f"of 0 or more, not {f}; {fix}")
        empty = [w for w, f in zip(SPLIT_WORDS[1:], self.splits[1:], strict=True) if f == 0]
        if empty:
            raise SourceError(
                f"--splits {shown} leaves the {' and the '.join(empty)} split empty: a search "
                "selects trials and epochs on the validation split and reports its finalists "
                f"on the test split, so both need a share; {fix}")


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


def _stable_key(seed: int, text: str) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


def select(records: Sequence[Record], limit: int | None, max_per_class: int | None,
           seed: int) -> list[Record]:
    """A seeded subset: at most ``max_per_class`` per label and ``limit`` in all (proportional)."""
    by_label: dict[int, list[Record]] = {}
    for r in sorted(records, key=lambda r: _stable_key(seed, r.id)):
        by_label.setdefault(r.label, []).append(r)
    quota = {lab: len(rs) for lab, rs in by_label.items()}
    if max_per_class is not None:
        quota = {lab: min(n, max_per_class) for lab, n in quota.items()}
    if limit is not None and sum(quota.values()) > limit:
        total = sum(quota.values())
        # Proportional, at least one per class, and never more than ``limit`` in all:
        # rounding may overshoot by one, taken back from the largest class.
        quota = {lab: max(1, round(limit * n / total)) for lab, n in quota.items()}
        while sum(quota.values()) > max(limit, len(quota)):
            largest = max(quota, key=lambda lab: (quota[lab], lab))
            quota[largest] -= 1
    kept = [r for lab, rs in by_label.items() for r in rs[: quota[lab]]]
    return sorted(kept, key=lambda r: r.id)


def assign_splits(records: Sequence[Record], fractions: Sequence[float], seed: int) -> list[str]:
    """Stratified, grouped split: whole groups, each placed where it keeps every label closest
    to the target fractions so far.

    Groups are visited largest first (ties in a seeded random order) so the small ones can
    fill the gaps at the end; the result depends only on records, fractions and seed.
    """
    if all(r.split for r in records):
        return [r.split for r in records]  # the source's own split (real_vs_fake)
    totals = Counter(r.label for r in records)
    groups: dict[str, Counter] = {}
    for r in records:
        groups.setdefault(r.group, Counter())[r.label] += 1
    order = sorted(groups, key=lambda g: (-sum(groups[g].values()), _stable_key(seed, g)))
    candidates = [s for s in range(len(SPLITS)) if fractions[s] > 0]
    filled = [Counter() for _ in SPLITS]
    placed: Counter = Counter()
    where: dict[str, int] = {}
    for g in order:
        counts = groups[g]
        placed.update(counts)

        def cost(target: int, counts: Counter = counts) -> float:
            # squared distance of each (split, label) share from its fraction of what is placed
            return sum(((filled[s][lab] + (counts[lab] if s == target else 0))
                        - fractions[s] * placed[lab]) ** 2 / max(totals[lab], 1)
                       for s in candidates for lab in placed)

        best = min(candidates, key=cost)
        where[g] = best
        filled[best].update(counts)
    return [SPLITS[where[r.group]] for r in records]


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
    closes its copy of the parent's lock (see :data:`_HELD`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)


def _decode_all(records: Sequence[Record], opts: PrepareOptions, progress: bool) -> Iterator:
    """Yield (index, (PreparedImage, sha256) | reason) for every record, on all cores."""
    workers = opts.workers or os.cpu_count() or 1
    chunk = 64
    tasks = [([(i, str(records[i].path)) for i in range(s, min(s + chunk, len(records)))], opts)
             for s in range(0, len(records), chunk)]
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


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="decode", disable=not enabled or total < 500,
                file=sys.stderr, mininterval=1.0)


def drop_duplicates(records: Sequence[Record], hashes: Mapping[int, str]) -> tuple[set[int], list[tuple[str, str]]]:
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
            first = {lab: next(records[i].id for i in same if records[i].label == lab) for lab in labels}
            names = " and ".join(f"{first[lab]} ({LABEL_NAMES[lab]})" for lab in sorted(labels))
            for i in same:
                skipped.append((records[i].id, f"same bytes labelled REAL and FAKE: {names}; "
                                               "both dropped, fix the label of one"))
            drop.update(same)
        else:
            for i in same[1:]:
                skipped.append((records[i].id, f"duplicate image: same bytes as {records[same[0]].id} "
                                               "(kept that one)"))
            drop.update(same[1:])
    return drop, skipped


def _write_shards(rows: list[dict], out: Path, shard_bytes: int) -> list[dict]:
    """Write rows (already in final order) as size-bounded shards per split."""
    shards = []
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        start, index = 0, 0
        while start < len(part):
            end, size = start, 0
            while end < len(part) and (end == start or size + len(part[end]["image"]) <= shard_bytes):
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


def _claim_out(out: Path) -> list[Path]:
    """The files an earlier prepare wrote in ``out`` (to be replaced by this one).

    Refuses a folder holding anything else, naming it: prepare never deletes a file it did
    not write. Ours are the shards the old manifest lists (by their fixed name pattern, so a
    doctored manifest cannot point elsewhere) or an interrupted install recorded, the
    manifest, the hash cache, the lock file and staging folders (removed under the lock, not
    here: they are not in the list returned).
    """
    if out.exists() and not out.is_dir():
        raise SourceError(f"--out {out} is a file, not a folder: choose a folder for the shards")
    if not out.exists():
        return []
    ours = {MANIFEST, VERIFIED, LOCK, INSTALLING}
    if (out / INSTALLING).is_file():  # a run killed mid-install: the shards it was moving
        try:
            recorded = json.loads((out / INSTALLING).read_text())
        except (OSError, ValueError):
            recorded = []
        ours |= {n for n in recorded if isinstance(n, str) and SHARD_NAME.match(n)} if isinstance(
            recorded, list) else set()
    if (out / MANIFEST).exists():
        try:
            listed = {s["file"] for s in json.loads((out / MANIFEST).read_text())["shards"]}
        except (OSError, ValueError, KeyError, TypeError):
            raise SourceError(
                f"{out / MANIFEST} is not a readable prepare manifest, so prepare cannot tell "
                f"which files in {out} it wrote: choose a new or empty --out folder") from None
        ours |= {name for name in listed if isinstance(name, str) and SHARD_NAME.match(name)}
    entries = sorted(out.iterdir())
    foreign = [p.name for p in entries if p.name not in ours and not p.name.startswith(STAGING_PREFIX)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SourceError(
            f"--out {out} holds files that prepare did not write ({shown}); it replaces the "
            "shard set of a folder and never deletes what is not its own: choose a new or "
            "empty --out folder, or move those files out")
    return [p for p in entries if p.name in ours and p.name not in (MANIFEST, LOCK, INSTALLING)]


def _install(staging: Path, out: Path, old: Sequence[Path]) -> None:
    """Replace an earlier prepare's files in ``out`` with the staged ones, manifest last.

    The names it is about to write are recorded first (:data:`INSTALLING`): a run killed
    half-way (SIGKILL, power loss) leaves shards without a manifest, and the next run knows
    them as its own instead of refusing the folder.
    """
    new = sorted(p.name for p in staging.iterdir() if p.name != MANIFEST)
    record = out / INSTALLING
    record.write_text(json.dumps(sorted({*new, *(p.name for p in old)})) + "\n")
    for path in old:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # no manifest naming shards that are gone
    for name in new:
        (staging / name).replace(out / name)
    (staging / MANIFEST).replace(out / MANIFEST)
    record.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Within: SIGINT and SIGTERM wait (blocked, then delivered on exit), so a clean-up or
    an install is never cut half-way by Ctrl-C or a scheduler's SIGTERM."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


#: Lock file descriptors this process holds: a forked decode process closes its copies, so
#: a worker outliving a killed prepare cannot keep the folder locked.
_HELD: set[int] = set()


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock (an ``flock`` on ``out/.prepare.lock``, the holder's pid in it)
    for the whole run: a second prepare into the same folder is refused at once, naming the
    first and its pid, instead of both writing it. The lock file is removed at the end; a
    lock file left by a killed run is not held (the kernel released it) and is taken over,
    and that run's staging folders are removed. ``out`` is made if missing (and removed
    again if the run fails before writing anything)."""
    if out.exists() and not out.is_dir():
        raise SourceError(f"--out {out} is a file, not a folder: choose a folder for the shards")
    created = not out.exists()
    lock = out / LOCK
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _take_lock(out, lock)
    except OSError as err:
        raise SourceError(f"--out {out} cannot be written ({err.strerror or err}): choose a "
                          "folder you can write to") from None
    _HELD.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        for stale in out.glob(f"{STAGING_PREFIX}*"):  # a killed run's: no live run owns one now
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        with _signals_held():
            lock.unlink(missing_ok=True)  # before the lock is let go: see _take_lock
            _HELD.discard(fd)
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only when empty: a run that failed before writing anything


def _take_lock(out: Path, lock: Path) -> int:
    """An fd of ``lock``, flock()ed by this process, or SourceError naming the holder."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise SourceError(
                f"--out {out} is being written by another prepare (pid {_lock_holder(lock)}, "
                f"which holds {lock.name} there): two runs into one folder would replace each "
                "other's shards. Wait for it to end (or stop it), or choose another --out"
            ) from None
        try:  # the holder before us removes the file, then lets go: ours must be the live one
            same = os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _refuse_if_locked(out: Path) -> None:
    """SourceError naming the holder when another prepare holds ``out``'s lock now."""
    lock = out / LOCK
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise SourceError(f"--out {out} is being written by another prepare (pid "
                          f"{_lock_holder(lock)}, which holds {lock.name} there): wait for it "
                          "to end (or stop it), or choose another --out") from None
    finally:
        os.close(fd)


def _lock_holder(lock: Path) -> str:
    """The pid a lock file names (it is written just after the lock is taken)."""
    for _ in range(20):
        try:
            text = lock.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return text
        time.sleep(0.05)
    return "unknown"


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


def prepare(options: PrepareOptions, *, progress: bool = True) -> PrepareResult:
    """Prepare a source into shards; see the module docstring. Raises SourceError on bad sources."""
    t0 = time.perf_counter()
    opts = options.resolved()
    out = Path(opts.out)
    try:
        _claim_out(out)  # refuse a folder of the user's before hours of decoding (and the lock)
    except SourceError:
        _refuse_if_locked(out)  # files another run is installing right now: say that instead
        raise
    with _locked(out):
        return _prepare_locked(opts, out, progress, t0)


def check_split_sizes(records: Sequence[Record], splits: Sequence[str],
                      opts: PrepareOptions) -> None:
    """Every split with a share holds images, or a SourceError naming the split, its size
    and the fix: fractions that are not zero can still round a split to no image (whole
    identity groups are placed; 0.01 of 40 images is none)."""
    sizes = Counter(splits)
    empty = [word for word, split, f in zip(SPLIT_WORDS, SPLITS, opts.splits, strict=True)
             if f > 0 and sizes[split] == 0]
    if empty:
        shown = ",".join(f"{f:g}" for f in opts.splits)
        groups = len({r.group for r in records})
        raise SourceError(
            f"--splits {shown} on {len(records)} images ({groups} identity groups) leaves the "
            f"{' and the '.join(empty)} split with no image (train {sizes['train']}, validation "
            f"{sizes['val']}, test {sizes['test']}): whole groups are placed, so each split "
            "needs a share of at least one group; give it a larger fraction (e.g. --splits "
            "0.6,0.2,0.2) or prepare more images")


def _prepare_locked(opts: PrepareOptions, out: Path, progress: bool, t0: float) -> PrepareResult:
    """prepare(), while this process holds ``out``'s lock."""
    layout = _paint_demo(opts) if opts.layout == "demo" else opts.layout
    scan = scan_source(layout, opts.source, group_regex=opts.group_regex, class_map=opts.class_map)
    skipped = list(scan.skipped)
    records = select(scan.records, opts.limit, opts.max_per_class, opts.seed)
    # Before decoding: the split the fractions give the scanned images (checked again on
    # the images that decode, below), so an empty split costs no decoding. A class with no
    # image at all is named after decoding, as such.
    if len({r.label for r in records}) == len(LABEL_NAMES):
        check_split_sizes(records, assign_splits(records, opts.splits, opts.seed), opts)
    t_scan = time.perf_counter()

    images: dict[int, object] = {}
    hashes: dict[int, str] = {}
    for idx, result in _decode_all(records, opts, progress):
        if isinstance(result, str):
            skipped.append((records[idx].id, result))
        else:
            images[idx], hashes[idx] = result
    duplicates, dup_skips = drop_duplicates(records, hashes)
    skipped += dup_skips
    for idx in duplicates:
        del images[idx]
    t_decode = time.perf_counter()

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

    old = _claim_out(out)  # checked before any decoding too (at the start)
    staging: Path | None = None
    try:
        with _signals_held():  # never a staging folder that no finally removes
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        shards = _write_shards(rows, staging, int(opts.shard_mb * 1024 * 1024))
        manifest = _manifest(opts, rows, images, shards, skipped)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        with _signals_held():  # a Ctrl-C waits for the few renames: never half a shard set
            _install(staging, out, old)
    finally:
        if staging is not None:
            with _signals_held():
                shutil.rmtree(staging, ignore_errors=True)
    t_end = time.perf_counter()
    return PrepareResult(manifest, out, {"scan": t_scan - t0, "decode": t_decode - t_scan,
                                         "write": t_end - t_decode, "total": t_end - t0})


def _manifest(opts: PrepareOptions, rows: list[dict], images: Mapping[int, Any],
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


def load_manifest(shards: str | Path) -> dict:
    """Read ``manifest.json`` of a prepared folder (a path or a URI such as ``s3://``), with a
    clear error when it is missing."""
    from search import storage

    if storage.is_uri(shards):
        location = storage.join(shards, MANIFEST)
        if not storage.exists(location):
            raise SourceError(f"{location} not found: prepare the data locally, then upload the "
                              "whole shard folder there (manifest.json beside the shards)")
        return _parse_manifest(storage.read_text(location), location)
    path = Path(shards) / MANIFEST
    if not path.is_file():
        raise SourceError(f"{path} not found: prepare the data first "
                          f"(deepfake-search prepare --layout ... --out {Path(shards)})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{path} cannot be read ({err}): re-run prepare into that folder") from None
    return _parse_manifest(text, path)


def _parse_manifest(text: str, where: str | Path) -> dict:
    """A manifest's JSON with its shape checked; every failure names the file and the fix."""
    fix = "it was truncated or edited: re-run prepare into that folder"
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(f"{where} is not valid JSON (line {err.lineno}: {err.msg}); {fix}") from None
    if not isinstance(manifest, dict):
        raise SourceError(f"{where} is not a prepare manifest (not a JSON object); {fix}")
    missing = [k for k in ("shards", "counts") if k not in manifest]
    if missing:
        raise SourceError(f"{where} lacks {', '.join(missing)}; {fix}")
    for entry in manifest["shards"] if isinstance(manifest["shards"], list) else [None]:
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                and SHARD_NAME.match(entry["file"]) and entry.get("split") in SPLITS
                and isinstance(entry.get("rows"), int) and isinstance(entry.get("sha256"), str)):
            raise SourceError(f"{where} has a malformed shard entry {entry!r}; {fix}")
    return manifest


def verify_shards(shards: str | Path, *, hashes: bool = True) -> dict:
    """Check a prepared folder against its manifest before any training starts; returns it.

    Always (cheap): every listed shard exists, has the recorded size, a readable Parquet
    footer and the recorded row count, and the rows add up to the manifest's counts. With
    ``hashes``, each shard's SHA-256 is compared with the manifest's once: the result is
    cached in ``.verified.json`` by (size, mtime), so later runs hash only changed files.
    A URI is only checked for its files' presence (hashing would download every shard).
    Raises SourceError naming the shard and the fix. Cost, measured on the full
    deepfake_faces set (24,000 images at 224 px, 111 MB in 5 shards, 2-core VM): 0.07 s to
    hash from the page cache, then 1 ms per check while the cache holds.
    """
    from search import storage

    manifest = load_manifest(shards)
    fix = "re-run prepare into that folder (deepfake-search prepare ... --out FOLDER)"
    if storage.is_uri(shards):
        for entry in manifest["shards"]:
            location = storage.join(shards, entry["file"])
            if not storage.exists(location):
                raise SourceError(f"{location} is listed in {MANIFEST} but missing: upload the "
                                  "whole prepared folder again")
        return manifest
    folder = Path(shards)
    rows: Counter = Counter()
    cache = _read_cache(folder)
    fresh: dict[str, list] = {}
    for entry in manifest["shards"]:
        path = folder / entry["file"]
        if not path.is_file():
            raise SourceError(f"{path} is listed in {folder / MANIFEST} but missing; {fix}")
        info = path.stat()
        if "bytes" in entry and info.st_size != entry["bytes"]:
            raise SourceError(f"{path} is {info.st_size} bytes, the manifest says {entry['bytes']}: "
                              f"truncated or replaced after prepare; {fix}")
        try:
            n = pq.read_metadata(path).num_rows
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError on a broken footer
            raise SourceError(f"{path} is not a readable Parquet file ({err}); {fix}") from None
        if n != entry["rows"]:
            raise SourceError(f"{path} holds {n} rows, the manifest says {entry['rows']}; {fix}")
        rows[entry["split"]] += n
        key = [info.st_size, info.st_mtime_ns, entry["sha256"]]
        if hashes and cache.get(entry["file"]) != key:
            if file_sha256(path) != entry["sha256"]:
                raise SourceError(f"{path} does not match its SHA-256 in {MANIFEST}: the shard "
                                  f"changed after prepare (damaged or edited); {fix}")
        fresh[entry["file"]] = key
    for split, counts in manifest["counts"].items():
        if sum(counts.values()) != rows[split]:
            raise SourceError(f"{folder / MANIFEST} counts {sum(counts.values())} {split} images "
                              f"but its shards hold {rows[split]}; {fix}")
    if hashes and fresh != cache:
        _write_cache(folder, fresh)
    return manifest


def _read_cache(folder: Path) -> dict[str, list]:
    """Shards whose hash was already checked: file -> [size, mtime_ns, sha256]."""
    try:
        cache = json.loads((folder / VERIFIED).read_text())
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(folder: Path, cache: dict[str, list]) -> None:
    """Best effort: a read-only shard folder is checked again next time, nothing more."""
    try:
        tmp = folder / f"{STAGING_PREFIX}verified-{os.getpid()}.tmp"
        tmp.write_text(json.dumps(cache) + "\n")
        tmp.replace(folder / VERIFIED)
    except OSError:
        pass


def manifest_hash(shards: str | Path) -> str:
    """One hash for a prepared set: the SHA-256 over its shards' own hashes."""
    manifest = load_manifest(shards)
    joined = "\n".join(f"{s['file']}:{s['sha256']}" for s in manifest["shards"])
    return hashlib.sha256(joined.encode()).hexdigest()


__all__ = ["MANIFEST", "SCHEMA", "PrepareOptions", "PrepareResult", "assign_splits",
           "check_split_sizes",
           "load_manifest", "manifest_hash", "prepare", "select", "verify_shards"]

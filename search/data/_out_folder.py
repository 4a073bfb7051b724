"""prepare's hold on its --out folder: the lock, the staging folders, signals held during an
install, which files there are its own, and the install that replaces them.

Private (used by :mod:`search.data.prepare`). Kept together because each piece guards the
same promise: a folder holds one complete shard set or the earlier one, never half of each,
and prepare never deletes a file it did not write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from search.data.layouts import SourceError
from search.data.manifest import SHARD_NAME, STAGING_PREFIX, VERIFIED
from search.filenames import MANIFEST

__all__ = ["HELD", "INSTALLING", "LOCK", "STAGING_PREFIX", "claim_out", "install", "locked",
           "refuse_if_locked", "signals_held"]

# What prepare writes in --out besides the manifest: shards by the name SHARD_NAME matches,
# a hidden staging folder while it writes (STAGING_PREFIX), its lock file while it runs, and
# the hash cache of verify_shards (VERIFIED). It deletes nothing else.
LOCK = ".prepare.lock"  # flock()ed while a prepare writes the folder; holds its pid
INSTALLING = ".prepare.installing"  # the names an install is writing (gone when it is done)

#: Lock file descriptors this process holds: a forked decode process closes its copies, so
#: a worker outliving a killed prepare cannot keep the folder locked.
HELD: set[int] = set()


def claim_out(out: Path) -> list[Path]:
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
    ours = {MANIFEST, VERIFIED, LOCK, INSTALLING} | _recorded(out) | _listed(out)
    entries = sorted(out.iterdir())
    foreign = [p.name for p in entries
               if p.name not in ours and not p.name.startswith(STAGING_PREFIX)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                          if len(foreign) > 5 else "")
        raise SourceError(
            f"--out {out} holds files that prepare did not write ({shown}); it replaces the "
            "shard set of a folder and never deletes what is not its own: choose a new or "
            "empty --out folder, or move those files out")
    return [p for p in entries if p.name in ours and p.name not in (MANIFEST, LOCK, INSTALLING)]


def _recorded(out: Path) -> set[str]:
    """The shard names a run killed mid-install was moving (:data:`INSTALLING`)."""
    if not (out / INSTALLING).is_file():
        return set()
    try:
        recorded = json.loads((out / INSTALLING).read_text())
    except (OSError, ValueError):
        recorded = []
    if not isinstance(recorded, list):
        return set()
    return {n for n in recorded if isinstance(n, str) and SHARD_NAME.match(n)}


def _listed(out: Path) -> set[str]:
    """The shard names the old manifest lists, or SourceError when it cannot be read."""
    if not (out / MANIFEST).exists():
        return set()
    try:
        listed = {s["file"] for s in json.loads((out / MANIFEST).read_text())["shards"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise SourceError(
            f"{out / MANIFEST} is not a readable prepare manifest, so prepare cannot tell "
            f"which files in {out} it wrote: choose a new or empty --out folder") from None
    return {name for name in listed if isinstance(name, str) and SHARD_NAME.match(name)}


def install(staging: Path, out: Path, old: Sequence[Path]) -> None:
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
def signals_held() -> Iterator[None]:
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


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
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
    HELD.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        for stale in out.glob(f"{STAGING_PREFIX}*"):  # a killed run's: no live run owns one now
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        with signals_held():
            lock.unlink(missing_ok=True)  # before the lock is let go: see _take_lock
            HELD.discard(fd)
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only when empty: a run that failed before writing anything


def _take_lock(out: Path, lock: Path) -> int:
    """An fd of ``lock``, flock()ed by this process, or SourceError naming the holder."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0),
                     0o644)
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


def refuse_if_locked(out: Path) -> None:
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

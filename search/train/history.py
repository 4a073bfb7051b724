"""A trial's own history: every epoch it reports, written by the trial itself, durably, before
the report goes to Tune. The one owner of that on-disk format.

Layout: ``<trial folder>/history/epoch_000003.json``, one small JSON object per epoch (every
metric the epoch reports, ``epoch``, where it ran: ``node_id``/``hostname``/``pid``, and
``timestamp``/``time_total_s``). The trial folder is the Tune trial's own for a
single-worker trial (``<experiment>/trial_<id>``) and the Train run's for a DDP trial
(``<experiment>/_train/trial_<id>``, rank 0 writes), on the storage path: a local or NFS
folder, or a URI (``s3://``, ``gs://``, ...) through pyarrow's filesystems.

Why one file per epoch and not one append-only file per trial: object stores have no
append (an "append" is a rewrite of the whole object, racing with any reader), while a whole
small object appears atomically. On a local or NFS folder each file is written under a temp
name, flushed and fsynced, then renamed into place (atomic) and the folder fsynced, so a
crash of the driver or of the trial itself loses at most the epoch in flight and never
leaves half a record. A trial that re-runs an epoch after a crash writes the same name
again: the last report wins, by construction. Readers take ``epoch_*.json`` only (temp
files are hidden) and keep one row per epoch, the latest ``timestamp`` (a DDP trial's
Train-run history and its Tune-folder history, were both present, merge by it).

Tune's own logs (result.json, progress.csv, written by logger callbacks in the driver) are
not needed: :func:`read_history` is what the tables read. Pure Python plus pyarrow's
filesystems; no Ray, no torch.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs

from search import storage
from search.filenames import TRAIN_RUNS, TRIAL_HISTORY, json_safe, trial_dirname

#: One epoch's file in a trial's history folder.
EPOCH_FILE = "epoch_{epoch:06d}.json"
_EPOCH_RE = re.compile(r"^epoch_(\d{6,})\.json$")


def epoch_filename(epoch: int) -> str:
    """``epoch_000003.json``: the file of epoch 3 (1-based, as reported)."""
    return EPOCH_FILE.format(epoch=int(epoch))


def _fsync_dir(path: str | Path) -> None:
    """Make a folder's entries (a new or renamed file in it) durable, where the OS allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder: nothing more to do there
        pass
    finally:
        os.close(fd)


class HistoryWriter:
    """Writes one trial's epochs into ``folder`` (a path on ``filesystem``).

    ``write`` returns only once the record is durable: on a local/NFS folder flushed,
    fsynced, renamed into place and its folder fsynced; on an object store, once the whole
    object is written (closing the output stream commits it).
    """

    def __init__(self, filesystem: Any, folder: str) -> None:
        self.fs = filesystem
        self.folder = str(folder).rstrip("/")
        self.local = isinstance(filesystem, pyarrow.fs.LocalFileSystem)
        self._made = False

    @classmethod
    def at(cls, location: str | os.PathLike[str]) -> HistoryWriter:
        """A writer for the history folder ``location`` (a local path or a URI)."""
        fs, path = storage.filesystem(location)
        return cls(fs, path)

    def write(self, record: Mapping[str, Any]) -> str:
        """Write one epoch's record (it must hold ``epoch``); returns the file's path."""
        epoch = int(record["epoch"])
        # default=str: an odd value is kept as text rather than failing the epoch
        data = (json.dumps(json_safe(dict(record)), sort_keys=True, default=str) + "\n").encode()
        name = epoch_filename(epoch)
        if self.local:
            return self._write_local(name, data)
        if not self._made:
            self.fs.create_dir(self.folder, recursive=True)
            self._made = True
        target = f"{self.folder}/{name}"
        with self.fs.open_output_stream(target) as out:  # a whole object: atomic when closed
            out.write(data)
        return target

    def _write_local(self, name: str, data: bytes) -> str:
        folder = Path(self.folder)
        if not self._made:
            made = [p for p in (folder, *folder.parents) if not p.is_dir()]
            folder.mkdir(parents=True, exist_ok=True)
            for new in reversed(made):  # each new folder's own entry in its parent
                _fsync_dir(new.parent)
            self._made = True
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
        _fsync_dir(folder)
        return str(folder / name)


def epoch_record(metrics: Mapping[str, Any], *, time_total_s: float | None = None,
                 timestamp: float | None = None) -> dict[str, Any]:
    """What a trial writes for one epoch: everything it reports, stamped with the wall clock
    (``timestamp``, seconds since the epoch) and its running time so far (``time_total_s``,
    across restores)."""
    record = dict(metrics)
    record["timestamp"] = time.time() if timestamp is None else float(timestamp)
    if time_total_s is not None:
        record["time_total_s"] = float(time_total_s)
    return record


# ------------------------------------------------------------------ reading
def history_folders(location: str | os.PathLike[str], trial_id: str) -> list[str]:
    """The history folders a trial of the experiment at ``location`` may have written: its
    Tune trial folder's (single-worker) and its Train run's (DDP)."""
    name = trial_dirname(trial_id)
    return [storage.join(location, name, TRIAL_HISTORY),
            storage.join(location, TRAIN_RUNS, name, TRIAL_HISTORY)]


def read_records(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every epoch record in one history folder (none when it does not exist), in file order.
    A file that cannot be read as a record is skipped with a warning (the tables then name
    its epoch as missing)."""
    fs, path = storage.filesystem(folder)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    records = []
    for info in sorted(infos, key=lambda i: i.path):
        match = _EPOCH_RE.match(info.base_name)
        if info.type != pyarrow.fs.FileType.File or not match:
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                record = json.loads(stream.read().decode("utf-8"))
            record.setdefault("epoch", int(match.group(1)))
        except (OSError, ValueError) as err:
            warnings.warn(f"skipping unreadable history record {info.path}: {err}",
                          stacklevel=2)
            continue
        records.append(record)
    return records


def latest_per_epoch(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per epoch, sorted by epoch: where an epoch was reported more than once
    (a re-run after a crash), the last report (latest ``timestamp``; among equals, the one
    read last) wins."""
    best: dict[int, tuple[float, int, dict[str, Any]]] = {}
    for order, record in enumerate(records):
        if record.get("epoch") is None:
            continue
        epoch = int(record["epoch"])
        stamp = record.get("timestamp")
        key = (float(stamp) if isinstance(stamp, int | float) else float("-inf"), order)
        if epoch not in best or key >= best[epoch][:2]:
            best[epoch] = (*key, dict(record))
    return [best[e][2] for e in sorted(best)]


def read_history(location: str | os.PathLike[str], trial_id: str) -> list[dict[str, Any]]:
    """A trial's epochs from its own history files, one per epoch (see
    :func:`latest_per_epoch`); empty when it wrote none (a results folder from before these
    files, or a trial that never reported)."""
    return latest_per_epoch(r for folder in history_folders(location, trial_id)
                            for r in read_records(folder))


def missing_epochs(have: Iterable[int], last: int | None) -> list[int]:
    """Epochs 1..``last`` (the last one Tune knows the trial reported) not in ``have``."""
    if not last:
        return []
    present = {int(e) for e in have}
    return [e for e in range(1, int(last) + 1) if e not in present]


def spans(epochs: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` as ``"1-3, 5"``."""
    runs: list[list[int]] = []
    for e in sorted({int(e) for e in epochs}):
        if runs and runs[-1][1] == e - 1:
            runs[-1][1] = e
        else:
            runs.append([e, e])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


__all__ = ["EPOCH_FILE", "HistoryWriter", "epoch_filename", "epoch_record", "history_folders",
           "latest_per_epoch", "missing_epochs", "read_history", "read_records", "spans"]

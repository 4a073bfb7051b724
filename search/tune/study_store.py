"""Where the search's Optuna study lives (``search.optuna_storage``): the one owner of it.

- ``journal`` (the default): Optuna's ``JournalStorage`` over a ``JournalFileBackend``,
  ``optuna.journal`` in the results folder. Append-only, with Optuna's own file lock (safe
  on NFS); held in memory by the driver, so TPE reads no database per ask. With a URI
  ``storage_path`` only the bytes appended since the last upload are sent, as numbered
  parts (``optuna.journal.parts/<offset>``), and ``--resume`` joins them again: the
  uploads add up to the journal's size, instead of the whole SQLite database after every
  trial (O(n^2) over a search).
- ``sqlite``: ``optuna.db`` in the results folder, the only format before issue 29.
- a database URL (``postgresql://user@host:5432/db``, ``mysql+pymysql://...``): Optuna's
  ``RDBStorage``; several drivers (each its own Tune experiment, same ``search.name``) then
  share one study, each seeing the others' trials when TPE samples.

Readers (importances, the report, the summary) take :func:`reader`, which also opens a
results folder written before issue 29 (``optuna.db`` only).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs

from search import storage
from search.config import ExperimentConfig
from search.filenames import OPTUNA_DB, OPTUNA_JOURNAL

#: Where the journal's uploaded parts live beside a URI experiment.
PARTS = f"{OPTUNA_JOURNAL}.parts"
#: The study files a results folder may hold (the journal first: the format since issue 29).
LOCAL_FILES = (OPTUNA_JOURNAL, OPTUNA_DB)


def is_url(cfg: ExperimentConfig) -> bool:
    """Whether the study lives in a database server, not in the results folder."""
    return "://" in cfg.search.optuna_storage


def local_file(cfg: ExperimentConfig, exp_dir: Path) -> Path | None:
    """The study's file in the results folder (None for a database URL)."""
    kind = cfg.search.optuna_storage
    if is_url(cfg):
        return None
    return exp_dir / (OPTUNA_DB if kind == "sqlite" else OPTUNA_JOURNAL)


def open_storage(cfg: ExperimentConfig, exp_dir: Path) -> Any:
    """The Optuna storage the search writes its study to."""
    if is_url(cfg):
        return optuna.storages.RDBStorage(cfg.search.optuna_storage)
    path = local_file(cfg, exp_dir)
    if cfg.search.optuna_storage == "sqlite":
        return optuna.storages.RDBStorage(f"sqlite:///{path}")
    return _journal(path)


def _journal(path: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend

    with warnings.catch_warnings():  # experimental in some Optuna versions
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def reader(results_dir: Path, cfg: ExperimentConfig | None = None) -> Any:
    """A storage to read a finished search's study from, or None when there is none: the
    journal, else ``optuna.db`` (results folders before issue 29), else the database URL."""
    for name in LOCAL_FILES:
        path = Path(results_dir) / name
        if path.is_file():
            return open_file(path)
    if cfg is not None and is_url(cfg):
        return optuna.storages.RDBStorage(cfg.search.optuna_storage)
    return None


def open_file(path: Path) -> Any:
    """The storage of a study file: ``optuna.db`` (SQLite), else a journal."""
    if Path(path).name.startswith(OPTUNA_DB):
        return optuna.storages.RDBStorage(f"sqlite:///{path}")
    return _journal(Path(path))


def describe(cfg: ExperimentConfig, exp_dir: Path | str) -> str:
    """Where to point optuna-dashboard (or optuna.load_study) at the study."""
    if is_url(cfg):
        return cfg.search.optuna_storage
    if cfg.search.optuna_storage == "sqlite":
        return f"sqlite:///{Path(exp_dir) / OPTUNA_DB}"
    return str(Path(exp_dir) / OPTUNA_JOURNAL)


def set_aside_stale(cfg: ExperimentConfig, exp_dir: Path, stamp: str) -> Path | None:
    """Move a study file left by a search that never got going out of the way (a database
    URL is shared on purpose: it stays)."""
    path = local_file(cfg, exp_dir)
    if path is None or not path.is_file():
        return None
    stale = path.with_name(f"{path.name}.stale-{stamp}")
    path.rename(stale)
    return stale


def fetch(cfg: ExperimentConfig, exp_dir: Path, location: str) -> None:
    """Before ``--resume`` from a URI: the study file back into the local mirror."""
    path = local_file(cfg, exp_dir)
    if path is None or path.is_file():
        return
    if path.name == OPTUNA_DB:
        if storage.exists(storage.join(location, OPTUNA_DB)):
            storage.download(storage.join(location, OPTUNA_DB), path)
        return
    fs, root = storage.filesystem(storage.join(location, PARTS))
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for info in sorted(infos, key=lambda i: i.base_name):
            with fs.open_input_stream(info.path) as part:
                out.write(part.read())


__all__ = ["LOCAL_FILES", "PARTS", "describe", "fetch", "is_url",
           "local_file", "open_file", "open_storage", "reader", "set_aside_stale"]

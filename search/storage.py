"""Experiment storage: a local (or NFS) folder, or any pyarrow filesystem URI.

Ray Tune and Ray Train write trials and checkpoints straight to ``cluster.storage_path``,
so on a cluster every node can reach them (``s3://``, ``gs://``, ``hdfs://``, an NFS path).
What needs a real local file (the Optuna SQLite study, the tables, the leaderboard, the
report) is written to a local mirror on the driver and uploaded when the search ends;
for a local ``storage_path`` the mirror is the experiment folder itself.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs

from search.filenames import CONFIG as CHECKPOINT_META
from search.paths import default_results_dir

if TYPE_CHECKING:
    from search.config import ExperimentConfig


def is_uri(location: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` locations (handled by pyarrow), False for plain paths."""
    return "://" in str(location)


def absolute(location: str | os.PathLike[str]) -> str | Path:
    """A URI as it is, a local path made absolute (``~`` expanded, symlinks resolved)."""
    if is_uri(location):
        return str(location)
    return Path(location).expanduser().resolve()


def join(location: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or a URI (URIs always use ``/``)."""
    if is_uri(location):
        return posixpath.join(str(location).rstrip("/"), *parts)
    return os.path.join(str(location), *parts)


def storage_root(cfg: ExperimentConfig) -> str:
    """``cluster.storage_path`` made absolute: a URI as it is, a relative path under the
    current folder (the default ``results`` under the project's results folder)."""
    path = cfg.cluster.storage_path
    if is_uri(path):
        return path
    base = Path(path).expanduser()
    if not base.is_absolute():
        base = default_results_dir() if path == "results" else Path.cwd() / base
    return str(base.resolve())


def check_storage(cfg: ExperimentConfig, name: str | None = None) -> str:
    """``<storage>/<name>`` (the experiment's folder by default) if it can be a folder, else a
    ConfigError naming ``cluster.storage_path`` and the file in the way: a storage path (or
    one of its parents, or the run's own folder) that is a regular file would otherwise fail
    deep inside Ray, after the cluster started. A URI is left to its file system."""
    from search.config import ConfigError

    root = storage_root(cfg)
    target = join(root, name if name is not None else cfg.search.name)
    if is_uri(root):
        return target
    path = Path(target)
    for folder in [path, *path.parents]:
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                what = ("" if folder == Path(root) else
                        "the run's folder " if folder == path else "its parent ")
                raise ConfigError(
                    f"cluster.storage_path {cfg.cluster.storage_path!r}: {what}{folder} is a "
                    "file (or a broken link), not a folder: set cluster.storage_path=FOLDER to a "
                    "folder (made if missing), or move that file away")
            break
    return target


def experiment_dir(cfg: ExperimentConfig) -> str:
    """``<storage>/<experiment name>``: where Tune and Train write (a path or a URI)."""
    return join(storage_root(cfg), cfg.search.name)


def local_experiment_dir(cfg: ExperimentConfig) -> Path:
    """Where the driver writes the tables, the Optuna study and the report.

    The experiment folder itself for local storage; for a URI, a local mirror under
    ``results/<name>`` that is uploaded to the URI when the search ends.
    """
    location = experiment_dir(cfg)
    if is_uri(location):
        return default_results_dir() / cfg.search.name
    return Path(location)


def filesystem(location: str | os.PathLike[str]) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path inside it)`` for a local path or a URI."""
    if is_uri(location):
        return pyarrow.fs.FileSystem.from_uri(str(location))
    return pyarrow.fs.LocalFileSystem(), str(absolute(location))


def exists(location: str | os.PathLike[str]) -> bool:
    """True when a local path or a URI names a file or folder."""
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def read_text(location: str | os.PathLike[str]) -> str:
    """A small UTF-8 file (a config, a table) from a local path or a URI."""
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def download(location: str, local: Path) -> Path:
    """Copy a remote file or folder to ``local`` (created); returns ``local``."""
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise FileNotFoundError(f"{location} does not exist")
    local = Path(local)
    if info.type == pyarrow.fs.FileType.File:
        local.parent.mkdir(parents=True, exist_ok=True)
    else:
        local.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(path, str(local), source_filesystem=fs,
                          destination_filesystem=pyarrow.fs.LocalFileSystem())
    return local


def upload(local: Path, location: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy the files directly in ``local`` (and its folders but ``skip``) to ``location``."""
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)
    copied = []
    for item in sorted(Path(local).iterdir()):
        if item.name in skip or item.name.startswith("."):
            continue
        target = posixpath.join(path, item.name)
        if item.is_dir():
            fs.create_dir(target, recursive=True)
        pyarrow.fs.copy_files(str(item), target, source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=fs)
        copied.append(item.name)
    return copied


def upload_file(local: Path, location: str) -> None:
    """Copy one local file to ``location`` (a path or URI naming the target file)."""
    fs, path = filesystem(location)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with open(local, "rb") as src, fs.open_output_stream(path) as dst:
        dst.write(src.read())


def mirror_checkpoint_metadata(location: str, local: Path, runs: str = "") -> int:
    """Copy every checkpoint's ``config.json`` under ``location/runs`` into ``local/runs``
    (``runs=""``: the trial folders of the experiment itself).

    The tables pick each trial's best checkpoint from these small files; weights stay
    remote until a checkpoint is needed (:func:`fetch_checkpoint`). Returns the count.
    """
    fs, root = filesystem(join(location, runs) if runs else location)
    if fs.get_file_info(root).type == pyarrow.fs.FileType.NotFound:
        return 0
    count = 0
    for info in fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True)):
        rel = posixpath.relpath(info.path, root)
        parts = rel.split("/")
        if len(parts) == 3 and parts[2] == CHECKPOINT_META and parts[1].startswith("checkpoint_"):
            target = Path(local) / runs / parts[0] / parts[1] / CHECKPOINT_META
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as stream:
                target.write_bytes(stream.read())
            count += 1
    return count


def fetch_checkpoint(location: str, local: Path, checkpoint: str | Path) -> Path:
    """Make a mirrored checkpoint folder complete (weights too), from its remote twin."""
    checkpoint = Path(checkpoint)
    rel = checkpoint.relative_to(local).as_posix()
    download(join(location, *rel.split("/")), checkpoint)
    return checkpoint


__all__ = ["absolute", "check_storage", "download", "exists", "experiment_dir", "fetch_checkpoint",
           "filesystem", "is_uri", "join", "local_experiment_dir", "mirror_checkpoint_metadata",
           "read_text", "storage_root", "upload", "upload_file"]

"""The Optuna study's upload to a URI storage path as trials end (Tune callbacks): the
journal's new bytes (:class:`JournalUploader`), or a SQLite snapshot (:class:`StudyUploader`).

Kept apart from :mod:`search.tune.study_store`, the format's owner, which the report and the
importances read without loading Ray; this is the part that needs Ray's ``Callback``.
"""

from __future__ import annotations

import posixpath
import sqlite3
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray.tune import Callback

from search import storage
from search.filenames import OPTUNA_DB
from search.tune.study_store import PARTS


class _UploadAsTrialsEnd(Callback):
    """Call :meth:`upload` whenever a trial ends and when the experiment does."""

    def upload(self) -> bool:
        raise NotImplementedError

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.upload()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.upload()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.upload()


class JournalUploader(_UploadAsTrialsEnd):
    """Upload what the journal gained since the last upload, as trials end (URI storage):
    a lost head node costs at most the trials still running, and every byte goes up once."""

    def __init__(self, journal: str, location: str) -> None:
        self.journal, self.location = journal, location
        self.sent: int | None = None  # bytes of the journal already uploaded

    def _uploaded(self, fs: Any, root: str) -> int:
        """Bytes already uploaded (a resumed driver continues after the last part)."""
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        return max((int(i.base_name) + (i.size or 0) for i in infos
                    if i.base_name.isdigit()), default=0)

    def upload(self) -> bool:
        try:
            fs, root = storage.filesystem(storage.join(self.location, PARTS))
            if self.sent is None:
                self.sent = self._uploaded(fs, root)
            with open(self.journal, "rb") as f:
                f.seek(self.sent)
                data = f.read()
            data = data[: data.rfind(b"\n") + 1]  # whole lines only: a writer may be mid-line
            if not data:
                return True
            fs.create_dir(root, recursive=True)
            with fs.open_output_stream(posixpath.join(root, f"{self.sent:015d}")) as out:
                out.write(data)
            self.sent += len(data)
            return True
        except Exception as err:  # a backup must never end the search
            warnings.warn(f"could not upload the Optuna journal to {self.location}: {err}",
                          stacklevel=2)
            return False


class StudyUploader(_UploadAsTrialsEnd):
    """Upload a consistent snapshot of the Optuna study to remote storage after each trial.

    With a URI ``storage_path`` the study lives in the driver's local mirror; uploading it
    as trials end means a lost head node costs at most the trials still running.
    SQLite's backup API gives a consistent copy even while Optuna writes.
    """

    def __init__(self, db: str, location: str) -> None:
        self.db = db
        self.location = location

    def upload(self) -> bool:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                snapshot = Path(tmp) / OPTUNA_DB
                src, dst = sqlite3.connect(self.db), sqlite3.connect(snapshot)
                try:
                    src.backup(dst)
                finally:
                    src.close()
                    dst.close()
                storage.upload_file(snapshot, storage.join(self.location, OPTUNA_DB))
            return True
        except Exception as err:  # a backup must never end the search
            warnings.warn(f"could not upload the Optuna study to {self.location}: {err}",
                          stacklevel=2)
            return False


__all__ = ["JournalUploader", "StudyUploader"]

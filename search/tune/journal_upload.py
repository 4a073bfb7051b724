"""The Optuna journal's upload to a URI storage path, as trials end (a Tune callback).

Kept apart from :mod:`search.tune.study_store`, the format's owner, which the report and the
importances read without loading Ray; this is the one part that needs Ray's ``Callback``.
"""

from __future__ import annotations

import posixpath
import warnings
from typing import Any

import pyarrow.fs
from ray.tune import Callback

from search import storage
from search.tune.study_store import PARTS


class JournalUploader(Callback):
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

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.upload()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.upload()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.upload()


__all__ = ["JournalUploader"]

"""Retention by rank: weights only for the trials that can still be a finalist (issue 29).

Tune keeps each trial's best two checkpoint folders and its latest (``num_to_keep=2``), each
with weights and optimiser state: about 0.8 GB per resnet50 trial, 8 TB over 10,000 trials.
Only the finalists' weights are read again (their test split, ``export``), plus the latest
checkpoint of a trial still running (its resume). So :class:`WeightRetention`, a Tune
callback in the driver, keeps:

- the weights of the checkpoint the tables choose (the best kept one by ``search.metric``)
  of the best ``cluster.keep_weights`` trials of each architecture (the finalists' stage
  takes the best trial of each);
- the latest checkpoint, weights and optimiser state, of every trial not ended;

and deletes every other checkpoint's ``model.safetensors`` and ``trainer_state.pt`` (only
those two names, only in ``checkpoint_*`` folders of this experiment's trials: files the
project wrote), leaving config.json, the metrics and the validation predictions, and a
``weights_released.json`` that export's error names. Weight bytes are then at most
(k x architectures + running trials) checkpoints, whatever the number of trials.

The ranking is rebuilt from Tune's trials on the first event after a start or ``--resume``
(Tune restores a callback as it was built, not as it ran), then kept up to date per result.
"""

from __future__ import annotations

import heapq
import json
import math
import posixpath
from collections.abc import Sequence
from typing import Any

import pyarrow.fs
from ray.tune import Callback

from search import storage
from search.filenames import (
    CHECKPOINT_GLOB,
    CONFIG,
    RELEASED,
    STATE,
    TRAIN_RUNS,
    WEIGHTS,
    trial_dirname,
)
from search.model.checkpoint import RELEASABLE, released_note

ENDED = ("TERMINATED", "ERROR")


class WeightRetention(Callback):
    """Delete the weights of checkpoints no finalist or resume can need (see module doc)."""

    def __init__(self, location: str, metric: str, mode: str, keep: int,
                 default_arch: str = "") -> None:
        self.location, self.metric, self.mode, self.keep = location, metric, mode, keep
        self.default_arch = default_arch
        self.best: dict[str, float] = {}  # trial id -> its best value of the metric so far
        self.arch: dict[str, str] = {}
        self.ended: set[str] = set()
        self.kept: dict[str, set[str]] = {}  # architecture -> its top-k trial ids
        self.built = False
        self.released_bytes = 0  # what this driver deleted (benchmarks read it)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment: the ranking is rebuilt on resume.
        return {**self.__dict__, "best": {}, "arch": {}, "ended": set(), "kept": {},
                "built": False}

    # ------------------------------------------------------------------ Tune's events
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._build(trials)
        self._note(trial, result.get(self.metric))
        self._update(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trials, trial)

    # ------------------------------------------------------------------ the ranking
    def _build(self, trials: Sequence[Any]) -> None:
        """The ranking from Tune's own record of every trial (once per driver)."""
        if self.built:
            return
        self.built = True
        for t in trials:
            value = (t.metric_analysis.get(self.metric) or {}).get(self.mode)
            self._note(t, value)
            if t.status in ENDED:
                self.ended.add(t.trial_id)
        for arch in set(self.arch.values()):
            self.kept[arch] = self._top(arch)
        for t in trials:  # what a driver stopped before it could release
            if t.trial_id in self.ended and not self._is_kept(t.trial_id):
                self._prune(t.trial_id)

    def _note(self, trial: Any, value: Any) -> None:
        tid = trial.trial_id
        self.arch.setdefault(tid, str((trial.config or {}).get("arch", self.default_arch)))
        if not isinstance(value, int | float) or math.isnan(value):
            return
        old = self.best.get(tid)
        if old is None or (value > old if self.mode == "max" else value < old):
            self.best[tid] = float(value)

    def _top(self, arch: str) -> set[str]:
        ids = [t for t, a in self.arch.items() if a == arch and t in self.best]
        sign = 1.0 if self.mode == "max" else -1.0
        return set(heapq.nlargest(self.keep, ids, key=lambda t: sign * self.best[t]))

    def _is_kept(self, tid: str) -> bool:
        return tid in self.kept.get(self.arch.get(tid, ""), set())

    def _update(self, tid: str) -> None:
        """Re-rank the trial's architecture; prune the trial and any trial it pushed out."""
        arch = self.arch[tid]
        before, after = self.kept.get(arch, set()), self._top(arch)
        self.kept[arch] = after
        for other in before - after:
            self._prune(other)
        self._prune(tid)

    def _end(self, trials: Sequence[Any], trial: Any) -> None:
        self._build(trials)
        self.ended.add(trial.trial_id)
        self._note(trial, (trial.metric_analysis.get(self.metric) or {}).get(self.mode))
        self._update(trial.trial_id)

    # ------------------------------------------------------------------ the files
    def _prune(self, tid: str) -> None:
        """Delete what no one will read from the trial's checkpoints: optimiser state but
        the latest's, weights but the latest's (running) and the best's (a kept trial)."""
        fs, folders = self._checkpoints(tid)
        if not folders:
            return
        latest = folders[-1] if tid not in self.ended else None
        best = self._best_folder(fs, folders) if self._is_kept(tid) else None
        for folder in folders:
            if folder == latest:
                continue
            names = [STATE] if folder == best else list(RELEASABLE)
            self._delete(fs, folder, names, tid)

    def _checkpoints(self, tid: str) -> tuple[Any, list[str]]:
        """(filesystem, the trial's checkpoint folders, oldest first)."""
        fs, root = storage.filesystem(self.location)
        folders: list[str] = []
        for run in (trial_dirname(tid), posixpath.join(TRAIN_RUNS, trial_dirname(tid))):
            selector = pyarrow.fs.FileSelector(posixpath.join(root, run), allow_not_found=True)
            try:
                infos = fs.get_file_info(selector)
            except OSError:
                continue
            prefix = CHECKPOINT_GLOB.rstrip("*")
            folders += sorted(i.path for i in infos if i.type == pyarrow.fs.FileType.Directory
                              and i.base_name.startswith(prefix))
        return fs, folders

    def _best_folder(self, fs: Any, folders: Sequence[str]) -> str | None:
        """The folder the tables will choose: the best by the metric in its config.json."""
        best, value = None, None
        for folder in folders:
            try:
                with fs.open_input_stream(posixpath.join(folder, CONFIG)) as f:
                    v = json.loads(f.read()).get("metrics", {}).get(self.metric)
            except (OSError, ValueError):
                continue
            if isinstance(v, int | float) and (value is None or (
                    v > value if self.mode == "max" else v < value)):
                best, value = folder, v
        return best

    def _delete(self, fs: Any, folder: str, names: Sequence[str], tid: str) -> None:
        deleted = []
        for name in names:
            path = posixpath.join(folder, name)
            info = fs.get_file_info(path)
            if info.type != pyarrow.fs.FileType.File:
                continue
            try:
                fs.delete_file(path)
            except OSError:  # gone already (Tune dropped the folder), or not ours to delete
                continue
            self.released_bytes += max(info.size or 0, 0)
            deleted.append(name)
        if WEIGHTS in deleted:
            reason = (f"trial {tid} was not among the best {self.keep} of its architecture "
                      f"by {self.metric}")
            with fs.open_output_stream(posixpath.join(folder, RELEASED)) as out:
                out.write(released_note(deleted, reason))



def retention(cfg: Any, location: str) -> list[Any]:
    """The search's retention callback, or none with ``cluster.keep_weights: all``."""
    keep = cfg.cluster.keep_weights
    if keep == "all":
        return []
    return [WeightRetention(location, cfg.search.metric, cfg.search.resolved_mode(), int(keep),
                            default_arch=cfg.model.arch)]


__all__ = ["WeightRetention", "retention"]

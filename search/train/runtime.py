"""Where a trial's training loop runs: the small interface the loop reports, checkpoints and
resumes through, implemented once over ``ray.tune`` and once over ``ray.train``.

- :class:`TuneRuntime` runs the loop in the Tune trial's own process (one worker, the
  default and the study's shape: one GPU per trial). No ``TorchTrainer``, no controller,
  no second placement group: the trial's own placement group holds its training CPUs/GPU
  and the CPUs of its Ray Data tasks, so a trial that starts can always finish.
- :class:`TrainRuntime` runs it in each worker of a ``TorchTrainer`` (multi-worker DDP).

The loop (:mod:`search.train.worker`) sees only this interface, so neither path copies it.

Imports: ray.train (Train V2's controller machinery) is imported inside TrainRuntime only: a
single-worker trial runs under ray.tune in its own process and never needs it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from search import catalog
from search.catalog import COSTS, LATENCY_MS
from search.filenames import TRIAL_HISTORY
from search.train.history import HistoryWriter
from search.train.record import pack


class Runtime(Protocol):
    """What the training loop needs from whatever runs it."""

    rank: int
    world_size: int

    def device(self) -> torch.device:
        """The device this worker trains on."""

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the device (and wrap it for DDP where there are peers)."""

    def dataset(self, split: str) -> Any:
        """This worker's part of a split: something with ``iter_batches``/``iter_torch_batches``."""

    def restored(self) -> contextlib.AbstractContextManager[Path | None]:
        """The folder of the checkpoint to resume from (``None`` for a fresh start)."""

    def report(self, metrics: Mapping[str, Any], checkpoint: Path | None) -> None:
        """Report one epoch's metrics, with that epoch's checkpoint folder (rank 0 only)."""

    def should_stop(self) -> bool:
        """True when the trial has been told to stop (so the loop can leave between batches)."""

    def history(self) -> HistoryWriter | None:
        """Where this trial writes its own epoch history (:mod:`search.train.history`): a
        folder in its trial folder on the storage path; ``None`` where there is none."""


def search_keys(metric: str, objectives: Sequence[str] = ()) -> tuple[str, ...]:
    """What a search's trial reports to Tune: what ASHA (``epoch``), Optuna (the metric and
    objectives) and the progress lines read; the tables read the trials' history files."""
    return ("epoch", metric, *objectives, catalog.val(catalog.F1), catalog.TRAIN_LOSS,
            "time_total_s", *(COSTS if LATENCY_MS in objectives else ()))


def placement() -> dict[str, Any]:
    """Where this process runs: node id, hostname and pid (recorded with every epoch)."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return {"node_id": node, "hostname": socket.gethostname(), "pid": os.getpid()}


@contextlib.contextmanager
def _as_directory(checkpoint: Any) -> Iterator[Path | None]:
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as d:
        yield Path(d)


class TuneRuntime:
    """The loop inside a Tune function trainable: reports with ``ray.tune.report``.

    ``datasets`` are the trial's own Ray datasets, built in this process (their tasks run in
    the trial's placement group, see :func:`search.train.driver.pin_data_to_trial`).
    ``keys``: the only metrics Tune keeps statistics of (a search's: :func:`search_keys`);
    the rest of the record travels packed as one string (:mod:`search.train.record`), and
    the whole record goes to the trial's history files and checkpoint anyway.
    """

    rank = 0
    world_size = 1

    def __init__(self, datasets: Mapping[str, Any], *, use_gpu: bool,
                 keys: Collection[str] | None = None) -> None:
        self._keys = None if keys is None else frozenset(keys)
        self._datasets = dict(datasets)
        self._device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")

    def device(self) -> torch.device:
        return self._device

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self._device)

    def dataset(self, split: str) -> Any:
        return self._datasets[split]

    def restored(self) -> contextlib.AbstractContextManager[Path | None]:
        from ray import tune

        return _as_directory(tune.get_checkpoint())

    def report(self, metrics: Mapping[str, Any], checkpoint: Path | None) -> None:
        from ray import tune

        ckpt = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        told = dict(metrics) if self._keys is None else pack(metrics, self._keys)
        tune.report(told, checkpoint=ckpt)

    def should_stop(self) -> bool:
        # Tune sets this event when the scheduler stops the trial. Leaving between batches
        # (instead of at the next report, an epoch later) frees the trial's resources at once
        # and lets Tune hand this process to the next trial (reuse_actors).
        from ray.train._internal.session import get_session

        session = get_session()
        event = getattr(session, "stop_event", None)
        return bool(event is not None and event.is_set())

    def history(self) -> HistoryWriter | None:
        # The Tune trial's own folder on the storage path (a local folder or a URI, through
        # the filesystem Tune resolved), not get_trial_dir(): that is a local working folder.
        from ray.train._internal.session import get_session

        where = getattr(get_session(), "storage", None)
        if where is None:
            return None
        return HistoryWriter(where.storage_filesystem, f"{where.trial_fs_path}/{TRIAL_HISTORY}")


class TrainRuntime:
    """The loop inside a ``TorchTrainer`` worker: reports with ``ray.train.report``."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()

    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def dataset(self, split: str) -> Any:
        import ray.train

        return ray.train.get_dataset_shard(split)

    def restored(self) -> contextlib.AbstractContextManager[Path | None]:
        import ray.train

        return _as_directory(ray.train.get_checkpoint())

    def report(self, metrics: Mapping[str, Any], checkpoint: Path | None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        ray.train.report(dict(metrics), checkpoint=ckpt)

    def should_stop(self) -> bool:
        return False  # Train stops its workers itself

    def history(self) -> HistoryWriter | None:
        # The trial's Train run folder (<experiment>/_train/trial_<id>, named by the driver
        # after the trial), where its checkpoints are too.
        import ray.train

        where = ray.train.get_context().get_storage()
        return HistoryWriter(where.storage_filesystem,
                             f"{where.experiment_fs_path}/{TRIAL_HISTORY}")


__all__ = ["Runtime", "TrainRuntime", "TuneRuntime", "placement"]

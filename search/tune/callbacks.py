"""The callbacks a search's ``Tuner`` runs besides Tune's own: its console lines, the
TensorBoard logger, the janitor of DDP trials' placement groups, the study's upload to a URI
storage path and the retention of trials' weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search import storage
from search.config import ExperimentConfig
from search.filenames import OPTUNA_DB
from search.tune import study_store
from search.tune.janitor import PlacementGroupJanitor
from search.tune.progress import ProgressPrinter
from search.tune.retention import retention
from search.tune.study_upload import JournalUploader, StudyUploader
from search.tune.tensorboard import tensorboard_logger


def search_callbacks(cfg: ExperimentConfig, printer: ProgressPrinter, exp_dir: Path,
                     location: str) -> list[Any]:
    """Every callback of the search's ``RunConfig``, in the order Tune calls them."""
    return [printer.callback(), *tensorboard_logger(), *janitors(cfg),
            *uploaders(cfg, exp_dir, location), *retention(cfg, location)]


def janitors(cfg: ExperimentConfig) -> list[Any]:
    """Only DDP trials make placement groups of their own that a stopped trial can leave."""
    return [PlacementGroupJanitor()] if cfg.cluster.num_workers > 1 else []


def uploaders(cfg: ExperimentConfig, exp_dir: Path, location: str) -> list[Any]:
    """The study's upload to a URI storage path: the journal's new bytes, or the whole
    SQLite file (``search.optuna_storage: sqlite``); nothing for a database URL."""
    path = study_store.local_file(cfg, exp_dir)
    if not storage.is_uri(location) or path is None:
        return []
    if path.name == OPTUNA_DB:
        return [StudyUploader(str(path), location)]
    return [JournalUploader(str(path), location)]


__all__ = ["janitors", "search_callbacks", "uploaders"]

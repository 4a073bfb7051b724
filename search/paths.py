"""Where the project keeps data and results by default.

A source checkout (editable install, ``ray submit`` with the repo mounted) keeps them in the
repo's ``datasets/`` and ``results/``; an installed wheel keeps them under the current folder.
``DEEPFAKE_SEARCH_HOME`` overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder that holds ``datasets/`` and ``results/``."""
    env = os.environ.get("DEEPFAKE_SEARCH_HOME")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and (repo / "search").is_dir():
        return repo
    return Path.cwd().resolve()


def default_source_dir(layout: str) -> Path:
    """Where a downloaded (or generated, for the demo) source is expected."""
    return project_root() / "datasets" / layout / "source"


def default_shards_dir(layout: str) -> Path:
    """Where prepared shards of a source go (git-ignored)."""
    return project_root() / "datasets" / layout / "shards"


def default_results_dir() -> Path:
    """Where experiments are written unless ``cluster.storage_path`` says otherwise."""
    return project_root() / "results"


__all__ = ["default_results_dir", "default_shards_dir", "default_source_dir", "project_root"]

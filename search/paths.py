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


def resolve_user_path(path: str | Path) -> Path:
    """A path as the user gave it: absolute, or relative to the current folder when it exists
    there, else relative to the project root.

    ``ray submit`` runs ``search/run.py`` from the head node's home folder while the checkout
    is mounted at ``~/deepfake-search``: ``--config examples/study.yaml`` and
    ``data.shards: datasets/...`` then name files of the project, not of the home folder.
    """
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path.resolve()
    in_project = project_root() / path
    return in_project.resolve() if in_project.exists() else path.resolve()


def default_source_dir(layout: str) -> Path:
    """Where a downloaded (or generated, for the demo) source is expected."""
    return project_root() / "datasets" / layout / "source"


def default_shards_dir(layout: str) -> Path:
    """Where prepared shards of a source go (git-ignored)."""
    return project_root() / "datasets" / layout / "shards"


def default_results_dir() -> Path:
    """Where experiments are written unless ``cluster.storage_path`` says otherwise."""
    return project_root() / "results"


__all__ = ["default_results_dir", "default_shards_dir", "default_source_dir", "project_root",
           "resolve_user_path"]

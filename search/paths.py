"""Where the project keeps data and results by default.

A source checkout (editable install, ``ray submit`` with the repo mounted) keeps them in the
repo's ``datasets/`` and ``results/``; an installed wheel keeps them under the current folder.
``DEEPFAKE_SEARCH_HOME`` overrides both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The one rule for every name that becomes a folder (``search.name``, ``run --name``,
#: ``train --name``): one path component, no separator, no leading dot (so never ``..``),
#: short enough for any file system (255 bytes is the usual limit of one component).
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]*")
FOLDER_NAME_MAX = 128
FOLDER_NAME_RULE = ("must be a folder name: letters, digits, '.', '_', '-' and '=', starting "
                    f"with a letter or digit, at most {FOLDER_NAME_MAX} characters (it names "
                    "a folder under cluster.storage_path)")


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


def folder_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a folder (:data:`FOLDER_NAME_RULE`), else None."""
    ok = (isinstance(name, str) and len(name) <= FOLDER_NAME_MAX
          and FOLDER_NAME.fullmatch(name) is not None)
    return None if ok else FOLDER_NAME_RULE


def default_source_dir(layout: str) -> Path:
    """Where a downloaded (or generated, for the demo) source is expected."""
    return project_root() / "datasets" / layout / "source"


def default_shards_dir(layout: str) -> Path:
    """Where prepared shards of a source go (git-ignored)."""
    return project_root() / "datasets" / layout / "shards"


def default_results_dir() -> Path:
    """Where experiments are written unless ``cluster.storage_path`` says otherwise."""
    return project_root() / "results"


__all__ = ["FOLDER_NAME", "FOLDER_NAME_RULE", "default_results_dir",
           "default_shards_dir", "default_source_dir", "folder_name_problem", "project_root",
           "resolve_user_path"]

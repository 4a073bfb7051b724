"""Where an export lands: ``--out`` checked before any work, and the staged files moved in.

An export owns only its own files (:data:`OWNED`): over an earlier export it replaces them
one by one and keeps whatever else a user put beside them; a folder that is not an export
is refused rather than mixed into.
"""

from __future__ import annotations

import json
from pathlib import Path

from search.filenames import CONFIG, METRICS, MODEL_CARD, WEIGHTS, write_problem
from search.filenames import ONNX as ONNX_FILE

METRICS_FILE = METRICS
CARD = MODEL_CARD


#: The files an export writes: the only ones it ever replaces in ``--out`` (config.json
#: last, since it is what marks a folder as an export).
OWNED = (WEIGHTS, ONNX_FILE, METRICS_FILE, CARD, CONFIG)


def check_out(out: Path, *, given: bool) -> None:
    """Refuse an ``--out`` that cannot be written, is a file, or a folder with files that
    are not an export's: an earlier export there is updated file by file, and anything else
    in it is kept. Asked before the model is loaded: no work is lost to the write."""
    problem = write_problem(out)
    if problem and given:
        shown = out if len(str(out)) <= 160 else f"{out.parent}/{out.name[:8]}..."  # reason in view
        raise ValueError(f"--out {shown}: {problem}; choose another folder")
    if problem:
        raise ValueError(f"cannot write the export to {out}: {problem}; pass --out DIR, a "
                         "folder you can write to")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder (new, empty, or an earlier "
                         "export)")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise ValueError(f"--out {out} is a folder that holds files and is not an exported "
                         "model folder: choose a new or empty folder")


def install(staging: Path, out: Path) -> None:
    """Move the staged files into ``out``, each replacing only its own earlier version: a
    user's files beside an earlier export (scores, notes) stay where they are."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        (staging / name).replace(out / name)


def is_export(path: Path) -> bool:
    try:
        return str(json.loads((path / CONFIG).read_text()).get("format", "")).startswith(
            "deepfake-search-model")
    except (OSError, ValueError):
        return False


__all__ = ["CARD", "METRICS_FILE", "OWNED", "check_out", "install", "is_export"]

"""The on-disk formats of a run: one owner for every file name (no torch, no Ray).

Three folders are written and read by several commands:

- a **checkpoint folder** (one epoch of one trial): weights, the resolved config with that
  epoch's metrics, the optimiser state, the validation predictions;
- a **model folder** (``export``): weights, ONNX, config, model card;
- a **results folder** (``<storage>/<experiment>``): tables, leaderboard, the Optuna study,
  the report, one folder per trial.

Every module names these files through this one, so a rename happens in one place and the
lightweight commands (tables, report, ONNX predict) can import it without loading torch.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# --- checkpoint folder (and the weights + config of a model folder)
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "trainer_state.pt"
VAL_PREDICTIONS = "val_predictions.csv"
TEST_PREDICTIONS = "test_predictions.csv"
CHECKPOINT_GLOB = "checkpoint_*"
#: Written where the search released a checkpoint's weights and optimiser state (issue 29:
#: search.tune.retention); config.json and the validation predictions stay beside it.
RELEASED = "weights_released.json"

# --- model folder (export)
ONNX = "model.onnx"
MODEL_CARD = "README.md"
METRICS = "metrics.json"

# --- results folder
EXPERIMENT = "experiment.json"  # the resolved experiment config, for --resume and export
SPACE = "space.txt"
OPTUNA_DB = "optuna.db"  # the Optuna study in SQLite (search.optuna_storage: sqlite; the
                         # only format before issue 29, still read)
OPTUNA_JOURNAL = "optuna.journal"  # the study as Optuna's append-only journal (the default)
TRIALS_PARQUET = "trials.parquet"
TRIALS_CSV = "trials.csv"
HISTORY = "history.parquet"
LEADERBOARD = "leaderboard.md"
TEST_METRICS = "test_metrics.json"
CROSS_MD = "cross_dataset.md"
CROSS_JSON = "cross_dataset.json"
ROBUSTNESS = "robustness.json"  # finalists' AUC under JPEG re-compression and downscaling
LATENCY = "latency.json"  # finalists' ONNX Runtime latency per image (search.model.latency)
REPORT_DIR = "report"
REPORT_FILE = "report.html"
TRIAL_PREFIX = "trial_"  # <experiment>/trial_<id>/: Tune's trial folder (TensorBoard, checkpoints)
TRAIN_RUNS = "_train"  # <experiment>/_train/trial_<id>/: a multi-worker trial's Train run
#: <trial folder>/history/epoch_000003.json: every epoch a trial reported, written by the
#: trial itself before Tune hears of it (format: search.train.history)
TRIAL_HISTORY = "history"

# --- prepared shards
MANIFEST = "manifest.json"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (shards in manifests, files of a model
    folder in its card)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON for the files above: numpy scalars to Python, NaN and
    infinities to ``null`` (``json.dumps`` would write ``NaN``, which JSON readers refuse)."""
    np = sys.modules.get("numpy")  # no numpy scalar can exist before numpy is imported
    if np is not None and isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def trial_dirname(trial_id: str) -> str:
    """The folder name of one trial (in the results folder and under ``_train``)."""
    return f"{TRIAL_PREFIX}{trial_id}"


def relative_checkpoint(results_dir: str | Path, checkpoint: str | Path) -> str:
    """How the trials table records a checkpoint folder: relative to the results folder
    (``trial_<id>/checkpoint_<n>``, ``_train/trial_<id>/checkpoint_<n>``), so a results
    folder moved, copied or archived still names its own checkpoints."""
    return Path(checkpoint).relative_to(results_dir).as_posix()


def checkpoint_in(results_dir: str | Path, recorded: Any) -> Path | None:
    """The checkpoint folder a trials table's ``checkpoint`` names, inside ``results_dir``.

    Relative (this version) it is joined to the results folder; absolute (tables of older
    versions) it is re-rooted there by its trailing ``[_train/]trial_<id>/checkpoint_<n>``.
    Never a folder outside ``results_dir``: a copied results folder must not read the
    original's weights. ``None`` when nothing is recorded; whether the folder exists is for
    the caller to check (a missing checkpoint is an error there)."""
    if not isinstance(recorded, str | Path) or not str(recorded):
        return None
    path = Path(recorded)
    if not path.is_absolute():
        return Path(results_dir) / path
    parts = path.parts
    keep = 3 if len(parts) >= 3 and parts[-3] == TRAIN_RUNS else 2
    return Path(results_dir).joinpath(*parts[-keep:])


#: The longest name of one path component on the usual file systems (ext4, xfs, APFS).
NAME_MAX = 255


def write_problem(target: str | Path) -> str | None:
    """Why ``target`` (a file or folder to be written, made if missing) cannot be written,
    else None: a name over :data:`NAME_MAX` bytes, or a nearest existing folder where a file
    cannot be made. Probed with a real temporary file, since ``os.access`` does not see a
    read-only mount; asked before the work, so the work is never lost to the write."""
    target = Path(target).expanduser()
    long = next((part for part in target.parts if len(part.encode()) > NAME_MAX), None)
    if long is not None:
        return f"the name {long[:40]}... is longer than {NAME_MAX} bytes"
    folder = target if target.is_dir() else target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)  # the probe made just now, nothing else
    except OSError as err:
        return f"cannot write in {folder} ({err.strerror or err})"
    return None


def portable_path(path: str | Path, base: str | Path | None = None) -> str:
    """``path`` as a results folder records it: relative to ``base`` (the results folder)
    when inside it, else to the project root (the repository) when inside that or beside it
    (``../shared/data/...``), else as given (a URI, or a folder elsewhere). A results folder
    is read and re-run from other clones: the machine that made it must not be named in it."""
    from search.paths import project_root

    text = str(path)
    if not text or "://" in text or not Path(text).is_absolute():
        return text
    resolved, root = Path(text).resolve(), project_root()
    if base is not None and resolved.is_relative_to(Path(base).resolve()):
        return Path(os.path.relpath(resolved, Path(base).resolve())).as_posix()
    if resolved.is_relative_to(root.parent) and root.parent != root.parent.parent:
        return Path(os.path.relpath(resolved, root)).as_posix()
    return text


def portable_experiment(tree: dict[str, Any]) -> dict[str, Any]:
    """An experiment config (``ExperimentConfig.to_dict()``) as ``experiment.json`` and an
    export's config.json record it: its folders (shards, extra sources, storage path)
    through :func:`portable_path`; ``--resume`` and ``export`` resolve them from the project
    root again (``search.paths.resolve_user_path``)."""
    data, cluster = dict(tree.get("data", {})), dict(tree.get("cluster", {}))
    if "shards" in data:
        data["shards"] = portable_path(data["shards"])
    if isinstance(data.get("extra_sources"), dict):
        data["extra_sources"] = {k: portable_path(v) for k, v in data["extra_sources"].items()}
    if "storage_path" in cluster:
        cluster["storage_path"] = portable_path(cluster["storage_path"])
    return {**tree, "data": data, "cluster": cluster}


__all__ = [
    "CHECKPOINT_GLOB", "CONFIG", "CROSS_JSON", "CROSS_MD", "EXPERIMENT", "HISTORY", "LATENCY", "LEADERBOARD",
    "MANIFEST", "METRICS", "MODEL_CARD", "ONNX", "OPTUNA_DB", "OPTUNA_JOURNAL", "RELEASED", "REPORT_DIR", "REPORT_FILE", "ROBUSTNESS", "SPACE",
    "STATE", "TEST_METRICS", "TEST_PREDICTIONS", "TRAIN_RUNS", "TRIALS_CSV", "TRIALS_PARQUET",
    "TRIAL_HISTORY", "TRIAL_PREFIX", "VAL_PREDICTIONS", "WEIGHTS", "checkpoint_in", "file_sha256", "json_safe",
    "NAME_MAX", "portable_experiment", "portable_path", "relative_checkpoint", "trial_dirname", "write_problem",
]

"""A trial's checkpoint folder, written by training and read by every command after it.

One epoch of one trial: ``model.safetensors`` (weights), ``config.json`` (the resolved
experiment, the model's input size/mean/std and that epoch's metrics: a checkpoint is
self-describing), ``trainer_state.pt`` (epoch and optimiser state, to resume) and
``val_predictions.csv`` (``id, label, p_fake`` of every validation image, for calibration
and operating points at export). This module is the one owner of that layout.

torch, safetensors and the registry are imported where weights are written or read: the
tables and the report read a checkpoint's metrics without loading torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from search.config import ExperimentConfig
from search.filenames import CHECKPOINT_GLOB, CONFIG, RELEASED, STATE, TRIAL_PREFIX, WEIGHTS
from search.model.folder import ModelFolderError, ModelInfo, build_torch_model, read_model_info

if TYPE_CHECKING:
    from torch import nn

#: The fix a broken checkpoint's error names (export and the test evaluation read them).
RETRAIN = "pick another trial (--trial) or re-train"
Predictions = tuple[np.ndarray, np.ndarray]  # (labels, p_fake) of one split


# ------------------------------------------------------------------ the model it holds
def input_spec(cfg: ExperimentConfig) -> dict[str, Any]:
    """Input size, mean and std the model is trained with (saved with every checkpoint)."""
    from search.model.registry import data_config

    size = None if cfg.model.native_input_size else cfg.model.input_size
    spec = data_config(cfg.model.arch, input_size=size)
    return {"input_size": int(spec["input_size"]), "mean": [float(v) for v in spec["mean"]],
            "std": [float(v) for v in spec["std"]]}


def build_model(cfg: ExperimentConfig, pretrained: bool | str | None = None) -> nn.Module:
    """The configured architecture (``pretrained`` overrides the config, e.g. for reloading)."""
    from search.model.registry import create_model, layer_kwargs

    return create_model(cfg.model.arch,
                        pretrained=cfg.model.pretrained if pretrained is None else pretrained,
                        input_size=input_spec(cfg)["input_size"], **layer_kwargs(cfg.model))


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module of a DDP-wrapped model (the model itself otherwise)."""
    return model.module if hasattr(model, "module") else model


# ------------------------------------------------------------------ writing
def save_checkpoint(directory: Path, model: nn.Module, cfg: ExperimentConfig,
                    extra: dict[str, Any]) -> None:
    """Weights as safetensors + the resolved config; a checkpoint is self-describing."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(json.dumps(
        {"experiment": cfg.to_dict(), "input": input_spec(cfg), **extra}, indent=1))


def save_trainer_state(directory: Path, epoch: int, optimizer_state: dict[str, Any]) -> None:
    """What resuming needs beside the weights: the epoch reached and the optimiser state."""
    import torch

    torch.save({"epoch": epoch, "optimizer": optimizer_state}, directory / STATE)


def write_predictions(path: Path, ids: Sequence[str], labels: np.ndarray,
                      probs: np.ndarray) -> None:
    """A predictions CSV (``id, label, p_fake``): validation in checkpoints, test after."""
    pd.DataFrame({"id": ids, "label": labels, "p_fake": probs}).to_csv(path, index=False)


# ------------------------------------------------------------------ released weights
#: What the search's retention deletes from a checkpoint it no longer needs (issue 29):
#: weights and optimiser state; config.json (metrics) and the validation predictions stay.
RELEASABLE = (WEIGHTS, STATE)
#: The setting that keeps every trial's weights, named by every error about released ones.
KEEP_ALL = "cluster.keep_weights: all"


def released_note(files: Sequence[str], reason: str) -> bytes:
    """The :data:`~search.filenames.RELEASED` file written beside what was deleted."""
    return json.dumps({"released": list(files), "reason": reason,
                       "keep_them_with": KEEP_ALL}, indent=1).encode()


def released_error(directory: str | Path, trial_id: str) -> str | None:
    """Why a checkpoint holds no weights when the search released them, else None."""
    path = Path(directory) / RELEASED
    if (Path(directory) / WEIGHTS).is_file() or not path.is_file():
        return None
    try:
        reason = json.loads(path.read_text()).get("reason", "")
    except (OSError, ValueError):
        reason = ""
    reason = reason or "not a finalist"
    return (f"trial {trial_id}'s weights were released during the search ({reason}; "
            f"{path}): only the best trials' weights are kept. Export a trial that kept them "
            f"(the best, or another in trials.csv), or set {KEEP_ALL} in the experiment YAML "
            "(or cluster.keep_weights=all on the command line) and re-run")


def resumable(directory: Path) -> Path | None:
    """The checkpoint a restored trial resumes from: ``directory``, or, when the search
    released its weights because a newer checkpoint had come in before the driver last saved
    its state, the newest later sibling that kept weights and optimiser state; None when
    there is none (the trial had ended: nothing to resume)."""
    directory = Path(directory)
    if (directory / WEIGHTS).is_file() and (directory / STATE).is_file():
        return directory
    # Retention keeps optimiser state in a trial's latest checkpoint only, and its weights in
    # the best ones: a newer sibling written before the driver's last save holds both.
    later = sorted(p for p in directory.parent.glob(CHECKPOINT_GLOB) if p.name > directory.name
                   and (p / WEIGHTS).is_file() and (p / STATE).is_file())
    if later:
        return later[-1]
    return directory if released_error(directory, "") is None else None


# ------------------------------------------------------------------ reading
def load_weights(model: nn.Module, directory: str | Path) -> nn.Module:
    """Load ``model.safetensors`` from a checkpoint folder into ``model`` (strict)."""
    from safetensors.torch import load_file

    unwrap(model).load_state_dict(load_file(str(Path(directory) / WEIGHTS)))
    return model


def load_trainer_state(directory: str | Path) -> dict[str, Any] | None:
    """``{"epoch", "optimizer"}`` saved by :func:`save_trainer_state` (tensors only); None
    when retention released it (optimiser state is kept in a trial's latest checkpoint)."""
    import torch

    path = Path(directory) / STATE
    return torch.load(path, weights_only=True) if path.is_file() else None


def checkpoint_metrics(directory: str | Path) -> dict[str, Any]:
    """The metrics of the epoch a checkpoint holds (its config.json; JSON only)."""
    return json.loads((Path(directory) / CONFIG).read_text()).get("metrics", {})


def read_predictions(path: Path) -> Predictions | None:
    """(labels, p_fake) of a predictions CSV (``id, label, p_fake``), None when absent."""
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    return frame["label"].to_numpy(np.int64), frame["p_fake"].to_numpy(np.float64)


def load_checkpoint(checkpoint_dir: str | Path) -> tuple[Any, ModelInfo]:
    """A trial's model (eval mode, CPU) and its folder's description; an exported model
    folder is refused."""
    released = released_error(checkpoint_dir,
                              Path(checkpoint_dir).parent.name.removeprefix(TRIAL_PREFIX))
    if released:
        raise ModelFolderError(released)
    info = read_model_info(checkpoint_dir, fix=RETRAIN)
    if info.kind != "checkpoint":
        raise ModelFolderError(f"{info.directory / CONFIG} is an exported model's config, not "
                               f"a checkpoint's: {RETRAIN}")
    return build_torch_model(info, fix=RETRAIN), info


def load_checkpoint_model(checkpoint_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """A trial's model rebuilt from its checkpoint folder (safetensors + config.json), in
    eval mode on CPU, and that config.json (``experiment``, ``input``, ``metrics``)."""
    model, info = load_checkpoint(checkpoint_dir)
    return model, info.meta


__all__ = ["KEEP_ALL", "RELEASABLE", "RETRAIN", "Predictions", "build_model",
           "checkpoint_metrics", "input_spec", "load_checkpoint", "load_checkpoint_model",
           "load_trainer_state", "load_weights", "read_predictions", "released_error",
           "released_note", "resumable", "save_checkpoint", "save_trainer_state", "unwrap",
           "write_predictions"]

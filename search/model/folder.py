"""Any model folder, described and rebuilt: the one loader of every command.

A *model folder* is either an exported model (``deepfake-search export``: config.json with
``format``, model.safetensors, model.onnx) or a trial's checkpoint folder (config.json with
``experiment``, model.safetensors). Both are read with JSON, safetensors and ONNX only:
nothing given to this module is ever unpickled, so a model folder from elsewhere cannot run
code on load. :class:`ModelInfo` says what a folder holds whichever kind it is;
:func:`build_torch_model` rebuilds it for predict, evaluate and export alike.

torch, safetensors' torch loader and the registry (which imports torch) are imported where
a model is rebuilt or a checkpoint's layer settings are read: reading an exported folder's
description (the ONNX path of predict) loads neither torch nor Ray.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search import catalog
from search.config import ConfigError, config_from_dict
from search.data.manifest import MAX_SIZE, load_manifest, manifest_hash
from search.data.sets import dataset_name
from search.filenames import CONFIG, WEIGHTS
from search.filenames import ONNX as ONNX_FILE

EXPORT_FORMAT = "deepfake-search-model/1"


DEFAULT_RULE = "default 0.5 (no validation threshold was saved)"


GIVEN_RULE = "given"


REEXPORT = "re-export the model (deepfake-search export RESULTS_DIR) or copy the folder again"


class ModelFolderError(ValueError):
    """A model folder's file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model folder says about its model, whichever kind of folder it is."""

    directory: Path
    kind: str  # "export" or "checkpoint"
    arch: str
    layers: dict[str, Any]  # the layer kwargs create_model takes for this arch
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    threshold: float
    threshold_rule: str
    image_size: int | None  # prepare's square size of the training shards (None: kept sizes)
    train_name: str  # short name of the training set (rows of the cross-dataset matrix)
    train_hash: str  # manifest_hash of the training shards ("" when unknown)
    meta: dict[str, Any] = field(repr=False, default_factory=dict)
    temperature: float | None = None  # fitted on validation by export; None: not calibrated
    # target FPR -> (threshold, rule): the operating points export chose on validation
    fpr_thresholds: dict[float, tuple[float, str]] = field(default_factory=dict)

    def has_onnx(self) -> bool:
        """True when the folder holds an ONNX graph (exported folders do)."""
        return (self.directory / ONNX_FILE).is_file()


def finite(value: Any) -> float | None:
    """``value`` as a finite float, else None (a bad number in a folder's JSON)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _training_set(shards: str) -> tuple[int | None, str, str]:
    """(image_size, name, manifest hash) of a training shard folder, best effort."""
    if not shards:
        return None, "unknown", ""
    try:
        manifest = load_manifest(shards)
        size = manifest.get("image_size")
        return (int(size) if size else None), dataset_name(shards), manifest_hash(shards)
    except Exception:  # the shards may live on another machine: the model still loads
        return None, dataset_name(shards), ""


def load_json(path: Path, fix: str = REEXPORT) -> dict[str, Any]:
    """A JSON object from a model, checkpoint or results folder, or ModelFolderError naming
    the file and ``fix`` (what to do about it)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path} is not readable JSON ({err}): {fix}") from None
    if not isinstance(meta, dict):
        raise ModelFolderError(f"{path} is not a JSON object: {fix}")
    return meta


def _input_spec(meta: dict[str, Any], where: Path,
                fix: str = REEXPORT) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input_size, mean, std) from the ``input`` section: three finite values each, std > 0
    (one value must not be broadcast silently to three channels)."""
    spec = meta.get("input")
    if not isinstance(spec, dict):
        raise ModelFolderError(f"{where} has no 'input' section (input_size, mean, std), so the "
                               f"images cannot be preprocessed as in training: {fix}")
    size = spec.get("input_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ModelFolderError(f"{where} input.input_size must be a positive integer, not "
                               f"{size!r}: {fix}")
    if size > MAX_SIZE:  # bounded as prepare bounds --size: 100000 px would be terabytes
        raise ModelFolderError(f"{where} input.input_size {size} is above the maximum of "
                               f"{MAX_SIZE} px (the largest square prepare makes): {fix}")
    values = {}
    for key in ("mean", "std"):
        v = spec.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(finite(x) is not None for x in v)):
            raise ModelFolderError(f"{where} input.{key} must be three numbers (R, G, B), not "
                                   f"{v!r}: {fix}")
        values[key] = tuple(float(x) for x in v)
    if min(values["std"]) <= 0:
        raise ModelFolderError(f"{where} input.std must be positive, not {list(values['std'])}: {fix}")
    return size, values["mean"], values["std"]


def _threshold(value: Any, where: str) -> float | None:
    """A saved threshold: None when none was saved (or NaN: validation had no FAKE), else a
    number in [0, 1]; anything else is an error, never a silent 0.5."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    number = None if isinstance(value, bool) else finite(value)
    if number is None or not 0.0 <= number <= 1.0 or isinstance(value, str):
        raise ModelFolderError(f"{where} must be a number between 0 and 1, not {value!r}: fix it, "
                               "delete it (0.5 is then used), or pass --threshold")
    return number


def _temperature(meta: dict[str, Any], where: Path, fix: str) -> float | None:
    """``calibration.temperature`` of an exported config: None when absent, else positive."""
    calibration = meta.get("calibration")
    if calibration is None:
        return None
    value = calibration.get("temperature") if isinstance(calibration, dict) else calibration
    if value is None:
        return None
    number = None if isinstance(value, (bool, str)) else finite(value)
    if number is None or number <= 0:
        raise ModelFolderError(f"{where} calibration.temperature must be a positive number, not "
                               f"{value!r}: {fix}")
    return number


def _fpr_thresholds(meta: dict[str, Any], where: Path,
                    fix: str) -> dict[float, tuple[float, str]]:
    """``operating_points`` of an exported config: target FPR -> (threshold, rule)."""
    points = meta.get("operating_points") or []
    if not isinstance(points, list):
        raise ModelFolderError(f"{where} operating_points must be a list: {fix}")
    out: dict[float, tuple[float, str]] = {}
    for point in points:
        target = finite(point.get("target_fpr")) if isinstance(point, dict) else None
        if target is None or not 0.0 <= target <= 1.0:
            raise ModelFolderError(f"{where} operating_points: every entry needs target_fpr "
                                   f"between 0 and 1, not {point!r}: {fix}")
        threshold = _threshold(point.get(catalog.THRESHOLD), f"{where} operating_points threshold")
        if threshold is not None:
            out[target] = (threshold, str(point.get("rule") or f"FPR <= {target:g} on validation"))
    return out


def read_model_info(model_dir: str | Path, *, fix: str = REEXPORT) -> ModelInfo:
    """Describe an exported model folder or a checkpoint folder (reads JSON only).

    ``fix`` ends every error message: what to do about a broken file (re-export, for a
    model folder; pick another trial, for a checkpoint that export or evaluate reads).
    """
    directory = Path(model_dir).expanduser().resolve()
    cfg_path = directory / CONFIG
    if not directory.is_dir():
        raise FileNotFoundError(f"model folder {directory} does not exist")
    if not cfg_path.is_file() or not (directory / WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{directory} is not a model folder: it needs {CONFIG} and {WEIGHTS} (an exported "
            "model from 'deepfake-search export', or a trial's checkpoint folder)")
    meta = load_json(cfg_path, fix)
    if str(meta.get("format", "")).startswith("deepfake-search-model"):
        return _export_info(directory, meta, fix)
    if "experiment" not in meta:
        raise ModelFolderError(f"{cfg_path} is neither an exported model's config (no 'format') "
                               f"nor a checkpoint's (no 'experiment'): {fix}")
    return _checkpoint_info(directory, meta, fix)


def _export_info(directory: Path, meta: dict[str, Any], fix: str) -> ModelInfo:
    """An exported folder's ``config.json`` (``format``, ``arch``, ``layers``, ``input``)."""
    cfg_path = directory / CONFIG
    size, mean, std = _input_spec(meta, cfg_path, fix)
    if not isinstance(meta.get("arch"), str) or not isinstance(meta.get("layers"), dict):
        raise ModelFolderError(f"{cfg_path} needs 'arch' (a name) and 'layers' (a mapping): "
                               f"{fix}")
    train = meta.get("training_data") if isinstance(meta.get("training_data"), dict) else {}
    threshold = _threshold(meta.get(catalog.THRESHOLD), f"{cfg_path} {catalog.THRESHOLD!r}")
    return ModelInfo(
        directory=directory, kind="export", arch=meta["arch"], layers=dict(meta["layers"]),
        input_size=size, mean=mean, std=std,
        threshold=0.5 if threshold is None else threshold,
        threshold_rule=meta.get("threshold_rule", "") if threshold is not None else DEFAULT_RULE,
        image_size=train.get("image_size"), train_name=train.get("name", "unknown"),
        train_hash=train.get("manifest_hash", ""), meta=meta,
        temperature=_temperature(meta, cfg_path, fix),
        fpr_thresholds=_fpr_thresholds(meta, cfg_path, fix))


def _checkpoint_info(directory: Path, meta: dict[str, Any], fix: str) -> ModelInfo:
    """A checkpoint's ``config.json`` (the trial's ``experiment``, ``input``, ``metrics``)."""
    from search.model.registry import layer_kwargs

    cfg_path = directory / CONFIG
    size, mean, std = _input_spec(meta, cfg_path, fix)
    try:
        cfg = config_from_dict(meta["experiment"])
    except ConfigError as err:
        raise ModelFolderError(f"{cfg_path} 'experiment': {err}") from None
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    key = catalog.val(catalog.THRESHOLD)
    threshold = _threshold(metrics.get(key), f"{cfg_path} metrics.{key}")
    image_size, name, digest = _training_set(cfg.data.shards)
    return ModelInfo(
        directory=directory, kind="checkpoint", arch=cfg.model.arch,
        layers=layer_kwargs(cfg.model), input_size=size, mean=mean, std=std,
        threshold=0.5 if threshold is None else threshold,
        threshold_rule="F1-optimal on validation" if threshold is not None else DEFAULT_RULE,
        image_size=image_size, train_name=name, train_hash=digest, meta=meta)


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``1 / (1 + exp(-logit / T))`` in float64, stable for any logit (no overflow)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(-np.logaddexp(0.0, -z))


def build_torch_model(info: ModelInfo, *, fix: str = REEXPORT) -> Any:
    """The model rebuilt from its config and safetensors weights, in eval mode on CPU: the
    one way every command (predict, evaluate, export) rebuilds a trained model."""
    from safetensors.torch import load_file

    from search.model.registry import create_model

    model = create_model(info.arch, pretrained=False, input_size=info.input_size, **info.layers)
    path = info.directory / WEIGHTS
    try:
        weights = load_file(str(path))
    except Exception as err:  # SafetensorError, OSError: a truncated or foreign file
        raise ModelFolderError(f"{path} cannot be read as safetensors ({err}): the file is "
                               f"truncated or not a weights file; {fix}") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[1:3] or [str(err)[:200]]
        raise ModelFolderError(
            f"{path} does not fit the model {CONFIG} describes (arch {info.arch!r}, layers "
            f"{info.layers}): {' '.join(x.strip() for x in first)[:300]}; the two files come "
            f"from different models: {fix}") from None
    return model.eval()


def load_model(model_dir: str | Path) -> tuple[Any, ModelInfo]:
    """(torch model in eval mode, info) of a model folder."""
    info = read_model_info(model_dir)
    return build_torch_model(info), info

__all__ = ["DEFAULT_RULE", "EXPORT_FORMAT", "GIVEN_RULE", "REEXPORT", "ModelFolderError",
           "ModelInfo", "build_torch_model", "finite", "load_json", "load_model",
           "read_model_info", "sigmoid"]

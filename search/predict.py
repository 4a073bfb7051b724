"""Score image files, folders and globs with a trained model folder.

A *model folder* is either an exported model (``deepfake-search export``: config.json with
``format``, model.safetensors, model.onnx) or a trial's checkpoint folder (config.json with
``experiment``, model.safetensors). Both are read with JSON, safetensors and ONNX only:
nothing given to this module is ever unpickled, so a model folder from elsewhere cannot run
code on load.

Images are preprocessed exactly as training saw them: ``prepare_image`` (the prepare step:
validation, EXIF orientation, RGB, square resize to the training shards' size) and then the
training stream's own ``DecodeBatch`` (decode to the model's input size), then normalised
as ``search.data.stream.Normalize`` does, in NumPy. Evaluation on prepared shards (metrics,
the cross-dataset matrix) is :mod:`search.evaluate`.

Both backends return logits and share one NumPy sigmoid: ``p_fake = sigmoid(logit)`` (what
thresholds apply to, as in training and in the ONNX graph's ``p_fake``) and, for an exported
folder with a fitted temperature ``T``, ``p_calibrated = sigmoid(logit / T)`` (the
probability to read). The decision threshold is the folder's own (F1-optimal on validation),
a target-FPR one that export stored (``target_fpr``), or a given number; every row says
which was applied.

torch, safetensors' torch loader, the model registry and onnxruntime are imported where a
backend uses them: the ONNX path loads neither torch nor Ray, and each backend only its own
runtime.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from search.config import ConfigError, config_from_dict
from search.data.images import ImageError, prepare_image, read_regular, safe_name
from search.data.layouts import FAKE, LABEL_NAMES
from search.data.prepare import load_manifest, manifest_hash
from search.data.stream import DecodeBatch
from search.formats import CONFIG, WEIGHTS, json_safe
from search.formats import ONNX as ONNX_FILE

EXPORT_FORMAT = "deepfake-search-model/1"
DEFAULT_RULE = "default 0.5 (no validation threshold was saved)"
GIVEN_RULE = "given"
#: The columns of a predictions table (and of predict's CSV), in order.
COLUMNS = ("path", "p_fake", "p_calibrated", "label", "threshold", "threshold_rule", "error")
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


def dataset_name(shards: str | Path) -> str:
    """A short readable name for a prepared set: its folder (or the parent of ``shards/``)."""
    text = str(shards).rstrip("/")
    path = Path(text.split("://", 1)[1]) if "://" in text else Path(text).expanduser().resolve()
    name = path.parent.name if path.name in ("shards", "") else path.name
    try:
        layout = load_manifest(text if "://" in text else path).get("layout")
    except Exception:  # a name is a label, not a check: missing manifests are fine here
        layout = None
    return f"{name} ({layout})" if layout and layout not in name else name


def _finite(value: Any) -> float | None:
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
    values = {}
    for key in ("mean", "std"):
        v = spec.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(_finite(x) is not None for x in v)):
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
    number = None if isinstance(value, bool) else _finite(value)
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
    number = None if isinstance(value, (bool, str)) else _finite(value)
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
        target = _finite(point.get("target_fpr")) if isinstance(point, dict) else None
        if target is None or not 0.0 <= target <= 1.0:
            raise ModelFolderError(f"{where} operating_points: every entry needs target_fpr "
                                   f"between 0 and 1, not {point!r}: {fix}")
        threshold = _threshold(point.get("threshold"), f"{where} operating_points threshold")
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
    threshold = _threshold(meta.get("threshold"), f"{cfg_path} 'threshold'")
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
    cfg_path = directory / CONFIG
    size, mean, std = _input_spec(meta, cfg_path, fix)
    try:
        cfg = config_from_dict(meta["experiment"])
    except ConfigError as err:
        raise ModelFolderError(f"{cfg_path} 'experiment': {err}") from None
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    threshold = _threshold(metrics.get("val_threshold"), f"{cfg_path} metrics.val_threshold")
    image_size, name, digest = _training_set(cfg.data.shards)
    return ModelInfo(
        directory=directory, kind="checkpoint", arch=cfg.model.arch,
        layers=cfg.model.layer_kwargs(), input_size=size, mean=mean, std=std,
        threshold=0.5 if threshold is None else threshold,
        threshold_rule="F1-optimal on validation" if threshold is not None else DEFAULT_RULE,
        image_size=image_size, train_name=name, train_hash=digest, meta=meta)


def choose_threshold(info: ModelInfo, threshold: float | None = None,
                     target_fpr: float | None = None) -> tuple[float, str]:
    """(threshold, rule) to decide FAKE with: a given ``threshold``, the operating point the
    model folder holds for ``target_fpr``, else the folder's own threshold."""
    if threshold is not None and target_fpr is not None:
        raise ValueError("give --threshold or --target-fpr, not both")
    if threshold is not None:
        value = _finite(threshold)
        if value is None or not 0.0 <= value <= 1.0 or isinstance(threshold, (bool, str)):
            raise ValueError(f"--threshold must be a number between 0 and 1, not {threshold!r}")
        return value, GIVEN_RULE
    if target_fpr is None:
        return info.threshold, info.threshold_rule
    for target, chosen in info.fpr_thresholds.items():
        if math.isclose(target, float(target_fpr), rel_tol=1e-9, abs_tol=1e-12):
            return chosen
    have = ", ".join(f"{t:g}" for t in sorted(info.fpr_thresholds))
    raise ValueError(f"{info.directory} has no threshold for target FPR {target_fpr:g}; "
                     + (f"it has one for: {have}" if have else "it has none")
                     + f" (export with --target-fpr {target_fpr:g} chooses it on validation)")


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``1 / (1 + exp(-logit / T))`` in float64, stable for any logit (no overflow)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(-np.logaddexp(0.0, -z))


def build_torch_model(info: ModelInfo, *, fix: str = REEXPORT) -> Any:
    """The model rebuilt from its config and safetensors weights, in eval mode on CPU: the
    one way every command (predict, evaluate, export) rebuilds a trained model."""
    from safetensors.torch import load_file

    from search.train.models import create_model

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


# ------------------------------------------------------------------ scoring backends
class _TorchScorer:
    """Logits of the PyTorch model, float32 (no autocast: matches ONNX)."""

    def __init__(self, info: ModelInfo) -> None:
        import torch

        self.torch = torch
        self.model = build_torch_model(info)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).float().reshape(-1).numpy()


class _OnnxScorer:
    """Logits with onnxruntime on the exported ``model.onnx`` (no torch needed)."""

    def __init__(self, info: ModelInfo) -> None:
        if not info.has_onnx():
            raise FileNotFoundError(
                f"{info.directory} has no {ONNX_FILE}: the onnx backend needs an exported "
                "model folder (deepfake-search export), or use --backend torch")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        path = info.directory / ONNX_FILE
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ...
            raise ModelFolderError(f"{path} cannot be loaded by onnxruntime "
                                   f"({str(err).strip()[:200]}): {REEXPORT}, or use --backend "
                                   "torch") from None
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name  # the logit

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: x})[0].reshape(-1)


def make_scorer(info: ModelInfo, backend: str = "torch") -> Any:
    """A callable NCHW float32 batch -> logits for ``backend`` ('torch' or 'onnx')."""
    if backend == "torch":
        return _TorchScorer(info)
    if backend == "onnx":
        return _OnnxScorer(info)
    raise ValueError(f"backend {backend!r}: choose torch or onnx")


# ------------------------------------------------------------------ inputs
_GLOB_CHARS = set("*?[")


def expand_paths(paths: Iterable[str | Path]) -> list[tuple[str, str | None]]:
    """(path, error) for every file named: files as given, folders recursively (hidden
    files skipped), globs expanded; a path that matches nothing is kept with its error.

    Symlinked folders are never followed inside a folder or a glob (listed with that
    reason instead), so a link loop cannot make the expansion endless.
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str, error: str | None = None) -> None:
        if path not in seen:
            seen.add(path)
            out.append((path, error))

    def walk(folder: str, keep: Any = None, depth: int | None = None) -> None:
        """Files below ``folder``; with ``keep`` (a glob), only matches, no deeper than ``depth``."""
        for root, dirs, files in os.walk(folder, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if depth is not None and os.path.relpath(root, folder).count(os.sep) + (
                    root != folder) >= depth - 1:
                dirs[:] = [d for d in dirs if keep(os.path.join(root, d))]
            for name in sorted(files):  # a folder's own files first, then its subfolders
                path = os.path.join(root, name)
                if not name.startswith(".") and (keep is None or keep(path)):
                    add(path)
            for d in list(dirs):
                path = os.path.join(root, d)
                if os.path.islink(path):
                    dirs.remove(d)
                    if keep is None or keep(path):
                        add(path, "symlink to a folder: not followed (name the folder itself)")
                elif keep is not None and keep(path):
                    dirs.remove(d)
                    walk(path)

    for raw in paths:
        text = str(raw)
        if os.path.isdir(text):
            walk(text)
        elif os.path.lexists(text):
            add(text)
        elif _GLOB_CHARS & set(text):
            before = len(out)
            base, pattern = _glob_base(os.path.expanduser(text))
            if os.path.isdir(base):
                walk(base, lambda path, b=base, p=pattern: _glob_match(
                    os.path.relpath(path, b).split(os.sep), p),
                     None if "**" in pattern else len(pattern))
            if len(out) == before:
                add(text, "no file matches this pattern")
        else:
            add(text, "no such file or folder")
    return out


def _glob_base(pattern: str) -> tuple[str, list[str]]:
    """The folder a glob starts in (its parts before the first wildcard) and the rest."""
    parts = pattern.split(os.sep)
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    base = os.sep.join(parts[:first]) or ("" if pattern.startswith(os.sep) else ".")
    return base or os.sep, [p for p in parts[first:] if p]


def _glob_match(parts: list[str], pattern: list[str]) -> bool:
    """``parts`` (a relative path) against glob ``pattern`` parts; ``**`` spans folders."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_match(
        parts[1:], pattern[1:])


class Preprocessor:
    """Bytes -> normalised CHW float32 array, exactly as training saw the image."""

    def __init__(self, info: ModelInfo) -> None:
        self.image_size = info.image_size
        self.decode = DecodeBatch(info.input_size)
        # Normalize's float32 constants and its two passes (scale, then shift) in NumPy:
        # bit-identical to training's tensors, without torch (test_predict checks it).
        std = np.asarray(info.std, np.float64)
        self.scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(3, 1, 1)
        self.shift = (np.asarray(info.mean, np.float64) / std).astype(np.float32).reshape(3, 1, 1)

    def __call__(self, data: bytes) -> np.ndarray:
        """Raises ImageError (with the reason) for anything that is not a usable image."""
        prepared = prepare_image(data, self.image_size)  # validates fully (load_rgb)
        batch = {"image": np.array([prepared.data], dtype=object), "label": np.zeros(1)}
        chw = self.decode(batch)["image"][0].transpose(2, 0, 1).astype(np.float32)
        chw *= self.scale
        chw -= self.shift
        return chw


def _load_one(path: str, pre: Preprocessor) -> tuple[np.ndarray | None, str | None]:
    """(array, None) or (None, reason) for one file (regular files only); never raises."""
    try:
        data = read_regular(path)
    except ImageError as err:
        return None, str(err)
    except OSError as err:
        if os.path.islink(path) and not os.path.exists(path):
            return None, "broken symlink: its target does not exist"
        return None, f"unreadable file: {err.strerror or err}"
    try:
        return pre(data), None
    except ImageError as err:
        return None, str(err)
    except Exception as err:  # anything Pillow throws on hostile input is a per-file error
        return None, f"cannot decode image: {type(err).__name__}: {err}"


def _batches(items: Sequence[tuple[str, str | None]], size: int) -> Iterator[list[tuple[str, str | None]]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def iter_predictions(model: str | Path | ModelInfo, paths: Iterable[str | Path], *,
                     threshold: float | None = None, target_fpr: float | None = None,
                     batch_size: int = 64, backend: str = "torch",
                     progress: bool = False) -> Iterator[dict[str, Any]]:
    """One row per file (:data:`COLUMNS`), streamed batch by batch; the threshold is chosen
    by :func:`choose_threshold`."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    info = model if isinstance(model, ModelInfo) else read_model_info(model)
    thr, rule = choose_threshold(info, threshold, target_fpr)
    items = expand_paths(paths)
    if not items:
        raise FileNotFoundError("no input files: give image files, folders or glob patterns")
    if all(err is not None for _, err in items):
        raise FileNotFoundError("none of the inputs exist: " + ", ".join(p for p, _ in items[:5]))
    scorer = make_scorer(info, backend)
    pre = Preprocessor(info)
    bar = tqdm(total=len(items), unit="img", desc="predict", file=sys.stderr,
               disable=not progress, mininterval=0.5)
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        try:
            for chunk in _batches(items, batch_size):
                loaded = list(pool.map(
                    lambda item: (None, item[1]) if item[1] else _load_one(item[0], pre), chunk))
                good = [i for i, (arr, _) in enumerate(loaded) if arr is not None]
                logits = scorer(np.stack([loaded[i][0] for i in good])) if good else np.zeros(0)
                probs = sigmoid(logits)
                calibrated = (sigmoid(logits, info.temperature) if info.temperature
                              else np.full(len(good), math.nan))
                scored = {i: (float(p), float(c)) for i, p, c in zip(good, probs, calibrated)}
                for i, (path, _) in enumerate(chunk):
                    p, c = scored.get(i, (math.nan, math.nan))
                    yield {"path": safe_name(path), "p_fake": p, "p_calibrated": c,
                           "label": LABEL_NAMES[int(p >= thr)] if i in scored else None,
                           "threshold": thr, "threshold_rule": rule,
                           "error": None if i in scored else loaded[i][1]}
                bar.update(len(chunk))
        finally:
            bar.close()


def predict_paths(model_dir: str | Path, paths: Iterable[str | Path], *,
                  threshold: float | None = None, target_fpr: float | None = None,
                  batch_size: int = 64, backend: str = "torch",
                  progress: bool = False) -> pd.DataFrame:
    """Score image files, folders (recursive) and globs with a model folder.

    Returns one row per file: ``path``, ``p_fake`` (``sigmoid(logit)``, NaN when it failed),
    ``p_calibrated`` (``sigmoid(logit / T)`` with the folder's fitted temperature, NaN when it
    has none), ``label`` (FAKE when ``p_fake >= threshold``), ``threshold`` and
    ``threshold_rule`` (which one was applied: the model's own unless ``threshold`` or
    ``target_fpr`` chose another) and ``error`` (why a file could not be scored, else None).
    ``attrs["threshold"]`` and ``attrs["threshold_rule"]`` repeat the threshold used.
    """
    info = read_model_info(model_dir)
    thr, rule = choose_threshold(info, threshold, target_fpr)
    rows = list(iter_predictions(info, paths, threshold=threshold, target_fpr=target_fpr,
                                 batch_size=batch_size, backend=backend, progress=progress))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["threshold"] = thr
    frame.attrs["threshold_rule"] = rule
    return frame


def write_predictions(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write predictions as CSV or JSON (chosen by the file's extension).

    Written to a temporary file beside ``out`` and renamed: a failure leaves an earlier
    ``out`` as it was, never half-written.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"--out {out}: use a .csv or .json file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            records = json_safe(frame.to_dict(orient="records"))  # NaN p_fake: null
            Path(tmp).write_text(json.dumps(records, indent=1) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def format_predictions(frame: pd.DataFrame) -> str:
    """A fixed-width table of predictions plus a one-line summary."""
    width = min(max([len("path"), *(len(p) for p in frame["path"])]), 100)
    calibrated = "p_calibrated" in frame and bool(frame["p_calibrated"].notna().any())
    lines = [f"{'path':<{width}}  {'p_fake':>7}  " + ("p_calib  " if calibrated else "")
             + f"{'label':<5}  error"]
    for row in frame.itertuples(index=False):
        error = row.error if isinstance(row.error, str) else ""  # missing is NaN in pandas 3
        label = row.label if isinstance(row.label, str) else ""
        p = "" if error else f"{row.p_fake:.4f}"
        c = ("" if error else f"{row.p_calibrated:.4f}") if calibrated else None
        path = row.path if len(row.path) <= width else "…" + row.path[-(width - 1):]
        lines.append(f"{path:<{width}}  {p:>7}  " + (f"{c:>7}  " if c is not None else "")
                     + f"{label:<5}  {error}".rstrip())
    ok = frame["error"].isna()
    fake = int((frame["label"] == LABEL_NAMES[FAKE]).sum())
    thr, rule = frame.attrs.get("threshold"), frame.attrs.get("threshold_rule")
    lines.append(f"{int(ok.sum())} scored ({fake} FAKE, {int(ok.sum()) - fake} REAL"
                 + (f" at threshold {thr:.4g}" if thr is not None else "")
                 + (f", {rule}" if rule else "") + f"), {int((~ok).sum())} failed")
    return "\n".join(lines)


__all__ = ["COLUMNS", "EXPORT_FORMAT", "GIVEN_RULE", "ModelFolderError", "ModelInfo",
           "Preprocessor", "build_torch_model", "choose_threshold", "dataset_name",
           "expand_paths", "format_predictions", "iter_predictions", "load_json", "load_model",
           "make_scorer", "predict_paths", "read_model_info", "sigmoid", "write_predictions"]

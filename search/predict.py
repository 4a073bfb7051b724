"""Score image files, folders and globs with a model folder: ``deepfake-search predict``.

The model folder (an export or a trial's checkpoint) is read and rebuilt by the model
layer (:mod:`search.model.folder`). Images are preprocessed exactly as training saw them:
``prepare_image`` (the prepare step: validation, EXIF orientation, RGB, square resize to
the training shards' size) and then the training stream's own ``DecodeBatch`` (decode to
the model's input size), then normalised as ``search.data.stream.Normalize`` does, in
NumPy. Evaluation on prepared shards (metrics, the cross-dataset matrix) is
:mod:`search.evaluate`.

Both backends return logits and share one NumPy sigmoid: ``p_fake = sigmoid(logit)`` (what
thresholds apply to, as in training and in the ONNX graph's ``p_fake``) and, for an exported
folder with a fitted temperature ``T``, ``p_calibrated = sigmoid(logit / T)`` (the
probability to read). The decision threshold is the folder's own (F1-optimal on validation),
a target-FPR one that export stored (``target_fpr``), or a given number; every row says
which was applied.

torch and onnxruntime are imported where a backend uses them: the ONNX path loads neither
torch nor Ray, and each backend only its own runtime.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from search import catalog
from search.data.images import ImageError, prepare_image, read_regular, safe_name
from search.data.layouts import FAKE, LABEL_NAMES, SYMLINK_LOOP
from search.data.stream import DecodeBatch
from search.filenames import NAME_MAX, json_safe, write_problem
from search.filenames import ONNX as ONNX_FILE
from search.model.folder import (
    GIVEN_RULE,
    REEXPORT,
    ModelFolderError,
    ModelInfo,
    build_torch_model,
    finite,
    read_model_info,
    sigmoid,
)

#: The columns of a predictions table (and of predict's CSV), in order.
COLUMNS = ("path", "p_fake", "p_calibrated", "label", catalog.THRESHOLD, "threshold_rule", "error")


def choose_threshold(info: ModelInfo, threshold: float | None = None,
                     target_fpr: float | None = None) -> tuple[float, str]:
    """(threshold, rule) to decide FAKE with: a given ``threshold``, the operating point the
    model folder holds for ``target_fpr``, else the folder's own threshold."""
    if threshold is not None and target_fpr is not None:
        raise ValueError("give --threshold or --target-fpr, not both")
    if threshold is not None:
        value = finite(threshold)
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
        if err.errno == errno.ELOOP:  # not "broken": a cycle of links
            return None, SYMLINK_LOOP
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
                           catalog.THRESHOLD: thr, "threshold_rule": rule,
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
    frame.attrs[catalog.THRESHOLD] = thr
    frame.attrs["threshold_rule"] = rule
    return frame


#: Characters that make a spreadsheet read a cell as a formula (CSV injection, OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: Any) -> Any:
    """A cell a spreadsheet shows as text: a leading ``'`` before a formula character (a file
    named ``=HYPERLINK(...).jpg`` must not run when predict's CSV is opened)."""
    return f"'{text}" if isinstance(text, str) and text.startswith(FORMULA_START) else text


def check_out(out: str | Path) -> Path:
    """``--out`` checked before any image is scored: a .csv or .json name, a name the file
    system takes, in a folder that exists (or can be made) and is writable; a ValueError
    naming it and the fix otherwise. The scoring is never lost to a bad output path."""
    out = Path(out).expanduser()
    if len(out.name.encode()) > NAME_MAX:
        raise ValueError(f"--out {out.name[:40]}...: the file name is longer than {NAME_MAX} bytes")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name such as {out / 'scores.csv'}")
    if out.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--out {out}: use a .csv or .json file name")
    problem = write_problem(out)
    if problem:
        raise ValueError(f"--out {out}: {problem}; write the predictions somewhere you can "
                         "write to")
    return out


def write_predictions(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write predictions as CSV or JSON (chosen by the file's extension).

    Written to a temporary file beside ``out`` and renamed: a failure leaves an earlier
    ``out`` as it was, never half-written. In the CSV, paths that a spreadsheet would run as
    a formula are quoted (:func:`spreadsheet_safe`).
    """
    out = check_out(out)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    # A short temporary name: out's own name plus a prefix could pass the file system's limit.
    fd, tmp = tempfile.mkstemp(prefix=".predict-", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.assign(path=frame["path"].map(spreadsheet_safe)).to_csv(tmp, index=False)
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
    thr, rule = frame.attrs.get(catalog.THRESHOLD), frame.attrs.get("threshold_rule")
    lines.append(f"{int(ok.sum())} scored ({fake} FAKE, {int(ok.sum()) - fake} REAL"
                 + (f" at threshold {thr:.4g}" if thr is not None else "")
                 + (f", {rule}" if rule else "") + f"), {int((~ok).sum())} failed")
    return "\n".join(lines)


__all__ = ["COLUMNS", "FORMULA_START", "Preprocessor", "check_out", "choose_threshold",
           "expand_paths", "format_predictions", "iter_predictions", "make_scorer",
           "predict_paths", "spreadsheet_safe", "write_predictions"]

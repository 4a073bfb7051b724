"""Export a finished search's best (or a chosen) trial as a self-contained model folder.

The folder is what leaves the project: ``model.safetensors`` (the trial's weights, copied
byte for byte), ``config.json`` (how to rebuild and feed the model, its threshold and the
exact training data by manifest hash), ``metrics.json``, ``model.onnx`` (checked against
PyTorch before it is kept) and a model card ``README.md`` saying what the numbers mean and
where they stop meaning it.

Two things are fitted on the checkpoint's saved validation predictions, never on test: a
temperature ``T`` (``p_calibrated = sigmoid(logit / T)``, applied by ``predict``) and, for
each ``target_fpr`` asked for, the threshold with the highest validation TPR at FPR <= the
target. The card states each threshold's validation and test figures; test predictions come
from the search's test evaluation, or are made once here (and kept in the checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from search import catalog, storage
from search.config import ConfigError, ExperimentConfig, config_from_dict
from search.data.layouts import LABEL_NAMES
from search.data.prepare import load_manifest, manifest_hash, verify_shards
from search.data.sets import dataset_name
from search.display import number
from search.evaluate.scoring import LOCAL_CPUS, evaluate_checkpoint
from search.filenames import (
    CONFIG,
    EXPERIMENT,
    METRICS,
    MODEL_CARD,
    TEST_METRICS,
    TEST_PREDICTIONS,
    VAL_PREDICTIONS,
    WEIGHTS,
    checkpoint_in,
    file_sha256,
    json_safe,
    portable_experiment,
    portable_path,
    write_problem,
)
from search.filenames import ONNX as ONNX_FILE
from search.model.checkpoint import (
    Predictions,
    load_checkpoint_model,
    read_predictions,
    released_error,
)
from search.model.folder import (
    EXPORT_FORMAT,
    build_torch_model,
    load_json,
    read_model_info,
    sigmoid,
)
from search.model.latency import onnx_latency
from search.model.onnx import ONNX_OPSET, ONNX_TOLERANCE, ExportError, export_onnx
from search.model.registry import layer_kwargs
from search.model.weights import describe_weights
from search.train.metrics import (
    calibration,
    detector_metrics,
    fit_temperature,
    logit,
    threshold_at_fpr,
    threshold_metrics,
)
from search.tune.tables import best_checkpoint, read_trials_table, trials_table_path

EXPORT_DIR = "export"
THRESHOLD_RULE = "F1-optimal on validation"
METRICS_FILE = METRICS
CARD = MODEL_CARD
# Columns export reads from the trials table (written by search.tune.tables).
TRIAL_COLUMNS = ("trial_id", "status", "checkpoint")
CALIBRATION_METHOD = "temperature scaling: one T minimising the NLL of sigmoid(logit / T) on validation"
# ------------------------------------------------------------------ choosing the trial
def load_trials(results_dir: Path) -> pd.DataFrame:
    """The search's trials table (parquet, else csv), with trial ids as strings; a table
    that cannot be read or lacks the columns export needs is an error naming it."""
    path = trials_table_path(results_dir)
    try:
        trials = read_trials_table(path)
    except Exception as err:  # pyarrow/pandas errors on a damaged table
        raise ValueError(f"{path} cannot be read ({str(err)[:200]}): it is damaged; "
                         "re-create it by resuming the search (run --resume)") from None
    missing = [c for c in TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)} that export "
                         "needs: it is not a trials table this version wrote; pass "
                         "--trial ID with a complete table, or re-run the search")
    return trials


def load_experiment(results_dir: Path) -> ExperimentConfig:
    """The experiment configuration saved by the search."""
    path = results_dir / EXPERIMENT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {results_dir} a search's results folder?")
    try:
        return config_from_dict(load_json(path, "it is damaged: copy it again from the "
                                          "experiment's storage path, or re-run the search"))
    except ConfigError as err:
        raise ValueError(f"{path}: {err}") from None


def choose_trial(results_dir: str | Path, *, trial_id: str | None = None,
                 metric: str | None = None) -> tuple[pd.Series, Path, str, str]:
    """(trials row, checkpoint folder, metric, mode) of the trial to export.

    The best trial by the validation ``metric`` (default the search's own, in its mode),
    or the one named by ``trial_id``. With a metric other than the search's, the trial's
    kept checkpoint that is best by that metric is used.
    """
    results_dir = Path(results_dir)
    cfg = load_experiment(results_dir)
    trials = load_trials(results_dir)
    metric = catalog.with_val(metric or cfg.search.metric)
    if metric == cfg.search.metric:
        mode = cfg.search.resolved_mode()
    else:
        mode = catalog.mode(metric)
    column = catalog.best(metric)
    usable = trials[(trials["status"] != "ERROR") & trials["checkpoint"].fillna("").astype(bool)]
    if trial_id is not None:
        row = trials[trials["trial_id"] == str(trial_id)]
        if row.empty:
            raise ValueError(f"no trial {trial_id!r} in {results_dir}; trials: "
                             + ", ".join(trials["trial_id"]))
        if str(trial_id) not in set(usable["trial_id"]):
            raise ValueError(f"trial {trial_id} has no checkpoint to export "
                             f"(status {row.iloc[0]['status']})")
        best = row.iloc[0]
    else:
        if column not in usable or usable[column].notna().sum() == 0:
            valid = sorted(catalog.metric_columns(c.removeprefix(catalog.BEST) for c in trials
                                                  if c.startswith(catalog.BEST)))
            raise ValueError(f"metric {metric!r} is not in {results_dir}'s trials table; "
                             f"choose one of: {', '.join(valid)}")
        ranked = usable[usable[column].notna()].sort_values(
            column, ascending=(mode == "min"), kind="stable")
        best = ranked.iloc[0]
    # The checkpoint inside *this* results folder, wherever the table was written: a copied
    # or moved folder exports its own weights, never the original's.
    checkpoint = checkpoint_in(results_dir, best["checkpoint"])
    if metric != cfg.search.metric:
        other, _ = best_checkpoint(results_dir, best["trial_id"], metric, mode)
        checkpoint = other or checkpoint
    if not (checkpoint / WEIGHTS).is_file():
        _fetch_from_storage(cfg, results_dir, checkpoint)
    released = released_error(checkpoint, best["trial_id"])
    if released:
        raise ValueError(released)
    if not (checkpoint / WEIGHTS).is_file():
        raise FileNotFoundError(
            f"trial {best['trial_id']}'s checkpoint {checkpoint} has no {WEIGHTS}: the results "
            f"folder {results_dir} does not hold it (copied or moved without its trial folders, "
            "or cleaned); copy the trial folders too, or export from the original folder")
    return best, checkpoint, metric, mode


def _fetch_from_storage(cfg: ExperimentConfig, results_dir: Path, checkpoint: Path) -> None:
    """A search on remote storage mirrors only the finalists' weights: fetch any other's."""
    location = storage.experiment_dir(cfg)
    if storage.is_uri(location) and checkpoint.is_relative_to(results_dir):
        storage.fetch_checkpoint(location, results_dir, checkpoint)


# ------------------------------------------------------------------ what goes in the folder
def _training_data(cfg: ExperimentConfig) -> dict[str, Any]:
    """What the model was trained on, from the shards' manifest (best effort)."""
    shards = cfg.data.shards
    info: dict[str, Any] = {"shards": portable_path(shards),
                            "name": dataset_name(shards) if shards else "unknown"}
    try:
        manifest = load_manifest(shards)
    except Exception as err:  # shards on another machine: export anyway, say so
        info["note"] = f"manifest not readable at export time: {err}"
        return info
    opts = manifest.get("options", {})
    info.update({
        "manifest_hash": manifest_hash(shards), "layout": manifest.get("layout"),
        "source": portable_path(opts.get("source") or ""), "image_size": manifest.get("image_size"),
        "counts": manifest.get("counts"), "groups": manifest.get("groups"),
        "skipped": len(manifest.get("skipped", [])), "splits": opts.get("splits"),
        "seed": opts.get("seed"), "ratio": cfg.data.ratio,
    })
    return info


def _test_metrics(results_dir: Path, trial_id: str, checkpoint: Path,
                  finalist_checkpoint: str, threshold: float) -> dict[str, Any] | None:
    """The trial's test-split metrics, when the search evaluated this very checkpoint."""
    path = results_dir / TEST_METRICS
    if path.is_file() and checkpoint == checkpoint_in(results_dir, finalist_checkpoint):
        test = json.loads(path.read_text()).get(trial_id)
        if test:
            return test
    preds = checkpoint / TEST_PREDICTIONS
    if preds.is_file():
        frame = pd.read_csv(preds)
        return detector_metrics(frame["label"].to_numpy(), frame["p_fake"].to_numpy(),
                                threshold=threshold)
    return None


def fetch_test_predictions(checkpoint: Path, shards: str | None) -> tuple[Predictions | None, str]:
    """The checkpoint's test-split predictions and where they came from: its
    ``test_predictions.csv``, else one evaluation of the test split of ``shards`` (kept in
    the checkpoint for the next export), else None and why not."""
    found = read_predictions(checkpoint / TEST_PREDICTIONS)
    if found is not None:
        return found, "the search's test evaluation"
    if not shards:
        return None, "the experiment names no shards"
    try:
        verify_shards(shards)
    except (OSError, ValueError) as err:
        return None, f"the test split could not be read ({str(err)[:200]})"
    from search.cluster import connect

    connect(num_cpus=LOCAL_CPUS)
    _, preds = evaluate_checkpoint(checkpoint, shards, "test")
    with contextlib.suppress(OSError):  # a read-only results folder: evaluated, not kept
        preds.to_csv(checkpoint / TEST_PREDICTIONS, index=False)
    return (preds["label"].to_numpy(np.int64), preds["p_fake"].to_numpy(np.float64)), \
        "evaluated once at export"


def _calibration_figures(preds: Predictions, temperature: float) -> dict[str, float]:
    """ECE and NLL (``log_loss``: :func:`~search.train.metrics.calibration`) before and after ``T``."""
    y, p = preds
    before, after = calibration(y, p), calibration(y, sigmoid(logit(p), temperature))
    return {"n": int(y.size), "ece_before": before["ece"], "ece_after": after["ece"],
            "nll_before": before["log_loss"], "nll_after": after["log_loss"]}


def calibrate(val: Predictions | None, test: Predictions | None) -> dict[str, Any] | None:
    """Temperature scaling fitted on validation (``logit`` recovers the logits from the
    saved p_fake), with ECE and NLL before and after on validation and test; None when
    there is nothing to fit on (no predictions, or a single class)."""
    if val is None:
        return None
    temperature = fit_temperature(val[0], logit(val[1]))
    if not math.isfinite(temperature):
        return None
    return {"method": CALIBRATION_METHOD, "temperature": temperature, "fitted_on": "validation",
            "validation": _calibration_figures(val, temperature),
            "test": _calibration_figures(test, temperature) if test is not None else None}


def _rate_percent(rate: float) -> str:
    return f"{rate * 100:.3g}%"


def _at_threshold(preds: Predictions, threshold: float) -> dict[str, Any]:
    """The operating point a threshold gives on one split: FPR, TPR and the counts."""
    m = threshold_metrics(*preds, threshold)
    return {"fpr": m["fp"] / (m["fp"] + m["tn"]) if m["tn"] + m["fp"] else math.nan,
            "tpr": m["recall"], "precision": m["precision"], "f1": m["f1"],
            "balanced_accuracy": m["balanced_accuracy"],
            **{k: m[k] for k in ("tp", "fp", "tn", "fn")}}


def operating_point(target_fpr: float, val: Predictions, test: Predictions | None,
                    temperature: float | None = None) -> dict[str, Any]:
    """The threshold with the highest validation TPR at validation FPR <= ``target_fpr``,
    and what it gives on validation and test; a ValueError when no FAKE is caught there."""
    threshold = threshold_at_fpr(*val, target_fpr)
    n_real = int((val[0] == 0).sum())
    if math.isnan(threshold):
        raise ValueError("--target-fpr needs REAL and FAKE images in the validation split, "
                         f"and it has {n_real} REAL of {val[0].size}")
    at_val = _at_threshold(val, threshold) if math.isfinite(threshold) else {"tpr": 0.0}
    if at_val["tpr"] == 0.0:
        raise ValueError(f"at FPR <= {_rate_percent(target_fpr)} on validation this model "
                         f"catches no FAKE image (the validation split has {n_real} REAL "
                         "images, and its top-scored ones are REAL): choose a larger "
                         "--target-fpr")
    return {"target_fpr": target_fpr, "threshold": threshold,
            "rule": f"FPR <= {_rate_percent(target_fpr)} on validation (highest TPR)",
            "p_calibrated": float(sigmoid(logit(threshold), temperature)) if temperature else None,
            "validation": at_val, "test": _at_threshold(test, threshold) if test else None}


def _check_targets(targets: Any) -> list[float]:
    out = []
    for t in targets or ():
        value = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else math.nan
        if not 0.0 < value < 1.0:
            raise ValueError(f"--target-fpr must be a rate between 0 and 1 (0.01 is 1%), not {t!r}")
        out.append(value)
    return sorted(set(out))


def _fmt(value: Any, digits: int = 3) -> str:
    return number(value, f".{digits}f")


def _metrics_table(splits: dict[str, dict[str, Any]]) -> list[str]:
    names = ["accuracy", "precision", "recall", "f1", "balanced_accuracy"]
    lines = ["| split | rule | " + " | ".join(names) + " | AUC | AP | EER |",
             "|---|---|" + "---|" * (len(names) + 3)]
    for split, m in splits.items():
        lines.append(f"| {split} | model threshold {_fmt(m.get('threshold'))} | "
                     + " | ".join(_fmt(m.get(f"{n}_at_threshold")) for n in names)
                     + f" | {_fmt(m.get('auc'))} | {_fmt(m.get('ap'))} | {_fmt(m.get('eer'))} |")
        lines.append(f"| {split} | threshold 0.5 | "
                     + " | ".join(_fmt(m.get(n)) for n in names) + " | | | |")
        lines.append(f"| {split} | majority class (baseline) | "
                     + " | ".join(_fmt(m.get(f"baseline_{n}")) for n in names[:4])
                     + f" | 0.500 | 0.500 | {_fmt(m.get('positive_rate'))} | 0.500 |")
    return lines


def _confusion(split: str, m: dict[str, Any]) -> list[str]:
    return [f"{split.capitalize()} at threshold {_fmt(m.get('threshold'))} "
            f"(n = {m.get('n')}, FAKE share {_fmt(m.get('positive_rate'))}):", "",
            "| | predicted REAL | predicted FAKE |", "|---|---|---|",
            f"| **true REAL** | {m.get('tn_at_threshold')} (TN) | {m.get('fp_at_threshold')} (FP) |",
            f"| **true FAKE** | {m.get('fn_at_threshold')} (FN) | {m.get('tp_at_threshold')} (TP) |",
            ""]


def _card_intro(config: dict[str, Any]) -> list[str]:
    """Title, what the model outputs, and its intended use."""
    data, size = config["training_data"], config["input"]["input_size"]
    temperature = (config.get("calibration") or {}).get("temperature")
    return [
        f"# Deepfake detector: `{config['arch']}` (trial {config['trial_id']} of "
        f"`{config['experiment']}`)", "",
        "A binary image classifier that scores a face image as REAL (0) or DEEPFAKE (1, the "
        "positive class). It outputs one logit; `p_fake = sigmoid(logit)`, and an image is "
        f"called FAKE when `p_fake >= {config['threshold']:.4g}` (the threshold, "
        f"{config['threshold_rule']})"
        + (f"; the probability to read is `p_calibrated = sigmoid(logit / {temperature:.4g})` "
           "(temperature scaling, see Calibration)." if temperature else ".")
        + (" Thresholds for a target false-positive rate are under Operating points."
           if config.get("operating_points") else ""), "",
        "## Intended use", "",
        "- Research and triage: ranking face crops for human review, and comparing detectors "
        "on data prepared like the training data.",
        "- Not for deciding on its own whether a person, video or document is genuine: a "
        "score is evidence for a reviewer, not a verdict.",
        f"- Inputs: RGB face crops, resized to {data.get('image_size') or size} px "
        f"squares as in training and then to the model input of {size} px. "
        "Whole frames, non-face images and other crops are outside what it was trained on.", ""]


def _card_data(data: dict[str, Any]) -> list[str]:
    """The training set: name, manifest hash, preparation, class counts per split."""
    counts = data.get("counts") or {}
    return [
        "## Training data", "",
        f"- Set: **{data.get('name')}**, layout `{data.get('layout')}`, source `{data.get('source')}`",
        f"- Manifest hash (SHA-256 over the shards): `{data.get('manifest_hash', 'unknown')}`",
        f"- Images were squared to {data.get('image_size')} px by `deepfake-search prepare`; "
        f"{data.get('skipped', 0)} unusable file(s) were skipped.",
        f"- Training batches drawn at REAL:FAKE = {data.get('ratio')} per epoch.", "",
        "| split | REAL | FAKE | identity groups |", "|---|---|---|---|",
        *[f"| {s} | {c.get('REAL')} | {c.get('FAKE')} | {(data.get('groups') or {}).get(s, '—')} |"
          for s, c in counts.items()], ""]


def _card_model(config: dict[str, Any]) -> list[str]:
    """Architecture, input and normalisation, and the checkpoint chosen."""
    spec, chosen = config["input"], config["selected_by"]
    layers = ", ".join(f"{k}={v}" for k, v in config["layers"].items()) or "defaults"
    return [
        "## Model", "",
        f"- Architecture `{config['arch']}` ({config['parameters']:,} parameters), layers: {layers}",
        f"- Input: `float32[batch, 3, {spec['input_size']}, {spec['input_size']}]`, "
        f"RGB scaled to [0, 1] then normalised with mean {spec['mean']} and std "
        f"{spec['std']}",
        _card_weights(config.get("pretrained_weights")),
        f"- Checkpoint: epoch {config['epoch']} of trial {config['trial_id']}, chosen by "
        f"validation `{chosen['metric']}` ({chosen['mode']}) = {_fmt(chosen['value'], 4)}",
        *_card_latency(config.get("latency")), ""]


def _card_weights(weights: dict[str, Any] | None) -> str:
    """Where the training started: random init, or which pretrained weights."""
    if not weights:
        return "- Starting weights: random initialisation (trained from scratch)"
    if weights.get("kind") == "package":
        return (f"- Starting weights: {weights['source']}, from the package "
                f"`{weights['package']}` {weights['version']} (sha256 "
                f"`{weights['sha256'][:12]}...`, licence {weights['licence']})")
    return f"- Starting weights: {weights.get('source') or weights.get('file')}"


def _card_latency(latency: dict[str, Any] | None) -> list[str]:
    """The model's CPU latency, as measured at export (one line; none when not measured)."""
    if not latency:
        return []
    return [f"- Latency: {latency['median_ms']:.3g} ms median (p90 {latency['p90_ms']:.3g} ms) "
            f"per image with `{ONNX_FILE}` on CPU (onnxruntime {latency['onnxruntime']}, "
            f"batch {latency['batch']}, {latency['intra_op_threads']} thread, "
            f"{latency['runs']} runs after {latency['warmup']} warm-up) on the exporting "
            f"machine ({latency['processor']}, {latency['cpu_count']} CPUs): other machines, "
            "threads and batch sizes differ"]


def _ranking_table(splits: dict[str, dict[str, Any]]) -> list[str]:
    """Per split: AUC, balanced accuracy at the model threshold, the operating points, ECE."""
    cols = [("AUC", "auc"), ("balanced accuracy", "balanced_accuracy_at_threshold"),
            ("TPR at FPR 1%", "tpr_at_fpr_1pct"), ("TPR at FPR 5%", "tpr_at_fpr_5pct"),
            ("FPR at TPR 95%", "fpr_at_tpr_95pct"), ("ECE (uncalibrated)", "ece")]
    return ["| split | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---|" * len(cols),
            *[f"| {split} | " + " | ".join(_fmt(m.get(k)) for _, k in cols) + " |"
              for split, m in splits.items()]]


def _card_metrics(metrics: dict[str, Any]) -> list[str]:
    """Metrics per split against the majority baseline, and the confusion matrices."""
    test = metrics.get("test")
    splits = {"validation": metrics["validation"], **({"test": test} if test else {})}
    return [
        "## Metrics", "",
        "FAKE is the positive class. The majority-class baseline (always answering the more "
        "common class) is the bar to clear: accuracy alone flatters a detector on imbalanced "
        "data. The threshold was chosen on validation; validation numbers at that threshold "
        "are therefore optimistic, "
        + ("while the test split was scored once, after the search, and never used to choose."
           if test else "and no test-split numbers are available for this checkpoint."), "",
        *_metrics_table(splits), "",
        "At the operating points a deployment asks for (read off the ROC curve, no "
        "interpolation) and calibration (expected calibration error of `p_fake`, 15 "
        "equal-width bins; lower is better):", "",
        *_ranking_table(splits), "",
        "### Confusion matrices", "",
        *[line for split, m in splits.items() for line in _confusion(split, m)]]


def _card_calibration(calibration: dict[str, Any] | None) -> list[str]:
    """The fitted temperature and what it does to ECE and NLL on validation and test."""
    out = ["## Calibration", ""]
    if not calibration:
        return out + ["Not calibrated: the checkpoint holds no validation predictions with "
                      f"both classes ({VAL_PREDICTIONS}), so `p_calibrated` is not given.", ""]
    rows = [(split, calibration.get(split)) for split in ("validation", "test")]
    t = calibration["temperature"]
    confidence = "over-confident (T > 1)" if t > 1 else "under-confident (T < 1)"
    return out + [
        f"Temperature `T = {t:.4g}` was fitted on validation (minimum negative log "
        "likelihood); `p_calibrated = sigmoid(logit / T)`. It changes no ranking and no "
        "decision (the thresholds apply to `p_fake`), only how far the probability can be "
        f"taken at its word: the raw scores were {confidence}.", "",
        "| split | n | ECE before | ECE after | NLL before | NLL after |", "|---|---|---|---|---|---|",
        *[f"| {split} | {m['n']} | {_fmt(m['ece_before'])} | {_fmt(m['ece_after'])} | "
          f"{_fmt(m['nll_before'])} | {_fmt(m['nll_after'])} |" for split, m in rows if m], ""]


def _card_operating_points(points: list[dict[str, Any]]) -> list[str]:
    """Each target FPR's threshold, chosen on validation, with validation and test figures."""
    if not points:
        return []
    out = ["## Operating points", "",
           "Thresholds for a target false-positive rate (the share of REAL images called FAKE), "
           "each the one with the highest validation TPR at validation FPR <= the target. "
           "Validation figures are where it was chosen; test figures are the honest ones. Use "
           "one with `deepfake-search predict . IMAGES --target-fpr RATE`.", "",
           "| target FPR | threshold (p_fake) | split | FPR | TPR | precision | FP | TP |",
           "|---|---|---|---|---|---|---|---|"]
    for point in points:
        for split in ("validation", "test"):
            m = point.get(split)
            out.append(f"| {_rate_percent(point['target_fpr'])} | {point['threshold']:.6g} | "
                       f"{split} | " + (" | ".join([_fmt(m['fpr']), _fmt(m['tpr']),
                                                    _fmt(m['precision']), str(m['fp']),
                                                    str(m['tp'])]) if m else
                                         "not available | | | |") + " |")
    return out + [""]


def _card_limits(config: dict[str, Any], validation: dict[str, Any]) -> list[str]:
    """Where the numbers stop meaning anything."""
    return [
        "## Known limits", "",
        "- **Cross-dataset drop.** Deepfake detectors generalise poorly to data sets, "
        "manipulation methods and compression levels they were not trained on: in the "
        "literature AUC typically falls to about 0.7 on unseen sets (e.g. FaceForensics++ to "
        "Celeb-DF), and the study this project reproduces saw about 40% accuracy when a model "
        "trained on one of its two sets was tested on the other. Expect the numbers above only "
        "on data like the training set; measure on yours with `deepfake-search evaluate "
        "--cross`.",
        "- **Threshold and prevalence.** The threshold was tuned on a validation split with a "
        f"FAKE share of {_fmt(validation.get('positive_rate'))}; precision and the best threshold "
        "change with the share of fakes in the data it is used on.",
        "- **Resolution and compression.** Images are resized to "
        f"{config['input']['input_size']} px; artefacts finer than that, heavy re-compression, "
        "filters or adversarial edits can hide a manipulation or fake one.",
        "- **Coverage.** Generators newer than the training data, other face crops or "
        "alignments, and demographic groups under-represented in the training set are not "
        "measured here.", ""]


def _card_usage(config: dict[str, Any], files: dict[str, str]) -> list[str]:
    """The commands that use the folder, the ONNX graph's contract, the files' hashes."""
    return [
        "## How to use", "",
        "```bash",
        "deepfake-search predict . path/to/images/ --out predictions.csv      # PyTorch",
        "deepfake-search predict . path/to/images/ --backend onnx              # onnxruntime",
        *([f"deepfake-search predict . path/to/images/ --target-fpr "
           f"{config['operating_points'][0]['target_fpr']:g}".ljust(70) + "# an operating point"]
          if config.get("operating_points") else []),
        "deepfake-search evaluate . --data prepared/shards --split test       # full metrics",
        "```", "",
        f"`{ONNX_FILE}` (opset {config['onnx']['opset']}, dynamic batch) takes `image` and "
        "returns `logit` and `p_fake`, both `[batch, 1]`; it matched PyTorch to "
        f"{config['onnx']['max_abs_diff']:.2g} on random inputs. Preprocess exactly as above "
        "(resize, RGB, /255, normalise, NCHW).", "",
        "## Files", "",
        "| file | SHA-256 |", "|---|---|",
        *[f"| `{name}` | `{digest}` |" for name, digest in files.items()], ""]


def model_card(config: dict[str, Any], metrics: dict[str, Any], files: dict[str, str]) -> str:
    """The README.md of an exported model: data, metrics, limits, use."""
    lines = [*_card_intro(config), *_card_data(config["training_data"]), *_card_model(config),
             *_card_metrics(metrics), *_card_calibration(config.get("calibration")),
             *_card_operating_points(config.get("operating_points") or []),
             *_card_limits(config, metrics["validation"]), *_card_usage(config, files)]
    return "\n".join(lines)


#: The files an export writes: the only ones it ever replaces in ``--out`` (config.json
#: last, since it is what marks a folder as an export).
OWNED = (WEIGHTS, ONNX_FILE, METRICS_FILE, CARD, CONFIG)


def _check_out(out: Path, *, given: bool) -> None:
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
    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise ValueError(f"--out {out} is a folder that holds files and is not an exported "
                         "model folder: choose a new or empty folder")


def _install(staging: Path, out: Path) -> None:
    """Move the staged files into ``out``, each replacing only its own earlier version: a
    user's files beside an earlier export (scores, notes) stay where they are."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        (staging / name).replace(out / name)


def _is_export(path: Path) -> bool:
    try:
        return str(json.loads((path / CONFIG).read_text()).get("format", "")).startswith(
            "deepfake-search-model")
    except (OSError, ValueError):
        return False


def _saved_threshold(epoch_metrics: dict[str, Any]) -> tuple[float, str]:
    """The checkpoint's validation threshold and its rule (0.5 when there was none)."""
    threshold = epoch_metrics.get(catalog.val("threshold"))
    if threshold is None or not math.isfinite(float(threshold)):
        return 0.5, "default 0.5 (validation had no FAKE image to tune on)"
    return float(threshold), THRESHOLD_RULE


def _folder_config(cfg: ExperimentConfig, meta: dict[str, Any], row: pd.Series, *,
                   threshold: float, rule: str, selected_by: dict[str, Any], parameters: int,
                   onnx_diff: float, checkpoint: Path, results_dir: Path,
                   calibration: dict[str, Any] | None = None,
                   operating_points: list[dict[str, Any]] | None = None,
                   latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config.json``: how to rebuild and feed the model, its threshold, the exact training
    data, and which trial, epoch and results folder it came from."""
    epoch_metrics = meta.get("metrics", {})
    return {
        "format": EXPORT_FORMAT,
        "arch": cfg.model.arch,
        "layers": layer_kwargs(cfg.model),
        "model": dataclasses.asdict(cfg.model),
        "pretrained_weights": describe_weights(cfg.model.arch, cfg.model.pretrained),
        "input": meta["input"],
        "output": "one logit per image; p_fake = sigmoid(logit); FAKE when p_fake >= threshold; "
                  "p_calibrated = sigmoid(logit / calibration.temperature)",
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "threshold": threshold,
        "threshold_rule": rule,
        "calibration": calibration,
        "operating_points": operating_points or [],
        "training_data": _training_data(cfg),
        "experiment": cfg.search.name,
        "trial_id": str(row["trial_id"]),
        "epoch": int(meta.get("epoch", epoch_metrics.get("epoch", 0))),
        "params": {k: json_safe(row[k]) for k in ("arch", "ratio", "lr", "batch_size")
                   if k in row and not pd.isna(row[k])},
        "selected_by": selected_by,
        "parameters": parameters,
        "onnx": {"file": ONNX_FILE, "opset": ONNX_OPSET, "max_abs_diff": onnx_diff,
                 "inputs": ["image"], "outputs": ["logit", "p_fake"]},
        "latency": latency,  # of model.onnx on the exporting machine (search.model.latency)
        "source_checkpoint": portable_path(checkpoint, results_dir),  # in results_dir
        "results_dir": portable_path(results_dir),
        "experiment_config": portable_experiment(cfg.to_dict()),
    }


def _deployment(checkpoint: Path, shards: str, targets: Sequence[float], *,
                verbose: bool) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(temperature calibration, one operating point per target FPR) of a checkpoint, from
    its validation predictions (and test ones, made once when targets need them)."""
    val_preds = read_predictions(checkpoint / VAL_PREDICTIONS)
    if targets and val_preds is None:
        raise ValueError(f"{checkpoint} has no {VAL_PREDICTIONS}: --target-fpr chooses its "
                         "threshold on the validation predictions; export another trial")
    test_preds, test_source = (fetch_test_predictions(checkpoint, shards) if targets
                               else (read_predictions(checkpoint / TEST_PREDICTIONS), ""))
    if targets and test_preds is None and verbose:
        print(f"no test figures for the operating points: {test_source}")
    calibration = calibrate(val_preds, test_preds)
    temperature = calibration["temperature"] if calibration else None
    return calibration, [operating_point(t, val_preds, test_preds, temperature) for t in targets]


def export_model(results_dir: str | Path, *, trial_id: str | None = None,
                 metric: str | None = None, out: str | Path | None = None,
                 target_fpr: Sequence[float] = (), verbose: bool = True) -> Path:
    """Export the best trial by validation ``metric`` (or ``trial_id``) to ``out``
    (default ``<results_dir>/export``) and return that folder; see the module docstring.

    ``target_fpr`` (rates such as 0.01) adds one operating point each; test predictions
    are then made once when the checkpoint has none.
    """
    targets = _check_targets(target_fpr)
    results_dir = Path(results_dir).expanduser().resolve()
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    given = bool(out)
    out = Path(out).expanduser().resolve() if out else results_dir / EXPORT_DIR
    _check_out(out, given=given)  # first: nothing is read or made for an output that fails
    row, checkpoint, metric, mode = choose_trial(results_dir, trial_id=trial_id, metric=metric)
    model, meta = load_checkpoint_model(checkpoint)
    cfg = config_from_dict(meta["experiment"])
    epoch_metrics = meta.get("metrics", {})
    threshold, rule = _saved_threshold(epoch_metrics)
    calibration, points = _deployment(checkpoint, cfg.data.shards, targets, verbose=verbose)
    test = _test_metrics(results_dir, str(row["trial_id"]), checkpoint, str(row["checkpoint"]),
                         threshold)
    metrics = {"validation": catalog.strip_split(epoch_metrics), "test": test, "threshold": threshold,
               "threshold_rule": rule, "calibration": calibration, "operating_points": points}
    size = int(meta["input"]["input_size"])

    out.parent.mkdir(parents=True, exist_ok=True)
    # A short name: out's own name plus a prefix could pass the file system's limit.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        shutil.copyfile(checkpoint / WEIGHTS, staging / WEIGHTS)
        diff, latency = _onnx(model, size, staging / ONNX_FILE, verbose=verbose,
                              spec=meta["input"])
        config = _folder_config(
            cfg, meta, row, threshold=threshold, rule=rule,
            selected_by={"metric": metric, "mode": mode,
                         "value": json_safe(epoch_metrics.get(metric))},
            parameters=int(sum(p.numel() for p in model.parameters())), onnx_diff=diff,
            checkpoint=checkpoint, results_dir=results_dir, calibration=calibration,
            operating_points=points, latency=latency)
        (staging / CONFIG).write_text(json.dumps(json_safe(config), indent=1) + "\n")
        (staging / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=1) + "\n")
        # Reload check: the folder alone must rebuild the very same model.
        _same_outputs(model, build_torch_model(read_model_info(staging)), size)
        files = {name: file_sha256(staging / name) for name in (WEIGHTS, ONNX_FILE, CONFIG,
                                                             METRICS_FILE)}
        (staging / CARD).write_text(model_card(json_safe(config), json_safe(metrics), files))
        _install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _onnx(model: Any, size: int, path: Path, *, verbose: bool,
          spec: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
    """Export ``model`` to ``path`` (parity-checked) and time that very file
    (:func:`search.model.latency.onnx_latency`): (max abs logit difference, latency)."""
    diff = export_onnx(model, size, path, metadata={"input": spec} if spec else None)
    latency = onnx_latency(path, size)
    if verbose:
        print(f"ONNX parity: max abs logit difference to PyTorch {diff:.3g} "
              f"(limit {ONNX_TOLERANCE:g}); latency {latency.describe()}")
    return diff, latency.to_dict()


def _same_outputs(a: Any, b: Any, size: int) -> None:
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        diff = float((a(x) - b(x)).abs().max())
    if diff > 1e-6:
        raise ExportError(f"the exported folder rebuilds a different model (max diff {diff:.3g})")


__all__ = ["CALIBRATION_METHOD", "EXPORT_DIR", "calibrate", "choose_trial", "export_model",
           "fetch_test_predictions", "model_card", "operating_point"]

"""The model card: the ``README.md`` of an exported folder, built section by section.

Each ``_card_*`` builder returns the lines of one section (intro and intended use, training
data, model, metrics against the majority baseline, calibration, operating points, known
limits, usage and file hashes) from ``config.json`` and ``metrics.json`` as written, so the
card says exactly what the folder holds.
"""

from __future__ import annotations

from typing import Any

from search import catalog
from search.display import number
from search.export.operating import rate_percent
from search.filenames import ONNX as ONNX_FILE
from search.filenames import VAL_PREDICTIONS


def _fmt(value: Any, digits: int = 3) -> str:
    return number(value, f".{digits}f")


def _metrics_table(splits: dict[str, dict[str, Any]]) -> list[str]:
    names = [*catalog.BASELINE_METRICS, catalog.BALANCED_ACCURACY]  # the baseline has 4
    ranking = (catalog.AUC, catalog.AP, catalog.EER)
    lines = ["| split | rule | " + " | ".join(names) + " | AUC | AP | EER |",
             "|---|---|" + "---|" * (len(names) + 3)]
    for split, m in splits.items():
        lines.append(f"| {split} | model threshold {_fmt(m.get(catalog.THRESHOLD))} | "
                     + " | ".join(_fmt(m.get(catalog.at_threshold(n))) for n in names)
                     + "".join(f" | {_fmt(m.get(k))}" for k in ranking) + " |")
        lines.append(f"| {split} | threshold 0.5 | "
                     + " | ".join(_fmt(m.get(n)) for n in names) + " | | | |")
        lines.append(f"| {split} | majority class (baseline) | "
                     + " | ".join(_fmt(m.get(catalog.baseline(n))) for n in names[:4])
                     + f" | 0.500 | 0.500 | {_fmt(m.get(catalog.POSITIVE_RATE))} | 0.500 |")
    return lines


def _confusion(split: str, m: dict[str, Any]) -> list[str]:
    return [f"{split.capitalize()} at threshold {_fmt(m.get(catalog.THRESHOLD))} "
            f"(n = {m.get(catalog.N)}, FAKE share {_fmt(m.get(catalog.POSITIVE_RATE))}):", "",
            "| | predicted REAL | predicted FAKE |", "|---|---|---|",
            f"| **true REAL** | {m.get(catalog.at_threshold(catalog.TN))} (TN) | "
            f"{m.get(catalog.at_threshold(catalog.FP))} (FP) |",
            f"| **true FAKE** | {m.get(catalog.at_threshold(catalog.FN))} (FN) | "
            f"{m.get(catalog.at_threshold(catalog.TP))} (TP) |",
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
        f"called FAKE when `p_fake >= {config[catalog.THRESHOLD]:.4g}` (the threshold, "
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
        f"- Set: **{data.get('name')}**, layout `{data.get('layout')}`, "
        f"source `{data.get('source')}`",
        f"- Manifest hash (SHA-256 over the shards): `{data.get('manifest_hash', 'unknown')}`",
        f"- Images were squared to {data.get('image_size')} px by `deepfake-search prepare`; "
        f"{data.get('skipped', 0)} unusable file(s) were skipped.",
        f"- Training batches drawn at REAL:FAKE = {data.get('ratio')} per epoch.", "",
        "| split | REAL | FAKE | identity groups |", "|---|---|---|---|",
        *[f"| {s} | {c.get('REAL')} | {c.get('FAKE')} | "
          f"{(data.get('groups') or {}).get(s, '—')} |"
          for s, c in counts.items()], ""]


def _card_model(config: dict[str, Any]) -> list[str]:
    """Architecture, input and normalisation, and the checkpoint chosen."""
    spec, chosen = config["input"], config["selected_by"]
    layers = ", ".join(f"{k}={v}" for k, v in config["layers"].items()) or "defaults"
    return [
        "## Model", "",
        f"- Architecture `{config['arch']}` ({config['parameters']:,} parameters), "
        f"layers: {layers}",
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
    labels = {catalog.ECE: "ECE (uncalibrated)"}  # the raw p_fake's, before temperature
    cols = [(labels.get(k) or catalog.label(k), k) for k in catalog.RANKING_COLUMNS]
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
        "| split | n | ECE before | ECE after | NLL before | NLL after |",
        "|---|---|---|---|---|---|",
        *[f"| {split} | {m[catalog.N]} | {_fmt(m['ece_before'])} | {_fmt(m['ece_after'])} | "
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
            out.append(f"| {rate_percent(point['target_fpr'])} | {point[catalog.THRESHOLD]:.6g} | "
                       f"{split} | " + (" | ".join([_fmt(m['fpr']), _fmt(m['tpr']),
                                                    _fmt(m[catalog.PRECISION]), str(m[catalog.FP]),
                                                    str(m[catalog.TP])]) if m else
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
        f"FAKE share of {_fmt(validation.get(catalog.POSITIVE_RATE))}; precision and the best "
        "threshold change with the share of fakes in the data it is used on.",
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


__all__ = ["model_card"]

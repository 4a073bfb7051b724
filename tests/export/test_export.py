"""``deepfake-search export``: the folder, its reload and its ONNX twin match the trial.

The results folder is ``model_results`` (conftest: real weights and tables, no training);
the export of a real search (``run --export``) is checked in tests/tune/test_tuner.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from search.config import config_from_dict
from search.data.manifest import manifest_hash
from search.export import choose_trial, export_model, fetch_test_predictions
from search.filenames import checkpoint_in
from search.model.checkpoint import load_checkpoint_model, read_predictions
from search.model.folder import load_model, read_model_info
from search.model.registry import layer_kwargs
from search.predict import predict_paths
from search.train.metrics import fit_temperature, logit, threshold_at_fpr, threshold_metrics


def _best_trial(results: Path) -> pd.Series:
    experiment = json.loads((results / "experiment.json").read_text())
    metric = experiment["search"]["metric"]
    trials = pd.read_parquet(results / "trials.parquet")
    ok = trials[(trials["status"] != "ERROR") & trials["checkpoint"].astype(bool)
                & trials[f"best_{metric}"].notna()]
    best = ok.sort_values(f"best_{metric}", ascending=False, kind="stable").iloc[0].copy()
    best["checkpoint"] = str(checkpoint_in(results, best["checkpoint"]))  # recorded relative
    return best


def test_export_writes_a_self_describing_folder(exported: Path, model_results: Path) -> None:
    for name in ("model.safetensors", "config.json", "metrics.json", "model.onnx", "README.md"):
        assert (exported / name).is_file(), name
    config = json.loads((exported / "config.json").read_text())
    best = _best_trial(model_results)
    ckpt_meta = json.loads((Path(best["checkpoint"]) / "config.json").read_text())
    experiment = config_from_dict(ckpt_meta["experiment"])
    assert config["trial_id"] == str(best["trial_id"])
    assert config["arch"] == experiment.model.arch
    assert config["layers"] == layer_kwargs(experiment.model)
    assert config["input"] == ckpt_meta["input"]
    assert config["epoch"] == ckpt_meta["epoch"]
    assert config["threshold"] == pytest.approx(ckpt_meta["metrics"]["val_threshold"])
    assert config["threshold_rule"] == "F1-optimal on validation"
    assert config["training_data"]["manifest_hash"] == manifest_hash(experiment.data.shards)
    assert config["onnx"]["max_abs_diff"] <= 1e-4
    metrics = json.loads((exported / "metrics.json").read_text())
    assert metrics["validation"]["auc"] == pytest.approx(best["best_val_auc"])
    test_file = model_results / "test_metrics.json"
    test = json.loads(test_file.read_text()).get(str(best["trial_id"])) if test_file.is_file() else None
    if test:
        assert metrics["test"]["auc"] == pytest.approx(test["auc"], nan_ok=True)
    card = (exported / "README.md").read_text()
    for needle in ("## Training data", "majority class", "true FAKE", "Cross-dataset drop",
                   "0.7", "40%", "## Intended use", config["training_data"]["manifest_hash"]):
        assert needle in card, needle


def test_reloaded_export_matches_the_trials_checkpoint(exported: Path, model_results: Path,
                                                       frames: Path) -> None:
    best = _best_trial(model_results)
    reference, meta = load_checkpoint_model(best["checkpoint"])
    model, info = load_model(exported)
    x = torch.randn(4, 3, info.input_size, info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (model(x) - reference.eval()(x)).abs().max().item()
    assert diff < 1e-5
    images = sorted(frames.rglob("*.png"))[:6]
    ours = predict_paths(exported, images)
    theirs = predict_paths(best["checkpoint"], images)
    assert np.abs(ours["p_fake"].to_numpy() - theirs["p_fake"].to_numpy()).max() < 1e-5
    assert ours.attrs["threshold"] == pytest.approx(meta["metrics"]["val_threshold"])


def test_onnx_matches_pytorch_with_a_dynamic_batch(exported: Path) -> None:
    import onnxruntime as ort

    model, info = load_model(exported)
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logit", "p_fake"]
    assert not isinstance(session.get_inputs()[0].shape[0], int)  # dynamic batch axis
    for batch in (1, 3, 7):
        x = torch.randn(batch, 3, info.input_size, info.input_size)
        with torch.inference_mode():
            ref = model(x).numpy()
        logit, p_fake = session.run(None, {"image": x.numpy()})
        assert np.abs(logit - ref).max() < 1e-4
        assert np.abs(p_fake - 1 / (1 + np.exp(-ref))).max() < 1e-4


def test_choose_trial_by_id_and_by_another_metric(model_results: Path) -> None:
    trials = pd.read_parquet(model_results / "trials.parquet")
    ok = trials[trials["checkpoint"].astype(bool) & (trials["status"] != "ERROR")]
    last = str(ok.iloc[-1]["trial_id"])
    row, ckpt, _, _ = choose_trial(model_results, trial_id=last)
    assert str(row["trial_id"]) == last and (ckpt / "model.safetensors").is_file()
    row, _, metric, mode = choose_trial(model_results, metric="log_loss")
    assert (metric, mode) == ("val_log_loss", "min")
    assert row["best_val_log_loss"] == ok["best_val_log_loss"].min()


def test_export_user_errors(model_results: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="results folder"):
        export_model(tmp_path)
    with pytest.raises(ValueError, match="no trial 'zzz'"):
        export_model(model_results, trial_id="zzz")
    with pytest.raises(ValueError, match="not in"):
        export_model(model_results, metric="val_banana")
    (tmp_path / "keep.txt").write_text("someone's file")
    with pytest.raises(ValueError, match="not an exported model folder"):
        export_model(model_results, out=tmp_path)
    assert (tmp_path / "keep.txt").is_file()


def test_the_model_card_states_the_exported_files_latency(exported: Path) -> None:
    config = json.loads((exported / "config.json").read_text())
    lat = config["latency"]
    assert lat["median_ms"] > 0 and lat["input_size"] == config["input"]["input_size"]
    assert lat["export_s"] == 0.0  # the shipped model.onnx was timed, not a re-export
    card = (exported / "README.md").read_text()
    assert f"Latency: {lat['median_ms']:.3g} ms median" in card
    assert f"onnxruntime {ort.__version__}" in card


# ------------------------------------------------------------------ calibration, operating points
@pytest.fixture(scope="module")
def at_fpr(model_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best trial exported with two operating points (1% and 5% FPR)."""
    return export_model(model_results, out=tmp_path_factory.mktemp("at_fpr") / "model",
                        target_fpr=[0.05, 0.01], verbose=False)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def test_temperature_and_thresholds_are_fitted_on_validation(at_fpr: Path,
                                                             model_results: Path) -> None:
    """Recomputed from the checkpoint's own prediction files with the metric functions."""
    config = json.loads((at_fpr / "config.json").read_text())
    ckpt = Path(_best_trial(model_results)["checkpoint"])
    (yv, pv), (yt, pt) = (read_predictions(ckpt / name)
                          for name in ("val_predictions.csv", "test_predictions.csv"))
    t = fit_temperature(yv, logit(pv))
    calibration = config["calibration"]
    assert calibration["temperature"] == pytest.approx(t) and calibration["fitted_on"] == "validation"
    val = calibration["validation"]
    assert val["n"] == len(yv) and val["ece_after"] < val["ece_before"]  # what it is fitted for
    assert val["nll_after"] <= val["nll_before"]
    assert calibration["test"]["n"] == len(yt)
    points = config["operating_points"]
    assert [p["target_fpr"] for p in points] == [0.01, 0.05]  # sorted
    for point in points:
        thr = threshold_at_fpr(yv, pv, point["target_fpr"])
        assert point["threshold"] == thr
        for split, (y, p) in (("validation", (yv, pv)), ("test", (yt, pt))):
            m = threshold_metrics(y, p, thr)
            got = point[split]
            assert (got["fp"], got["tp"]) == (m["fp"], m["tp"])
            assert got["fpr"] == pytest.approx(m["fp"] / (m["fp"] + m["tn"]))
            assert got["tpr"] == pytest.approx(m["recall"])
        assert point["validation"]["fpr"] <= point["target_fpr"]
        assert point["p_calibrated"] == pytest.approx(_sigmoid(logit([thr])[0] / t))
    metrics = json.loads((at_fpr / "metrics.json").read_text())
    assert metrics["operating_points"] == points and metrics["calibration"] == calibration
    card = (at_fpr / "README.md").read_text()
    for needle in ("## Calibration", f"T = {t:.4g}", "## Operating points",
                   f"| 1% | {points[0]['threshold']:.6g} | validation |",
                   f"| 5% | {points[1]['threshold']:.6g} | test |", "TPR at FPR 1%",
                   "ECE (uncalibrated)", "--target-fpr 0.01"):
        assert needle in card, needle


def test_predict_applies_the_operating_point_and_temperature(at_fpr: Path, frames: Path) -> None:
    """The threshold export chose, named in every row; p_calibrated = sigmoid(logit / T),
    the same from the PyTorch and the ONNX backend."""
    images = sorted(frames.rglob("*.png"))[:6]
    info = read_model_info(at_fpr)
    chosen = {p["target_fpr"]: p for p in info.meta["operating_points"]}
    rows = {b: predict_paths(at_fpr, images, target_fpr=0.05, backend=b) for b in ("torch", "onnx")}
    for frame in rows.values():
        assert (frame["threshold"] == chosen[0.05]["threshold"]).all()
        assert (frame["threshold_rule"] == "FPR <= 5% on validation (highest TPR)").all()
        assert ((frame["p_fake"] >= chosen[0.05]["threshold"]) == (frame["label"] == "FAKE")).all()
        expected = _sigmoid(logit(frame["p_fake"].to_numpy()) / info.temperature)
        np.testing.assert_allclose(frame["p_calibrated"], expected, rtol=1e-6)
    for column in ("p_fake", "p_calibrated"):
        assert np.abs(rows["torch"][column] - rows["onnx"][column]).max() < 1e-4, column
    own = predict_paths(at_fpr, images)  # the default stays the card's own threshold
    assert (own["threshold"] == info.threshold).all()
    assert (own["threshold_rule"] == "F1-optimal on validation").all()
    with pytest.raises(ValueError, match="no threshold for target FPR 0.02; it has one for: 0.01, 0.05"):
        predict_paths(at_fpr, images, target_fpr=0.02)
    with pytest.raises(ValueError, match="not both"):
        predict_paths(at_fpr, images, threshold=0.3, target_fpr=0.01)


def test_target_fpr_errors(model_results: Path, tmp_path: Path) -> None:
    for bad in (0.0, 1.0, -0.1, "1%"):
        with pytest.raises(ValueError, match="--target-fpr must be a rate"):
            export_model(model_results, out=tmp_path / "m", target_fpr=[bad])
    assert not (tmp_path / "m").exists()


def test_test_predictions_are_made_once_when_missing(model_results: Path, demo_shards: Path,
                                                     tmp_path: Path, ray_cluster) -> None:
    """A checkpoint without test predictions: the test split is evaluated once and kept."""
    ckpt = tmp_path / "checkpoint"
    shutil.copytree(_best_trial(model_results)["checkpoint"], ckpt)
    (ckpt / "test_predictions.csv").unlink()
    (y, p), source = fetch_test_predictions(ckpt, str(demo_shards))
    assert source == "evaluated once at export" and (ckpt / "test_predictions.csv").is_file()
    assert (int((y == 0).sum()), int((y == 1).sum())) == (40, 80)  # the demo's test split
    assert p.min() >= 0 and p.max() <= 1
    _, again = fetch_test_predictions(ckpt, str(demo_shards))
    assert again == "the search's test evaluation"
    (ckpt / "test_predictions.csv").unlink()
    missing, why = fetch_test_predictions(ckpt, str(tmp_path / "no-shards"))
    assert missing is None and "could not be read" in why

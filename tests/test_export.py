"""``deepfake-search export``: the folder, its reload and its ONNX twin match the trial.

The results folder is ``model_results`` (conftest: real weights and tables, no training);
the export of a real search (``run --export``) is checked in tests/tune/test_tuner.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from search.config import config_from_dict
from search.data.prepare import manifest_hash
from search.evaluate import load_checkpoint_model
from search.export import ExportError, choose_trial, export_model, export_onnx
from search.predict import load_model, predict_paths


def _best_trial(results: Path) -> pd.Series:
    experiment = json.loads((results / "experiment.json").read_text())
    metric = experiment["search"]["metric"]
    trials = pd.read_parquet(results / "trials.parquet")
    ok = trials[(trials["status"] != "ERROR") & trials["checkpoint"].astype(bool)
                & trials[f"best_{metric}"].notna()]
    return ok.sort_values(f"best_{metric}", ascending=False, kind="stable").iloc[0]


def test_export_writes_a_self_describing_folder(exported: Path, model_results: Path) -> None:
    for name in ("model.safetensors", "config.json", "metrics.json", "model.onnx", "README.md"):
        assert (exported / name).is_file(), name
    config = json.loads((exported / "config.json").read_text())
    best = _best_trial(model_results)
    ckpt_meta = json.loads((Path(best["checkpoint"]) / "config.json").read_text())
    experiment = config_from_dict(ckpt_meta["experiment"])
    assert config["trial_id"] == str(best["trial_id"])
    assert config["arch"] == experiment.model.arch
    assert config["layers"] == experiment.model.layer_kwargs()
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


def test_onnx_parity_failure_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search import export
    from search.train.models import create_model

    monkeypatch.setattr(export, "ONNX_TOLERANCE", -1.0)  # any difference is now too much
    model = create_model("custom_cnn", input_size=16, conv_blocks=1, base_width=4, dense_units=0)
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(model, 16, tmp_path / "m.onnx")

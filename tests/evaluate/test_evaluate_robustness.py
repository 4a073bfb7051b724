"""Robustness (issue 13, part 3): AUC under JPEG re-compression and a downscale-upscale by 2,
and its drop against the clean split; the perturbations, the summary by hand, a model on
the demo set's test split (``model_results``: real, untrained weights) and the command line."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from search.data.images import down_up, recompress_jpeg
from search.evaluate import CLEAN, PERTURBATIONS, evaluate_robustness, robustness_summary
from search.robustness_table import robustness_table, worst_drop

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _noise(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_jpeg_recompression_is_a_real_jpeg_round_trip() -> None:
    img = _noise()
    q75, q50 = recompress_jpeg(img, 75), recompress_jpeg(img, 50)
    assert q75.shape == img.shape and q75.dtype == np.uint8
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=50)
    np.testing.assert_array_equal(q50, np.asarray(Image.open(buf).convert("RGB")))
    err = {q: np.abs(out.astype(int) - img).mean() for q, out in ((75, q75), (50, q50))}
    assert 0 < err[75] < err[50]  # lower quality, more damage
    with pytest.raises(ValueError, match="quality"):
        recompress_jpeg(img, 0)


def test_down_up_removes_detail_finer_than_two_pixels() -> None:
    flat = np.full((32, 32, 3), 77, np.uint8)
    np.testing.assert_array_equal(down_up(flat), flat)  # nothing to lose
    checker = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, 2)
    out = down_up(checker, 2)
    assert out.shape == checker.shape
    assert out.std() < 0.1 * checker.std()  # a 1-px checkerboard averages out to grey
    assert abs(float(out.mean()) - 127.5) < 2
    blocks = np.kron(np.arange(16 * 16).reshape(16, 16) % 2 * 255, np.ones((2, 2)))
    coarse = blocks.astype(np.uint8)[..., None].repeat(3, 2)
    assert down_up(coarse).std() > 0.3 * coarse.std()  # 2-px blocks partly survive


def test_robustness_summary_by_hand() -> None:
    """REAL 0.1 0.2, FAKE 0.8 0.9: clean AUC 1. Re-compressed, the second REAL jumps to 0.85
    above the FAKE at 0.8: 3 of 4 (REAL, FAKE) pairs right, AUC 0.75, drop 0.25; at
    threshold 0.5 that REAL is flagged: balanced accuracy (1/2 + 1) / 2 = 0.75."""
    y = [0, 0, 1, 1]
    out = robustness_summary(y, {CLEAN: [0.1, 0.2, 0.8, 0.9], "jpeg": [0.1, 0.85, 0.8, 0.9]}, 0.5)
    assert out[CLEAN] == {"auc": 1.0, "balanced_accuracy": 1.0, "tpr_at_fpr_5pct": 1.0,
                          "auc_drop": 0.0}
    assert out["jpeg"]["auc"] == pytest.approx(0.75)
    assert out["jpeg"]["auc_drop"] == pytest.approx(0.25)
    assert out["jpeg"]["balanced_accuracy"] == pytest.approx(0.75)
    assert out["jpeg"]["tpr_at_fpr_5pct"] == pytest.approx(0.5)  # 0.9 only, above 0.85
    assert worst_drop({"conditions": out}) == pytest.approx(0.25)
    table = robustness_table({"a1": {"conditions": out}}, {"a1": "resnet50 · a1"})
    assert table.values.tolist()[1][:4] == ["resnet50 · a1", "jpeg", 0.75, pytest.approx(0.25)]
    with pytest.raises(ValueError, match="clean"):
        robustness_summary(y, {"jpeg": [0.1, 0.2, 0.8, 0.9]}, 0.5)


def test_the_table_rounds_like_its_neighbours() -> None:
    """Every figure at three decimals, as the leaderboard prints its metrics: a drop of
    -0.0001413 (the perturbation helped, by noise) reads 0.000, never -0.0001413 or -0.000;
    a missing figure stays missing."""
    from search.leaderboard import markdown

    conditions = {"clean": {"auc": 0.8402587, "auc_drop": 0.0, "balanced_accuracy": 0.70561,
                            "tpr_at_fpr_5pct": 0.4231},
                  "jpeg_q75": {"auc": 0.8404, "auc_drop": -0.0001413, "balanced_accuracy": None,
                               "tpr_at_fpr_5pct": 0.000417}}
    table = robustness_table({"a1": {"conditions": conditions}})
    assert table.values.tolist() == [["a1", "clean", 0.84, 0.0, 0.706, 0.423],
                                     ["a1", "JPEG quality 75", 0.84, 0.0, None, 0.0]]
    assert math.copysign(1, table["drop"].iloc[1]) == 1  # 0.0, not -0.0
    text = markdown(table)
    assert "| a1 | JPEG quality 75 | 0.840 | 0.000 | — | 0.000 |" in text, text
    assert "-0.0" not in text and "0.0001" not in text and "0.0004" not in text


def test_a_model_on_the_demo_test_split(model_results: Path, demo_shards: Path,
                                        ray_cluster) -> None:
    """Perturbed before normalisation: an all-black condition gives every image the same
    score (AUC exactly 0.5); the clean column is what the test evaluation itself scores."""
    from search.evaluate import evaluate_checkpoint

    checkpoint = model_results / pd.read_parquet(model_results / "trials.parquet")["checkpoint"].iloc[0]
    conditions = {**PERTURBATIONS, "black": np.zeros_like}
    result = evaluate_robustness(checkpoint, demo_shards, "test", conditions=conditions)
    assert result["n"] == 120 and result["split"] == "test"
    got = result["conditions"]
    assert list(got) == [CLEAN, "jpeg_q75", "jpeg_q50", "downup_x2", "black"]
    assert got["black"]["auc"] == 0.5
    reference, _ = evaluate_checkpoint(checkpoint, demo_shards, "test")
    assert got[CLEAN]["auc"] == pytest.approx(reference["auc"], abs=1e-9)
    assert result["threshold"] == pytest.approx(reference["threshold"])
    for name, m in got.items():
        assert m["auc_drop"] == pytest.approx(got[CLEAN]["auc"] - m["auc"]), name
    assert len({round(m["auc"], 9) for m in got.values()}) > 2  # the perturbations did act


def test_evaluate_robustness_on_the_command_line(exported: Path, demo_shards: Path, ray_cluster,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli import main

    assert main(["evaluate", str(exported), "--data", str(demo_shards), "--robustness"]) == 0
    out = capsys.readouterr().out
    table = out.split("robustness (", 1)[1]
    for needle in ("| trial | condition | AUC | drop |", "| model | clean |",
                   "| model | JPEG quality 50 |", "| model | downscale x2 and back |",
                   "n=120", "re-compression"):
        assert needle in table, needle


def _same(got: dict, want: dict) -> None:
    """Equal dicts of numbers, NaN equal to NaN (an undefined metric stays undefined)."""
    assert list(got) == list(want)
    for key, value in want.items():
        both_nan = isinstance(value, float) and math.isnan(value) and math.isnan(got[key])
        assert both_nan or got[key] == value, key


def test_a_finalist_is_scored_in_one_pass(model_results: Path, demo_shards: Path, ray_cluster,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search's finalist evaluation streams the test split once per finalist, and its
    clean column, test metrics, predictions and robustness are exactly what the separate
    evaluations (test metrics, then robustness) gave from their own passes."""
    import search.evaluate.scoring as ev
    from search.config import load_config
    from search.evaluate.finalists import evaluate_finalists
    from search.model.checkpoint import load_checkpoint_model
    from search.tune.tables import finalists

    chosen = finalists(pd.read_parquet(model_results / "trials.parquet"), "val_auc", model_results)
    # Copies: the finalist evaluation writes test_predictions.csv beside each checkpoint.
    copies = [shutil.copytree(c, tmp_path / f"ckpt{i}") for i, c in enumerate(chosen["checkpoint"])]
    reference = {}
    for tid, ckpt in zip(chosen["trial_id"], copies, strict=True):
        metrics, preds = ev.evaluate_checkpoint(ckpt, demo_shards, "test")
        clean = ev.perturbed_predictions(*load_checkpoint_model(ckpt), demo_shards, "test")
        np.testing.assert_array_equal(clean[CLEAN], preds["p_fake"])  # the same scoring step
        assert clean["id"].tolist() == preds["id"].tolist()
        reference[tid] = metrics, preds, evaluate_robustness(ckpt, demo_shards, "test")

    passes = []
    stream = ev.eval_dataset
    monkeypatch.setattr(ev, "eval_dataset", lambda *a, **k: passes.append(a) or stream(*a, **k))
    cfg = load_config(EXAMPLES / "tiny.yaml", [f"data.shards={demo_shards}"])
    test, robust = evaluate_finalists(cfg, tmp_path, chosen.assign(checkpoint=copies))
    assert len(passes) == len(chosen) >= 1  # one pass per finalist, not two
    assert json.loads((tmp_path / "test_metrics.json").read_text()).keys() == test.keys()
    for tid, ckpt in zip(chosen["trial_id"], copies, strict=True):
        metrics, preds, robustness = reference[tid]
        _same(test[tid], metrics)
        assert {**robust[tid], "conditions": None} == {**robustness, "conditions": None}
        assert robust[tid]["n"] == len(preds)
        for name, figures in robustness["conditions"].items():
            _same(robust[tid]["conditions"][name], figures)
        written = pd.read_csv(ckpt / "test_predictions.csv", dtype={"id": str})
        pd.testing.assert_frame_equal(written, preds)

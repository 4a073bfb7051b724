"""search.model.latency: a model's ONNX Runtime latency per image, and what is recorded with it
(the exported model card's latency is checked in tests/export/test_export.py)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import onnxruntime as ort
import pytest

from search.catalog import LATENCY_COST_S as LATENCY_COST
from search.catalog import LATENCY_MS as LATENCY_METRIC
from search.catalog import LATENCY_P90_MS as LATENCY_P90
from search.config import load_config
from search.model.checkpoint import build_model
from search.model.latency import (
    FINAL,
    IN_SEARCH,
    THREADS,
    Protocol,
    checkpoint_latency,
    model_latency,
    onnx_latency,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _tiny(width: int, blocks: int = 2, size: int = 32):
    cfg = load_config(EXAMPLES / "tiny.yaml", ["arch=custom_cnn", f"input_size={size}",
                                               f"base_width={width}", f"conv_blocks={blocks}",
                                               "dense_units=32"])
    return build_model(cfg, pretrained=False).eval()


def test_latency_of_a_tiny_model_is_measured_and_says_how():
    lat = model_latency(_tiny(8), 32, IN_SEARCH)
    assert 0 < lat.min_ms <= lat.median_ms <= lat.p90_ms and math.isfinite(lat.p90_ms)
    assert lat.min_ms <= lat.mean_ms
    assert IN_SEARCH.min_repeats <= lat.runs <= IN_SEARCH.repeats
    assert (lat.input_size, lat.batch, lat.warmup) == (32, 1, IN_SEARCH.warmup)
    assert lat.intra_op_threads == lat.inter_op_threads == THREADS == 1
    assert lat.onnxruntime == ort.__version__ and lat.providers == ("CPUExecutionProvider",)
    assert lat.cpu_count == os.cpu_count() and lat.processor and lat.host
    assert lat.export_s > 0 and lat.timing_s > 0
    # What a trial reports every epoch.
    assert lat.metrics() == {LATENCY_METRIC: lat.median_ms, LATENCY_P90: lat.p90_ms,
                             LATENCY_COST: lat.export_s + lat.timing_s}
    saved = json.loads(json.dumps(lat.to_dict()))
    assert saved["median_ms"] == lat.median_ms and saved["providers"] == ["CPUExecutionProvider"]
    assert "32 px, batch 1, 1 thread" in lat.describe()


def test_a_bigger_model_is_slower():
    """16x the convolution work (4x the width, 4x the pixels): the figure must see it."""
    small = model_latency(_tiny(8, size=32), 32, FINAL)
    big = model_latency(_tiny(32, blocks=3, size=64), 64, FINAL)
    assert big.median_ms > 2 * small.median_ms


def test_the_budget_bounds_the_runs(tmp_path):
    from search.model.onnx import export_onnx

    export_onnx(_tiny(8), 32, tmp_path / "m.onnx", dynamo=False)
    lat = onnx_latency(tmp_path / "m.onnx", 32,
                       Protocol(warmup=0, repeats=10**6, budget_s=0.05, min_repeats=3))
    assert 3 <= lat.runs < 10**6 and lat.export_s == 0.0


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"min_repeats": 0},
                                    {"repeats": 5, "min_repeats": 6}, {"budget_s": 0.0}])
def test_a_protocol_that_cannot_measure_is_refused(kwargs):
    with pytest.raises(ValueError, match="latency protocol"):
        Protocol(**kwargs)


def test_a_checkpoint_is_measured_at_its_input_size(model_results):
    ckpt = next((model_results / "trial_a1").glob("checkpoint_*"))
    lat = checkpoint_latency(ckpt, IN_SEARCH)
    size = json.loads((ckpt / "config.json").read_text())["input"]["input_size"]
    assert lat.input_size == size and lat.median_ms > 0

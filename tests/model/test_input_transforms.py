"""model.input_transform: the fixed module in front of the network (rgb, npr, highpass), its
math, its config and search-space checks, and that checkpoints, exported model folders, the
ONNX graph and predict all carry it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from search import catalog, filenames
from search.config import ConfigError, ExperimentConfig, ModelConfig
from search.model.checkpoint import build_model, save_checkpoint
from search.model.folder import build_torch_model, read_model_info
from search.model.onnx import export_onnx
from search.model.registry import CustomCNN, create_model, layer_kwargs, model_params
from search.model.transforms import (
    INPUT_TRANSFORMS,
    NPR,
    HighPass,
    WithInputTransform,
    create_input_transform,
)

TINY = {"conv_blocks": 2, "base_width": 4, "dense_units": 8}


def test_npr_by_hand_on_an_odd_size():
    """Each 2x2 block minus its top-left pixel; the odd last row and column are blocks of
    their own (1x2, 2x1, 1x1) with the same rule."""
    x = torch.tensor([[1., 2., 3.],
                      [4., 5., 6.],
                      [7., 8., 9.]]).reshape(1, 1, 3, 3)
    expected = torch.tensor([[0., 1., 0.],
                             [3., 4., 3.],
                             [0., 1., 0.]])
    assert torch.equal(NPR()(x)[0, 0], expected)
    even = torch.arange(16.).reshape(1, 1, 4, 4)
    assert torch.equal(NPR()(even)[0, 0], torch.tensor([[0., 1.] * 2, [4., 5.] * 2] * 2))
    three = torch.rand(2, 3, 5, 7)
    assert NPR()(three).shape == three.shape  # per channel, any size


def test_highpass_by_hand():
    """x minus its 3x3 box mean: a flat image gives 0, an impulse 8/9 at itself and -1/9
    around it, nothing further away."""
    hp = HighPass()
    assert hp(torch.full((1, 3, 6, 6), 0.7)).abs().max() < 1e-6
    x = torch.zeros(1, 3, 5, 5)
    x[0, :, 2, 2] = 9.0
    out = hp(x)[0]
    assert torch.allclose(out[:, 2, 2], torch.full((3,), 8.0))
    assert torch.allclose(out[:, 1:4, 1:4].sum(dim=(1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out[:, 1, 1], torch.full((3,), -1.0))
    assert out[:, 0, :].abs().max() == 0 and out[:, :, 4].abs().max() == 0
    assert not list(hp.state_dict())  # a fixed filter: nothing in a checkpoint


def test_registry_and_config_agree_and_rgb_is_the_bare_network():
    assert INPUT_TRANSFORMS == ("rgb", "npr", "highpass")
    assert create_input_transform("rgb") is None
    assert all("input_transform" in model_params(a) for a in ("custom_cnn", "resnet50"))
    assert isinstance(create_model("custom_cnn", input_size=32, **TINY), CustomCNN)
    npr = create_model("custom_cnn", input_size=32, input_transform="npr", **TINY)
    assert isinstance(npr, WithInputTransform) and isinstance(npr.transform, NPR)
    rgb = create_model("custom_cnn", input_size=32, **TINY)
    # The same weights under the wrapper: only the "net." prefix differs.
    assert list(npr.state_dict()) == [f"net.{k}" for k in rgb.state_dict()]
    with pytest.raises(ValueError, match="npr, highpass"):
        create_model("custom_cnn", input_size=32, input_transform="fft", **TINY)


def test_an_unknown_transform_is_a_config_error_naming_the_key_and_the_names():
    with pytest.raises(ConfigError, match=r"model\.input_transform.*'rgb', 'npr', 'highpass'.*"
                                          r"Did you mean 'npr'"):
        ModelConfig(input_transform="nrp")
    cfg = ExperimentConfig().with_overrides(["model.input_transform=highpass"])
    assert layer_kwargs(cfg.model)["input_transform"] == "highpass"


@pytest.mark.parametrize("name", ["npr", "highpass"])
@pytest.mark.parametrize("size", [32, 33])
def test_transforms_export_to_onnx_with_parity(name, size, tmp_path):
    """The TorchScript exporter (quick); the torch.export one runs in the round trip below."""
    torch.manual_seed(0)
    model = create_model("custom_cnn", input_size=size, input_transform=name, **TINY)
    assert export_onnx(model, size, tmp_path / "m.onnx", dynamo=False) <= 1e-4


def _results_with_one_trial(root: Path, shards: Path, transform: str) -> Path:
    """A search's results folder around one custom_cnn trial with real, untrained weights
    and ``input_transform``: what export reads (experiment, trials table, a checkpoint)."""
    base = ExperimentConfig().with_overrides([f"data.shards={shards}", "search.name=npr",
                                              "model.input_size=32"])
    cfg = base.with_params({**TINY, "input_transform": transform})
    results = root / "npr"
    ckpt = results / filenames.trial_dirname("t1") / "checkpoint_000000"
    ckpt.mkdir(parents=True)
    torch.manual_seed(3)
    metrics = {"epoch": 1, "val_auc": 0.7, "val_threshold": 0.5}
    save_checkpoint(ckpt, build_model(cfg, pretrained=False), cfg,
                    {"epoch": 1, "metrics": metrics})
    rng = np.random.default_rng(0)
    pd.DataFrame({"id": range(40), "label": [0, 1] * 20, "p_fake": rng.random(40)}).to_csv(
        ckpt / filenames.VAL_PREDICTIONS, index=False)
    (results / filenames.EXPERIMENT).write_text(json.dumps(base.to_dict()))
    pd.DataFrame({"trial_id": ["t1"], "status": ["TERMINATED"], "checkpoint": [str(ckpt)],
                  "input_transform": [transform], catalog.best("val_auc"): [0.7]}).to_parquet(
        results / filenames.TRIALS_PARQUET, index=False)
    return results


def test_npr_checkpoint_export_onnx_and_predict_round_trip(demo_shards, tmp_path):
    """A checkpoint records input_transform; export writes it into the model folder's
    layers, the ONNX graph (torch.export, parity-checked) applies it, and predict scores the
    same with PyTorch and ONNX as the original model does."""
    from search.export import export_model
    from search.predict import Preprocessor, predict_paths

    results = _results_with_one_trial(tmp_path, demo_shards, "npr")
    ckpt = results / filenames.trial_dirname("t1") / "checkpoint_000000"
    saved = json.loads((ckpt / filenames.CONFIG).read_text())
    assert saved["experiment"]["model"]["input_transform"] == "npr"
    info = read_model_info(ckpt)
    assert info.layers["input_transform"] == "npr"
    original = build_torch_model(info)
    assert isinstance(original, WithInputTransform)

    out = export_model(results, out=tmp_path / "model", verbose=False)
    exported = json.loads((out / filenames.CONFIG).read_text())
    assert exported["layers"]["input_transform"] == "npr"
    assert exported["model"]["input_transform"] == "npr"
    info = read_model_info(out)
    assert info.layers["input_transform"] == "npr" and info.has_onnx()
    rebuilt = build_torch_model(info)
    assert isinstance(rebuilt, WithInputTransform) and isinstance(rebuilt.transform, NPR)

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):  # odd sizes too: predict resizes to the model's 32 px
        side = 31 + 2 * i
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            images / f"{i}.png")
    torch_scores = predict_paths(out, [images], backend="torch")
    onnx_scores = predict_paths(out, [images], backend="onnx")
    assert torch_scores["error"].isna().all()
    np.testing.assert_allclose(onnx_scores["p_fake"], torch_scores["p_fake"], atol=1e-5)
    pre = Preprocessor(info)
    batch = np.stack([pre((images / Path(p).name).read_bytes()) for p in torch_scores["path"]])
    with torch.inference_mode():  # the checkpoint's own model scores the same inputs alike
        direct = torch.sigmoid(original(torch.from_numpy(batch))).reshape(-1).numpy()
    np.testing.assert_allclose(direct, torch_scores["p_fake"], atol=1e-5)

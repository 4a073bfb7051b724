"""Model registry and factory: shapes, options, freezing, offline weights and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from search.model.registry import (
    COMMON_PARAMS,
    STUDY_ARCHS,
    TIMM_PARAMS,
    CustomCNN,
    PretrainedWeightsUnavailable,
    UnknownModelError,
    create_model,
    data_config,
    list_models,
    model_params,
)

#: Input side for the per-arch smoke test. Probed minima on timm 1.0.31 (batch 2, train
#: mode): legacy Xception's unpadded 3x3 stem needs >= 7 px, ResNe(X)t run on a few pixels,
#: the custom CNN needs 2**conv_blocks (8 for the default 3). 32 px keeps every arch,
#: resnext101_32x8d (87 M params) included, at about a second per step on 2 cores.
SMOKE_SIZE = 32


def _step(model: nn.Module, size: int, batch: int = 2, lr: float = 0.1) -> torch.Tensor:
    """One SGD step on random data; returns the logits."""
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    x = torch.randn(batch, 3, size, size)
    y = (torch.arange(batch) % 2).float().unsqueeze(1)  # REAL, FAKE, REAL, ...
    logits = model(x)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return logits


def test_registry_lists_the_study_archs() -> None:
    assert list_models() == list(STUDY_ARCHS)
    assert set(model_params("custom_cnn")) >= {"conv_blocks", "filters", "dropout", "batch_norm"}
    assert model_params("resnet50") == TIMM_PARAMS + COMMON_PARAMS
    assert model_params("efficientnet_b0") == TIMM_PARAMS + COMMON_PARAMS  # any timm name


@pytest.mark.parametrize("arch", list_models())
def test_forward_backward_every_registered_arch(arch: str) -> None:
    torch.manual_seed(0)
    size = SMOKE_SIZE
    batch = 2
    model = create_model(arch, input_size=size)
    logits = _step(model, size, batch=batch)
    assert logits.shape == (batch, 1)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_generic_timm_name_with_hidden_head() -> None:
    model = create_model("efficientnet_b0", input_size=32, head_hidden=16, head_dropout=0.2)
    assert _step(model, 32).shape == (2, 1)
    assert isinstance(model.head[0], nn.Linear) and model.head[0].out_features == 16


@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_custom_cnn_blocks_and_batch_norm(blocks: int, batch_norm: bool) -> None:
    model = create_model(
        "custom_cnn", input_size=32, conv_blocks=blocks, base_width=4, batch_norm=batch_norm
    )
    assert isinstance(model, CustomCNN)
    assert model.filters == tuple(4 * 2**i for i in range(blocks))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == blocks
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == batch_norm
    assert _step(model, 32).shape == (2, 1)


def test_custom_cnn_filters_dropout_dense_kernel() -> None:
    model = create_model(
        "custom_cnn", input_size=48, filters=(8, 12), kernel_size=5, dense_units=16, dropout=0.3
    )
    assert model.filters == (8, 12)  # explicit filters override conv_blocks/base_width
    assert [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)] == [(5, 5)] * 2
    assert next(m for m in model.modules() if isinstance(m, nn.Dropout)).p == 0.3
    dense = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert dense[0].in_features == 12 * 12 * 12 and dense[0].out_features == 16
    assert _step(model, 48).shape == (2, 1)
    # dense_units=0: Flatten -> Dropout -> output Dense.
    model = create_model("custom_cnn", input_size=32, base_width=4, dense_units=0)
    assert len([m for m in model.modules() if isinstance(m, nn.Linear)]) == 1
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1)


def test_custom_cnn_input_too_small() -> None:
    with pytest.raises(ValueError, match="too small for 4 conv blocks.*>= 16"):
        create_model("custom_cnn", input_size=8, conv_blocks=4)


def test_custom_cnn_has_no_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("custom_cnn", pretrained=True)


@pytest.mark.parametrize("frozen_stages", [2, -1])
def test_freezing_is_honoured(frozen_stages: int) -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", input_size=32, frozen_stages=frozen_stages)
    frozen_prefixes = (
        ("backbone.",)
        if frozen_stages == -1
        else ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.", "backbone.layer2.")
    )
    for name, p in model.named_parameters():
        assert p.requires_grad != name.startswith(frozen_prefixes), name
    if frozen_stages == -1:
        assert {n for n, p in model.named_parameters() if p.requires_grad} == {
            "head.1.weight",
            "head.1.bias",
        }
    # BatchNorm in the frozen part became FrozenBatchNorm2d (stats fixed in train mode too).
    assert isinstance(model.backbone.layer2[0].bn1, FrozenBatchNorm2d)
    if frozen_stages == 2:
        assert type(model.backbone.layer3[0].bn1) is nn.BatchNorm2d

    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Two steps: timm zero-inits each block's last BN gamma, so the residual convs only get
    # a gradient once that gamma has moved.
    _step(model, 32)
    _step(model, 32)
    after = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for key, value in before.items():
        if key in trainable:
            assert not torch.equal(value, after[key]), f"{key} should have been updated"
        elif key.startswith(frozen_prefixes):
            assert torch.equal(value, after[key]), f"{key} should be frozen"


def test_frozen_stages_range_is_checked() -> None:
    with pytest.raises(ValueError, match="resnet50' has 4 stages"):
        create_model("resnet50", frozen_stages=5)
    model = create_model("xception", frozen_stages=3)  # stem + block1..3 of 12 + exit flow
    assert not model.backbone.block3.rep[1].pointwise.weight.requires_grad
    assert model.backbone.block4.rep[1].pointwise.weight.requires_grad


class _Opaque:
    """A pickled object that torch.load(weights_only=True) must refuse."""


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    """A random resnet18 state_dict standing in for downloaded ImageNet weights."""
    torch.manual_seed(1)
    return timm.create_model("resnet18").state_dict()


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "nested_pth"])
def test_pretrained_from_local_file(
    fmt: str, tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    if fmt == "safetensors":
        path = tmp_path / "resnet18.safetensors"
        safetensors.torch.save_file(resnet18_state, str(path))
    else:
        path = tmp_path / "resnet18.pth"
        obj = {"state_dict": resnet18_state, "epoch": 3} if fmt == "nested_pth" else resnet18_state
        torch.save(obj, path)
    model = create_model("resnet18", pretrained=str(path), input_size=32)
    backbone = model.backbone.state_dict()
    assert "fc.weight" not in backbone  # the 1000-class classifier is dropped
    for key, value in backbone.items():
        assert torch.equal(value, resnet18_state[key]), key
    assert model.head[1].weight.shape == (1, 512)


def test_pretrained_file_errors(tmp_path: Path, resnet18_state: dict[str, torch.Tensor]) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        create_model("resnet18", pretrained=missing)
    odd = tmp_path / "w.ckpt"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        create_model("resnet18", pretrained=odd)
    wrong = tmp_path / "r18.safetensors"
    safetensors.torch.save_file(resnet18_state, str(wrong))
    with pytest.raises(ValueError, match="(?s)into 'resnet50'.*size mismatch"):
        create_model("resnet50", pretrained=wrong)
    pickled = tmp_path / "pickled.pth"  # arbitrary objects are never unpickled
    torch.save({"state_dict": resnet18_state, "trainer": _Opaque()}, pickled)
    with pytest.raises(ValueError, match="weights_only"):
        create_model("resnet18", pretrained=pickled)
    renamed = tmp_path / "renamed.safetensors"
    safetensors.torch.save_file({f"x.{k}": v for k, v in resnet18_state.items()}, str(renamed))
    with pytest.raises(ValueError, match="none of"):
        create_model("resnet18", pretrained=renamed)


def test_unreachable_hub_raises_pretrained_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # no cached weights
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        create_model("resnet50", pretrained=True)
    message = str(info.value)
    assert "resnet50" in message and "local file" in message
    assert "pretrained: /path/to/resnet50.safetensors" in message
    assert "safetensors.torch.save_file" in message


def test_unknown_arch_names_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="resnet50") as info:
        create_model("resnet5")
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownModelError, match="custom_cnn"):
        model_params("custom_cn")
    with pytest.raises(UnknownModelError, match="xception"):
        data_config("xceptoin")


def test_unknown_layer_kwarg() -> None:
    with pytest.raises(ValueError, match="'dropout'.*head_dropout"):
        create_model("resnet50", dropout=0.5)
    with pytest.raises(ValueError, match="'frozen_stages'.*conv_blocks"):
        create_model("custom_cnn", frozen_stages=1)


def test_data_config() -> None:
    cfg = data_config("resnet50")
    assert cfg["mean"] == pytest.approx((0.485, 0.456, 0.406))
    assert cfg["std"] == pytest.approx((0.229, 0.224, 0.225))
    assert cfg["native_input_size"] == cfg["input_size"] == 224
    for name in ("xception", "legacy_xception"):
        cfg = data_config(name, input_size=224)
        assert cfg["native_input_size"] == 299 and cfg["input_size"] == 224
        assert cfg["mean"] == pytest.approx((0.5, 0.5, 0.5))
        assert cfg["std"] == pytest.approx((0.5, 0.5, 0.5))
    assert data_config("custom_cnn", input_size=128) == {
        "mean": pytest.approx((0.485, 0.456, 0.406)),
        "std": pytest.approx((0.229, 0.224, 0.225)),
        "input_size": 128,
        "native_input_size": 224,
    }


@pytest.mark.parametrize("arch", ["custom_cnn", "resnet18"])
def test_channels_last_forward(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    assert out.shape == (2, 1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_custom_cnn_onnx_export(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = create_model("custom_cnn", input_size=32, base_width=4).eval()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logit"])
    session = ort.InferenceSession(str(path))
    (out,) = session.run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(x).detach(), rtol=1e-4, atol=1e-5)

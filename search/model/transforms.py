"""Fixed input transforms placed in front of a network: what it sees instead of RGB.

``model.input_transform`` names one; :func:`search.model.registry.create_model` puts it in
front of the architecture as the first module of the ``nn.Module``, so training (on the
training device), checkpoints, exported model folders (their ``layers`` record it), the
ONNX graph and ``predict`` all apply it with no other change. None of them has weights:
the state dict of a model is the same with or without one, except for the ``net.`` prefix
of the wrapper (:class:`WithInputTransform`).

- ``rgb``: the image as it is (the project's behaviour before this option; no wrapper).
- ``npr``: Neighbouring Pixel Relationships (Tan et al., CVPR 2024,
  chuangchuangtan/NPR-DeepfakeDetection): ``x - nearest_up(nearest_down(x, 2))``, the
  residual that a 2x nearest up-sampling leaves; each 2x2 block minus its top-left pixel.
  An odd side is handled by up-sampling the ``ceil(n/2)`` samples and cropping back to
  ``n`` (the last row/column is then a block of one and its residual 0). The paper
  multiplies the residual by 2/3 before its first convolution; a constant scale does not
  matter to a network that starts with a convolution and batch norm, so it is left out.
- ``highpass``: each channel minus its 3x3 box blur (reflect-padded), i.e. a fixed
  Laplacian-like kernel ``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] / 9`` per channel (as the
  fixed SRM-style filters of the field): the image without its low frequencies.

All three export to ONNX at the project's opset (Slice, Resize/nearest, Pad/reflect,
depthwise Conv): ``tests/model/test_input_transforms.py`` checks the parity.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from search.config import ModelConfig


class NPR(nn.Module):
    """``x - nearest_up(nearest_down(x, 2))`` on an NCHW batch (any H, W >= 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        down = x[..., ::2, ::2]  # nearest down by 2: the top-left pixel of each 2x2 block
        up = F.interpolate(down, scale_factor=2.0, mode="nearest")
        return x - up[..., :h, :w]


class HighPass(nn.Module):
    """Each channel minus its 3x3 box blur (reflect padding): a fixed high-pass filter."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        kernel = torch.full((3, 3), -1.0 / 9.0)
        kernel[1, 1] = 8.0 / 9.0
        # Not persistent: a fixed filter, not a weight (checkpoints stay the network's own).
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(),
                             persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(padded, self.kernel.to(x.dtype), groups=self.channels)


#: name -> factory of the transform module; ``None`` = the image as it is.
_TRANSFORMS: dict[str, Callable[[], nn.Module] | None] = {
    "rgb": None,
    "npr": NPR,
    "highpass": HighPass,
}

#: Valid names, in the order the config's type lists them.
INPUT_TRANSFORMS: tuple[str, ...] = typing.get_args(
    typing.get_type_hints(ModelConfig)["input_transform"])
assert set(INPUT_TRANSFORMS) == set(_TRANSFORMS), "config and registry disagree"


def create_input_transform(name: str) -> nn.Module | None:
    """The transform module called ``name`` (``None`` for ``rgb``); an unknown name is a
    ValueError naming the valid ones."""
    if name not in _TRANSFORMS:
        raise ValueError(f"unknown input_transform {name!r}; valid: {', '.join(_TRANSFORMS)}")
    factory = _TRANSFORMS[name]
    return None if factory is None else factory()


class WithInputTransform(nn.Module):
    """``net(transform(x))``: the network behind its fixed input transform."""

    def __init__(self, transform: nn.Module, net: nn.Module, name: str) -> None:
        super().__init__()
        self.transform = transform
        self.net = net
        self.input_transform = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.transform(x))


def with_input_transform(net: nn.Module, name: str) -> nn.Module:
    """``net`` behind the transform ``name`` (``net`` itself for ``rgb``, so an RGB model's
    state dict keys are what they always were and older model folders load unchanged)."""
    transform = create_input_transform(name)
    return net if transform is None else WithInputTransform(transform, net, name)


__all__ = ["INPUT_TRANSFORMS", "HighPass", "NPR", "WithInputTransform",
           "create_input_transform", "with_input_transform"]

"""Model registry and the one factory the search uses to build REAL-vs-DEEPFAKE classifiers.

Every model maps an image batch ``(B, 3, H, W)`` to ONE logit per image ``(B, 1)``; the
training loop uses BCE-with-logits and ``p_fake = sigmoid(logit)`` (DEEPFAKE = label 1).

Two kinds of builders live behind :func:`create_model`, in the style of timm's registry:

* ``custom_cnn``: the study's Keras-style CNN (Conv2D/MaxPooling2D blocks, Flatten, Dense,
  Dropout, output Dense), fully configurable from the search space.
* timm families (``resnet50``, ``resnext50_32x4d``, ``resnext101_32x8d``, ``xception`` and any
  other ``timm.list_models()`` name): a timm backbone without its classifier plus our own
  binary head, with optional stage freezing and offline pretrained weights from a local file.

The builders themselves live beside it (timm's ``_registry``/``_builder`` split): the CNN in
:mod:`search.model.custom_cnn`, the timm families in :mod:`search.model.timm_family`, a
local pretrained file's checks in :mod:`search.model.pretrained_file`. This module keeps
the names, the layer settings each accepts, the factory and the input normalisation
(:func:`data_config`).

Imports: timm is imported inside the functions that build timm models: the search space
reads the registry's layer settings (model_params) without loading timm.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from search.config import ModelConfig, did_you_mean, short_repr
from search.model.custom_cnn import CustomCNN
from search.model.timm_family import (
    TIMM_ALIASES,
    TimmBinaryClassifier,
    pretrained_cfg_dict,
    timm_builder,
)
from search.model.transforms import create_input_transform, with_input_transform
from search.model.weights import PretrainedWeightsUnavailable, package_weights

# timm (and the torchvision and torch._dynamo it pulls in) costs ~1.4 s per process: it is
# imported where a timm model is touched, so a custom-CNN trial's workers never pay for it.

__all__ = [
    "STUDY_ARCHS",
    "TIMM_PARAMS",
    "CUSTOM_CNN_PARAMS",
    "COMMON_PARAMS",
    "PretrainedWeightsUnavailable",
    "UnknownModelError",
    "CustomCNN",
    "TimmBinaryClassifier",
    "register_model",
    "list_models",
    "layer_kwargs",
    "model_params",
    "create_model",
    "data_config",
]

STUDY_ARCHS: tuple[str, ...] = (
    "custom_cnn",
    "resnet50",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "xception",
)

#: Layer-config kwargs accepted by every timm-backed model (registered or not).
TIMM_PARAMS: tuple[str, ...] = ("frozen_stages", "head_dropout", "head_hidden")
#: Layer-config kwargs accepted by ``custom_cnn``.
CUSTOM_CNN_PARAMS: tuple[str, ...] = (
    "conv_blocks",
    "base_width",
    "filters",
    "kernel_size",
    "dense_units",
    "dropout",
    "batch_norm",
)

#: Layer-config kwargs every architecture accepts: the fixed input transform in front of the
#: network (``rgb``, ``npr``, ``highpass``; search/model/transforms.py), recorded with the
#: other layer settings so that a checkpoint or model folder rebuilds it.
COMMON_PARAMS: tuple[str, ...] = ("input_transform",)

_IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
_IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class UnknownModelError(ValueError):
    """The architecture name is neither registered here nor a timm model."""


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    params: tuple[str, ...]
    timm_name: str | None = None  # set for timm-backed entries (drives data_config)


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str, *, params: tuple[str, ...], timm_name: str | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under ``name``; ``params`` are the layer-config kwargs it accepts.

    The builder is called as ``builder(pretrained=..., input_size=..., num_classes=..., **cfg)``
    with ``cfg`` restricted to ``params``, so :func:`create_model` can reject typos early.
    ``timm_name`` marks a timm-backed builder so :func:`data_config` reads timm's cfg for it.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(builder=builder, params=tuple(params), timm_name=timm_name)
        return builder

    return decorator


def list_models() -> list[str]:
    """Names registered in this module, in registration order (the study's archs first)."""
    return list(_REGISTRY)


def _is_timm_model(arch: str) -> bool:
    """True for any timm architecture name, with or without a pretrained tag."""
    import timm

    try:
        return bool(timm.is_model(arch))
    except Exception:  # malformed names are simply "not a timm model"
        return False


def _unknown(arch: str) -> UnknownModelError:
    """Build an UnknownModelError that names the closest registered / timm names."""
    import timm

    candidates = list_models() + [m for m in timm.list_models() if m not in _REGISTRY]
    return UnknownModelError(
        f"unknown model {short_repr(arch)}.{did_you_mean(arch, candidates, n=5)} Registered: "
        f"{', '.join(list_models())}; "
        "any timm.list_models() name also works."
    )


def model_params(arch: str) -> tuple[str, ...]:
    """Layer-config kwargs ``arch`` accepts (the timm-family ones for unregistered timm names),
    :data:`COMMON_PARAMS` included."""
    if arch in _REGISTRY:
        return _REGISTRY[arch].params + COMMON_PARAMS
    if _is_timm_model(arch):
        return TIMM_PARAMS + COMMON_PARAMS
    raise _unknown(arch)


def layer_kwargs(model: ModelConfig) -> dict[str, Any]:
    """The layer settings of a model config that its architecture accepts (the others do
    not apply to it): what ``create_model`` gets and a model folder records as ``layers``."""
    return {name: getattr(model, name) for name in model_params(model.arch)
            if hasattr(model, name)}


def create_model(
    arch: str,
    *,
    pretrained: bool | str | os.PathLike[str] = False,
    input_size: int = 224,
    num_classes: int = 1,
    **layer_cfg: Any,
) -> nn.Module:
    """Build ``arch`` with a ``num_classes``-logit head (1 = binary, BCE-with-logits).

    ``pretrained``: ``False`` random init; ``True`` the weights an installed package ships
    (:mod:`search.model.weights`, offline) or else timm's hub weights (needs network);
    a path to ``.safetensors``/``.pth``/``.pt``/``.bin`` loads a local state_dict offline.
    ``layer_cfg`` must be a subset of :func:`model_params` for ``arch``; its
    ``input_transform`` (default ``rgb``: none) is put in front of the network
    (:func:`search.model.transforms.with_input_transform`).
    """
    if arch in _REGISTRY:
        entry = _REGISTRY[arch]
    elif _is_timm_model(arch):
        entry = _Entry(builder=timm_builder(arch), params=TIMM_PARAMS, timm_name=arch)
    else:
        raise _unknown(arch)
    unknown = sorted(set(layer_cfg) - set(entry.params) - set(COMMON_PARAMS))
    if unknown:
        raise ValueError(
            f"{arch!r} does not accept layer option(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(entry.params + COMMON_PARAMS)}"
        )
    transform = layer_cfg.pop("input_transform", "rgb")
    create_input_transform(transform)  # an unknown name fails before the network is built
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1:
        raise ValueError(f"input_size must be a positive int, got {input_size!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    net = entry.builder(
        pretrained=pretrained, input_size=input_size, num_classes=num_classes, **layer_cfg
    )
    return with_input_transform(net, transform)


def data_config(arch: str, *, input_size: int | None = None) -> dict[str, Any]:
    """Normalisation and sizes for ``arch``, read from timm's pretrained cfg (no download).

    Returns ``{"mean", "std", "input_size", "native_input_size"}``; ``input_size`` is the
    experiment's if given, else the native (pretraining) resolution. ``custom_cnn`` uses
    ImageNet mean/std and a native 224 so all archs share one preprocessing path.
    """
    if arch in _REGISTRY:
        timm_name = _REGISTRY[arch].timm_name
    elif _is_timm_model(arch):
        timm_name = arch
    else:
        raise _unknown(arch)
    packaged = package_weights(timm_name) if timm_name else None
    pretrained_cfg = pretrained_cfg_dict(timm_name) if timm_name else {}
    if packaged is not None:  # the weights' own normalisation (search/model/weights.py)
        mean, std, native = packaged.mean, packaged.std, packaged.native_input_size
    elif not pretrained_cfg:  # custom_cnn (or a timm arch without a cfg): ImageNet defaults
        mean, std, native = _IMAGENET_MEAN, _IMAGENET_STD, 224
    else:
        import timm.data

        cfg = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg)
        mean = tuple(float(v) for v in cfg["mean"])
        std = tuple(float(v) for v in cfg["std"])
        native = int(cfg["input_size"][-1])
    if input_size is not None and (not isinstance(input_size, int) or input_size < 1):
        raise ValueError(f"input_size must be a positive int or None, got {input_size!r}")
    return {
        "mean": mean,
        "std": std,
        "input_size": native if input_size is None else input_size,
        "native_input_size": native,
    }


@register_model("custom_cnn", params=CUSTOM_CNN_PARAMS)
def _build_custom_cnn(
    *, pretrained: bool | str | os.PathLike[str], input_size: int, num_classes: int, **cfg: Any
) -> nn.Module:
    """Build :class:`CustomCNN`; it has no pretrained weights, so ``pretrained`` must be False."""
    if pretrained is not False and pretrained is not None:
        raise ValueError(
            "custom_cnn has no pretrained weights (it is trained from scratch); "
            f"set pretrained: false, got {pretrained!r}"
        )
    return CustomCNN(input_size=input_size, num_classes=num_classes, **cfg)


for _arch in STUDY_ARCHS[1:]:
    register_model(_arch, params=TIMM_PARAMS, timm_name=TIMM_ALIASES.get(_arch, _arch))(
        timm_builder(_arch)
    )



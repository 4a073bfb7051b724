"""Model registry and the one factory the search uses to build REAL-vs-DEEPFAKE classifiers.

Every model maps an image batch ``(B, 3, H, W)`` to ONE logit per image ``(B, 1)``; the
training loop uses BCE-with-logits and ``p_fake = sigmoid(logit)`` (DEEPFAKE = label 1).

Two kinds of builders live behind :func:`create_model`, in the style of timm's registry:

* ``custom_cnn``: the study's Keras-style CNN (Conv2D/MaxPooling2D blocks, Flatten, Dense,
  Dropout, output Dense), fully configurable from the search space.
* timm families (``resnet50``, ``resnext50_32x4d``, ``resnext101_32x8d``, ``xception`` and any
  other ``timm.list_models()`` name): a timm backbone without its classifier plus our own
  binary head, with optional stage freezing and offline pretrained weights from a local file.

Imports: timm is imported inside the functions that build timm models: the search space
reads the registry's layer settings (model_params) without loading timm.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.config import ModelConfig, did_you_mean, short_repr
from search.model.transforms import create_input_transform, with_input_transform
from search.model.weights import (
    PretrainedWeightsUnavailable,
    load_package_weights,
    package_weights,
)

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

#: Our study names whose timm name differs. ``xception`` is timm's ``legacy_xception``: the
#: original Keras-port Xception (Chollet 2017, 299 px, mean/std 0.5) that the study used.
_TIMM_ALIASES: dict[str, str] = {"xception": "legacy_xception"}

_WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")
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
        entry = _Entry(builder=_timm_builder(arch), params=TIMM_PARAMS, timm_name=arch)
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
    pretrained_cfg = _pretrained_cfg_dict(timm_name) if timm_name else {}
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


def _pretrained_cfg_dict(timm_name: str) -> dict[str, Any]:
    """timm's default pretrained cfg for ``timm_name`` as a dict ({} if timm has none)."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(timm_name)
    return cfg.to_dict() if cfg is not None else {}


# --------------------------------------------------------------------------- custom CNN


class CustomCNN(nn.Module):
    """The study's Keras-style CNN: ``[Conv(k, same) [BN] ReLU MaxPool2] x N -> Flatten ->
    Dense -> ReLU -> Dropout -> Dense(num_classes)``.

    Shapes are fixed by ``input_size`` (Flatten sizes the first Dense), so the graph has no
    data-dependent shapes and exports to ONNX as is.
    """

    def __init__(
        self,
        *,
        input_size: int = 224,
        num_classes: int = 1,
        conv_blocks: int = 3,
        base_width: int = 32,
        filters: tuple[int, ...] | list[int] | None = None,
        kernel_size: int = 3,
        dense_units: int = 128,
        dropout: float = 0.5,
        batch_norm: bool = True,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        widths = _resolve_filters(conv_blocks, base_width, filters)
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
        if not isinstance(dense_units, int) or dense_units < 0:
            raise ValueError(
                f"dense_units must be an int >= 0 (0 = no hidden Dense), got {dense_units!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        spatial = input_size // 2 ** len(widths)
        if spatial < 1:
            raise ValueError(
                f"input_size={input_size} is too small for {len(widths)} conv blocks: each block "
                f"halves the image, so it needs input_size >= {2 ** len(widths)}"
            )

        layers: list[nn.Module] = []
        in_ch = in_chans
        for width in widths:
            layers.append(nn.Conv2d(in_ch, width, kernel_size, padding="same", bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten(1)
        flat = in_ch * spatial * spatial
        if dense_units:
            self.classifier = nn.Sequential(
                nn.Linear(flat, dense_units),
                nn.ReLU(inplace=True),
                nn.Dropout(float(dropout)),
                nn.Linear(dense_units, num_classes),
            )
        else:
            self.classifier = nn.Sequential(
                nn.Dropout(float(dropout)), nn.Linear(flat, num_classes)
            )
        self.input_size = input_size
        self.filters = widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.classifier(self.flatten(self.features(x)))


def _resolve_filters(
    conv_blocks: int, base_width: int, filters: tuple[int, ...] | list[int] | None
) -> tuple[int, ...]:
    """Per-block widths: explicit ``filters`` (one block each; overrides ``conv_blocks`` and
    ``base_width``, which configs always carry as defaults) or ``base_width`` doubling."""
    if filters is not None:
        widths = tuple(int(f) for f in filters)
        if not widths or any(w < 1 for w in widths):
            raise ValueError(
                f"filters must be a non-empty sequence of positive ints, got {filters!r}"
            )
        return widths
    if not isinstance(conv_blocks, int) or isinstance(conv_blocks, bool) or conv_blocks < 1:
        raise ValueError(f"conv_blocks must be a positive int, got {conv_blocks!r}")
    if not isinstance(base_width, int) or isinstance(base_width, bool) or base_width < 1:
        raise ValueError(f"base_width must be a positive int, got {base_width!r}")
    return tuple(base_width * 2**i for i in range(conv_blocks))


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


# --------------------------------------------------------------------------- timm families


class TimmBinaryClassifier(nn.Module):
    """A timm backbone (``num_classes=0``, pooled features) followed by our own head."""

    def __init__(self, backbone: nn.Module, head: nn.Module, *, arch: str, timm_name: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.arch = arch
        self.timm_name = timm_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.backbone(x))


def _timm_builder(arch: str) -> Callable[..., nn.Module]:
    """The generic timm builder bound to ``arch`` (our name; aliases map to timm's)."""
    timm_name = _TIMM_ALIASES.get(arch, arch)

    def build(
        *,
        pretrained: bool | str | os.PathLike[str],
        input_size: int,
        num_classes: int,
        frozen_stages: int = 0,
        head_dropout: float = 0.0,
        head_hidden: int = 0,
    ) -> nn.Module:
        backbone = _create_backbone(arch, timm_name, pretrained=pretrained, input_size=input_size)
        _freeze_stages(backbone, frozen_stages, arch)
        head = _make_head(backbone.num_features, num_classes, head_dropout, head_hidden)
        return TimmBinaryClassifier(backbone, head, arch=arch, timm_name=timm_name)

    build.__doc__ = f"Build {arch!r} (timm {timm_name!r}) with a binary head."
    return build


for _arch in STUDY_ARCHS[1:]:
    register_model(_arch, params=TIMM_PARAMS, timm_name=_TIMM_ALIASES.get(_arch, _arch))(
        _timm_builder(_arch)
    )


def _make_head(num_features: int, num_classes: int, dropout: float, hidden: int) -> nn.Module:
    """``Dropout -> Linear`` or, with ``hidden > 0``, ``Linear -> ReLU -> Dropout -> Linear``."""
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"head_dropout must be in [0, 1), got {dropout!r}")
    if not isinstance(hidden, int) or hidden < 0:
        raise ValueError(f"head_hidden must be an int >= 0 (0 = linear head), got {hidden!r}")
    if hidden:
        return nn.Sequential(
            nn.Linear(num_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(float(dropout)),
            nn.Linear(hidden, num_classes),
        )
    return nn.Sequential(nn.Dropout(float(dropout)), nn.Linear(num_features, num_classes))


def _create_backbone(
    arch: str, timm_name: str, *, pretrained: bool | str | os.PathLike[str], input_size: int
) -> nn.Module:
    """``timm.create_model(timm_name, num_classes=0)`` with hub or local-file weights."""
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0}
    cfg = _pretrained_cfg_dict(timm_name)
    if cfg.get("fixed_input_size") and input_size != int(cfg["input_size"][-1]):
        kwargs["img_size"] = input_size  # e.g. ViTs: resize position embeddings to the input

    if pretrained is False or pretrained is None:
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    if pretrained is True and package_weights(timm_name) is not None:
        # Offline: the ImageNet weights an installed package ships, loaded strictly into
        # the full model (classifier included, so no tensor is left out), then headless.
        model = load_package_weights(timm.create_model(timm_name, pretrained=False), timm_name)
        model.reset_classifier(0)
        return model
    if pretrained is True:
        try:
            return timm.create_model(timm_name, pretrained=True, **kwargs)
        except OSError as err:  # URLError, timeouts, HF hub/offline errors are all OSErrors
            raise PretrainedWeightsUnavailable(_unavailable_message(arch, timm_name, err)) from err
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be a bool or a path, got {type(pretrained).__name__}")

    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file for {arch!r} not found: {str(path)!r} "
            "(pretrained: expects a .safetensors/.pth/.pt/.bin state_dict)"
        )
    if path.suffix.lower() not in _WEIGHT_SUFFIXES:
        raise ValueError(
            f"unsupported weights file {str(path)!r}: use one of {', '.join(_WEIGHT_SUFFIXES)}"
        )
    # timm loads the file itself (safetensors, or torch.load(weights_only=True)) and drops
    # the 1000-class classifier because num_classes=0 differs from the checkpoint's.
    try:
        model = timm.create_model(
            timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    except RuntimeError as err:  # shape mismatch, or a pickle weights_only refuses to load
        lines = str(err).splitlines()
        detail = "\n".join(lines[:4]) + ("\n\t..." if len(lines) > 4 else "")
        raise ValueError(
            f"cannot load weights file {str(path)!r} into {arch!r} (timm {timm_name!r}): {detail}"
        ) from err
    _check_coverage(model, path, arch)
    return model


def _unavailable_message(arch: str, timm_name: str, err: BaseException) -> str:
    """How to get past an unreachable hub: a local weights file in the experiment YAML."""

    return (
        f"pretrained weights for {arch!r} (timm {timm_name!r}) could not be downloaded: "
        f"{type(err).__name__}: {str(err).rstrip('.')}. Use a local file instead: set "
        f"`pretrained: /path/to/{arch}.safetensors` in the experiment YAML. Produce it on a "
        f"machine with network access with: import timm, safetensors.torch; "
        f"m = timm.create_model({timm_name!r}, pretrained=True); "
        f"safetensors.torch.save_file(m.state_dict(), '{arch}.safetensors')"
    )


def _file_keys(path: Path) -> set[str] | None:
    """Tensor names in a weights file without materialising it (None if not cheaply readable)."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            for nested in ("state_dict", "model"):
                if isinstance(sd, dict) and isinstance(sd.get(nested), dict):
                    sd = sd[nested]
            keys = set(sd) if isinstance(sd, dict) else set()
    except Exception:  # the check is best effort; timm already loaded the file
        return None
    return {k.removeprefix("module.") for k in keys}


def _check_coverage(model: nn.Module, path: Path, arch: str) -> None:
    """Fail loudly if the file shares no weights with the backbone; warn if some are missing.

    timm loads with ``strict=False`` (the classifier is dropped), which alone would let a file
    for another architecture silently leave the backbone at random init.
    """
    keys = _file_keys(path)
    if keys is None:
        return
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing = sorted(expected - keys)
    if missing and len(missing) == len(expected):
        raise ValueError(
            f"weights file {str(path)!r} contains none of the {arch!r} backbone's tensors; "
            "is it for another architecture?"
        )
    if missing:
        warnings.warn(
            f"weights file {str(path)!r} lacks {len(missing)} of {len(expected)} {arch!r} "
            f"backbone tensors (random init for those), e.g. {', '.join(missing[:5])}",
            stacklevel=3,
        )


def _stage_groups(backbone: nn.Module) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """timm's coarse groups as (module names, param names): 0 = stem, then one per stage."""
    from timm.models import group_modules, group_parameters

    matcher = backbone.group_matcher(coarse=True)  # type: ignore[operator]
    return dict(group_modules(backbone, matcher)), dict(group_parameters(backbone, matcher))


def _freeze_stages(backbone: nn.Module, frozen_stages: int, arch: str) -> None:
    """Freeze the stem and the first ``frozen_stages`` stages (-1: the whole backbone).

    Stages are timm's own coarse ``group_matcher`` groups (the ones timm uses for layer-wise
    LR decay), e.g. ``layer1..layer4`` for ResNe(X)t, ``block1..block12`` + exit flow for
    Xception. Freezing uses ``timm.utils.freeze``: ``requires_grad=False`` and BatchNorm turned
    into ``FrozenBatchNorm2d``, so frozen running stats never move either.
    """
    from timm.utils import freeze

    if not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool):
        raise ValueError(f"frozen_stages must be an int, got {frozen_stages!r}")
    if frozen_stages == 0:
        return
    if frozen_stages == -1:
        freeze(backbone)
        return
    if frozen_stages < -1:
        raise ValueError(f"frozen_stages must be -1, 0 or a positive int, got {frozen_stages}")
    if not callable(getattr(backbone, "group_matcher", None)):
        raise ValueError(
            f"{arch!r} exposes no timm group_matcher, so only frozen_stages 0 or -1 are supported"
        )
    modules, params = _stage_groups(backbone)
    n_stages = len(modules) - 1
    if frozen_stages > n_stages:
        raise ValueError(
            f"frozen_stages={frozen_stages} but {arch!r} has {n_stages} stages after the stem "
            f"(use 0..{n_stages}, or -1 for the whole backbone)"
        )
    groups = sorted(modules)[: frozen_stages + 1]
    module_names = [name for g in groups for name in modules[g]]
    freeze(backbone, module_names)
    frozen_params = {name for g in sorted(params)[: frozen_stages + 1] for name in params[g]}
    for name, param in backbone.named_parameters():  # params not owned by a leaf (e.g. pos_embed)
        if name in frozen_params:
            param.requires_grad_(False)

"""timm-backed classifiers: a timm backbone without its classifier, plus our binary head.

Any ``timm.list_models()`` name works; the study's (``resnet50``, ``resnext50_32x4d``,
``resnext101_32x8d``, ``xception``) are registered by :mod:`search.model.registry`. The
backbone's weights come from an installed package (:mod:`search.model.weights`, offline),
timm's hub, or a local file (:mod:`search.model.pretrained_file`); stages are frozen with
timm's own groups.

timm (and the torchvision and torch._dynamo it pulls in) costs ~1.4 s per process: it is
imported inside the functions that touch a timm model, so a custom-CNN trial never pays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.model.pretrained_file import WEIGHT_SUFFIXES, check_coverage, unavailable_message
from search.model.weights import (
    PretrainedWeightsUnavailable,
    load_package_weights,
    package_weights,
)

#: Our study names whose timm name differs. ``xception`` is timm's ``legacy_xception``: the
#: original Keras-port Xception (Chollet 2017, 299 px, mean/std 0.5) that the study used.
TIMM_ALIASES: dict[str, str] = {"xception": "legacy_xception"}


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


def timm_builder(arch: str) -> Callable[..., nn.Module]:
    """The generic timm builder bound to ``arch`` (our name; aliases map to timm's)."""
    timm_name = TIMM_ALIASES.get(arch, arch)

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


def pretrained_cfg_dict(timm_name: str) -> dict[str, Any]:
    """timm's default pretrained cfg for ``timm_name`` as a dict ({} if timm has none)."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(timm_name)
    return cfg.to_dict() if cfg is not None else {}


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
    cfg = pretrained_cfg_dict(timm_name)
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
            raise PretrainedWeightsUnavailable(unavailable_message(arch, timm_name, err)) from err
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be a bool or a path, got {type(pretrained).__name__}")

    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file for {arch!r} not found: {str(path)!r} "
            "(pretrained: expects a .safetensors/.pth/.pt/.bin state_dict)"
        )
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ValueError(
            f"unsupported weights file {str(path)!r}: use one of {', '.join(WEIGHT_SUFFIXES)}"
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
    check_coverage(model, path, arch)
    return model


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


__all__ = ["TIMM_ALIASES", "TimmBinaryClassifier", "pretrained_cfg_dict", "timm_builder"]

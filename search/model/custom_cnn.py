"""The study's own network: a Keras-style CNN, every layer setting from the search space.

``[Conv(k, same) [BN] ReLU MaxPool2] x N -> Flatten -> Dense -> ReLU -> Dropout ->
Dense(num_classes)``; registered as ``custom_cnn`` by :mod:`search.model.registry`, which
keeps the names and the layer settings it accepts. Needs torch only, never timm.
"""

from __future__ import annotations

import torch
from torch import nn


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


__all__ = ["CustomCNN"]

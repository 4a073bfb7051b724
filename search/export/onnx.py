"""The exported folder's ONNX twin and the reload check: both must give the trial's model.

``model.onnx`` is written, parity-checked against PyTorch and timed (that very file); the
folder's own ``config.json`` + weights must rebuild a model with the same outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from search.model.latency import onnx_latency
from search.model.onnx import ONNX_TOLERANCE, ExportError, export_onnx


def onnx_twin(model: Any, size: int, path: Path, *, verbose: bool,
          spec: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
    """Export ``model`` to ``path`` (parity-checked) and time that very file
    (:func:`search.model.latency.onnx_latency`): (max abs logit difference, latency)."""
    diff = export_onnx(model, size, path, metadata={"input": spec} if spec else None)
    latency = onnx_latency(path, size)
    if verbose:
        print(f"ONNX parity: max abs logit difference to PyTorch {diff:.3g} "
              f"(limit {ONNX_TOLERANCE:g}); latency {latency.describe()}")
    return diff, latency.to_dict()


def same_outputs(a: Any, b: Any, size: int) -> None:
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        diff = float((a(x) - b(x)).abs().max())
    if diff > 1e-6:
        raise ExportError(f"the exported folder rebuilds a different model (max diff {diff:.3g})")


__all__ = ["onnx_twin", "same_outputs"]

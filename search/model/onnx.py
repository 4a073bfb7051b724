"""ONNX export with its parity check: the graph a deployment gets, and the one a latency is
measured on (:mod:`search.model.latency`).

The graph takes ``image`` (NCHW float32, dynamic batch) and returns ``logit`` and
``p_fake``; it is kept only when onnxruntime reproduces PyTorch's logits to
:data:`ONNX_TOLERANCE` at several batch sizes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

ONNX_OPSET = 18
ONNX_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported model does not behave like the trained one (e.g. ONNX parity failed)."""


class WithProbabilities(torch.nn.Module):
    """A model wrapped so the ONNX graph has two outputs: the logit and p_fake."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.inner(image)
        return logit, torch.sigmoid(logit)


_ONNX_NAMES = {"input_names": ["image"], "output_names": ["logit", "p_fake"]}


def _torch_export(wrapped: Any, example: torch.Tensor, path: Path) -> None:
    """The torch.export-based ONNX exporter (dynamic batch): what a deployment gets."""
    torch.onnx.export(wrapped, (example,), str(path), **_ONNX_NAMES, opset_version=ONNX_OPSET,
                      dynamo=True, external_data=False, verbose=False,
                      dynamic_shapes={"image": {0: torch.export.Dim("batch")}})


def _torchscript_export(wrapped: Any, example: torch.Tensor, path: Path) -> None:
    """The TorchScript ONNX exporter (dynamic batch): the fallback, and the quick one."""
    torch.onnx.export(wrapped, (example,), str(path), **_ONNX_NAMES, opset_version=17,
                      dynamo=False, dynamic_axes={name: {0: "batch"} for name in
                                                  ("image", *_ONNX_NAMES["output_names"])})


def export_onnx(model: Any, input_size: int, path: Path, *, dynamo: bool = True,
                metadata: Mapping[str, Any] | None = None) -> float:
    """Write ``model`` as ONNX (dynamic batch, exported at batch 2 in eval mode) and return
    the max abs logit difference to PyTorch on random inputs; raises ExportError above 1e-4.

    The torch.export-based exporter first, the TorchScript one if it cannot trace.
    ``dynamo=False`` goes straight to the TorchScript exporter, 10-30x quicker than the
    torch.export one on a small model (0.2-0.4 s against 4-9 s for a tiny CNN here): what a
    trial's latency measurement uses, where the export is paid once per trial.

    ``metadata`` (e.g. the input size, mean and std the graph expects) is written into the
    graph's ``metadata_props`` as JSON values, so the file alone says how to feed it."""
    wrapped = WithProbabilities(model.eval()).eval()
    example = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    failed: list[Exception] = []
    for exporter in ((_torch_export,) if dynamo else ()) + (_torchscript_export,):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                exporter(wrapped, example, path)
            break
        except Exception as err:
            failed.append(err)
    else:
        raise ExportError("ONNX export failed: " + "; the TorchScript exporter too: ".join(
            map(str, failed))) from failed[-1]
    if metadata:
        _write_metadata(path, metadata)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch in (2, 5, 1):  # other batch sizes than the traced one prove the dynamic axis
        x = torch.randn(batch, 3, input_size, input_size, generator=gen)
        with torch.inference_mode():
            ref = model(x).float().numpy()
        got = session.run(["logit"], {"image": x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} at batch {batch}")
        worst = max(worst, float(np.max(np.abs(got - ref))))
    if not math.isfinite(worst) or worst > ONNX_TOLERANCE:
        raise ExportError(f"ONNX and PyTorch disagree: max abs logit difference {worst:.3g} > "
                          f"{ONNX_TOLERANCE:g}; the ONNX model was not kept")
    return worst


def _write_metadata(path: Path, metadata: Mapping[str, Any]) -> None:
    """Set ``metadata_props`` of the ONNX file at ``path`` (values as JSON)."""
    import onnx

    graph = onnx.load(str(path))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(graph, str(path))


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX file, JSON values decoded (what :func:`export_onnx`
    wrote)."""
    import onnx

    props = onnx.load(str(path), load_external_data=False).metadata_props
    return {p.key: json.loads(p.value) for p in props}


__all__ = ["ONNX_OPSET", "ONNX_TOLERANCE", "ExportError", "WithProbabilities", "export_onnx", "read_metadata"]

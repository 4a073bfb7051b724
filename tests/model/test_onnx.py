"""search.model.onnx: a graph that disagrees with PyTorch is refused, never kept (the export
of a whole folder, parity included, is checked in tests/export/test_export.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.model.onnx import ExportError, export_onnx


def test_onnx_parity_failure_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.model import onnx
    from search.model.registry import create_model

    monkeypatch.setattr(onnx, "ONNX_TOLERANCE", -1.0)  # any difference is now too much
    model = create_model("custom_cnn", input_size=16, conv_blocks=1, base_width=4, dense_units=0)
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(model, 16, tmp_path / "m.onnx")

"""The lightweight side loads no torch and no Ray: each module in a fresh interpreter.

Tables, the report, the formatting helpers and ``predict --backend onnx`` run after a search,
often on a laptop without the training stack; an import of torch or Ray there costs seconds
and gigabytes. (The report command itself is checked end to end in
``tests/report/test_page.py``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HEAVY = ("torch", "ray")
LIGHT = ("search", "search.display", "search.filenames", "search.storage", "search.tune.tables",
         "search.leaderboard",
         "search.report", "search.report.page",  # page imports every other module of the report
         "search.predict", "search.cli")


def loaded(module: str, then: str = "") -> list[str]:
    """The heavy top-level packages that importing ``module`` (and running ``then``) loads,
    in a fresh interpreter."""
    code = (f"import json, sys, {module}\n{then}\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", LIGHT)
def test_loads_neither_torch_nor_ray(module: str) -> None:
    assert loaded(module) == []


def test_onnx_predict_loads_neither_torch_nor_ray(exported: Path, tmp_path: Path) -> None:
    """Scoring with ``--backend onnx`` needs onnxruntime, never torch or Ray."""
    image = tmp_path / "face.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(image)
    call = (f"rows = search.predict.predict_paths({str(exported)!r}, [{str(image)!r}], "
            "backend='onnx')\nassert rows['error'].isna().all(), rows")
    assert loaded("search.predict", call) == []


def test_train_command_loads_no_search_machinery() -> None:
    """``deepfake-search train`` (driver, demo shards, storage) loads neither Optuna nor the
    search package's Tune side."""
    code = ("import json, sys, search.cli, search.data.demo, search.storage, search.train.driver\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'optuna' "
            "or m.startswith('search.tune'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_check_sees_torch() -> None:
    """The probe itself works: a module that does import torch is caught."""
    assert "torch" in loaded("search.model.registry")

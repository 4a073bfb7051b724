"""deepfake-search: distributed hyperparameter search for REAL-vs-DEEPFAKE image classifiers.

The library API behind the ``deepfake-search`` command, one entry point per step::

    from search import load_config, prepare, PrepareOptions, run_search, export_model

Names are imported on first use, so ``import search`` stays cheap (no torch, no Ray).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ExperimentConfig": "search.config",
    "DataConfig": "search.config",
    "ModelConfig": "search.config",
    "OptimConfig": "search.config",
    "ClusterConfig": "search.config",
    "SearchConfig": "search.config",
    "ConfigError": "search.config",
    "load_config": "search.config",
    "PrepareOptions": "search.data.prepare",
    "prepare": "search.data.prepare",
    "create_model": "search.train.models",
    "list_models": "search.train.models",
    "train_one": "search.train.driver",
    "run_search": "search.tune.tuner",
    "evaluate_checkpoint": "search.evaluate",
    "export_model": "search.export",
    "predict_paths": "search.predict",
    "write_report": "search.report",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

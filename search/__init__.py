"""deepfake-search: distributed hyperparameter search for REAL-vs-DEEPFAKE image classifiers.

The library API behind the ``deepfake-search`` command, one entry point per step::

    from search import load_config, prepare, PrepareOptions, run_search, export_model

Names are imported on first use, so ``import search`` stays cheap (no torch, no Ray).
"""

from search._lazy import lazy_exports

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
    "create_model": "search.model.registry",
    "list_models": "search.model.registry",
    "train_one": "search.train.driver",
    "run_search": "search.study",
    "evaluate_checkpoint": "search.evaluate",
    "export_model": "search.export",
    "predict_paths": "search.predict",
    "write_report": "search.report",
}

__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

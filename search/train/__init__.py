"""Training one configuration: the model registry, pure detector metrics, the per-worker loop
and the driver that builds a ``TorchTrainer``."""

from search._lazy import lazy_exports

_EXPORTS = {
    "create_model": "search.train.models",
    "list_models": "search.train.models",
    "model_params": "search.train.models",
    "UnknownModelError": "search.train.models",
    "PretrainedWeightsUnavailable": "search.train.models",
    "detector_metrics": "search.train.metrics",
    "train_loop": "search.train.worker",
    "build_trainer": "search.train.driver",
    "train_one": "search.train.driver",
    "run_trial": "search.train.driver",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

"""Training one configuration: the model registry, pure detector metrics, the per-worker loop
and the driver that builds a ``TorchTrainer``."""

from search._lazy import lazy_exports

_EXPORTS = {
    "create_model": "search.model.registry",
    "list_models": "search.model.registry",
    "model_params": "search.model.registry",
    "UnknownModelError": "search.model.registry",
    "PretrainedWeightsUnavailable": "search.model.registry",
    "detector_metrics": "search.train.metrics",
    "train_loop": "search.train.worker",
    "build_trainer": "search.train.driver",
    "train_one": "search.train.driver",
    "run_trial": "search.train.driver",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

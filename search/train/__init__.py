"""Training one configuration: pure detector metrics, the per-worker loop and the driver that
builds a ``TorchTrainer``. The architectures (``create_model``) are the model layer's:
import them from :mod:`search.model.registry`, their one home."""

from search._lazy import lazy_exports

_EXPORTS = {
    "detector_metrics": "search.train.metrics",
    "train_loop": "search.train.worker",
    "build_trainer": "search.train.driver",
    "train_one": "search.train.driver",
    "run_trial": "search.train.driver",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

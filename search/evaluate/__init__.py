"""After the search: a trained model scored on prepared sets.

- :mod:`~search.evaluate.scoring`: one model on one split (metrics, predictions, robustness
  under perturbations), a checkpoint or any model folder;
- :mod:`~search.evaluate.cross`: the trained-on x tested-on matrix over several sets;
- :mod:`~search.evaluate.matrix`: that matrix as tables (pandas only: the report shows it);
- :mod:`~search.evaluate.finalists`: the stage a search runs at its end (each finalist's test
  split once, its robustness, the cross-source matrix, its latency).

It sits above the search (:mod:`search.tune` never imports it) and below the commands and
the report.
"""

from search._lazy import lazy_exports

_EXPORTS = {
    **{name: "search.evaluate.scoring" for name in (
        "CLEAN", "LOCAL_CPUS", "OPERATING_LABELS", "PERTURBATIONS", "evaluate_checkpoint",
        "evaluate_finalist", "evaluate_model", "evaluate_remote", "evaluate_robustness",
        "finalist_remote", "format_metrics", "perturbed_predictions", "predict_shards",
        "robustness_summary")},
    **{name: "search.evaluate.cross" for name in (
        "cross_dataset", "cross_dataset_markdown", "find_results_dir")},
    **{name: "search.evaluate.finalists" for name in (
        "evaluate_finalists", "finalist_latency", "source_matrix", "write_source_matrix")},
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

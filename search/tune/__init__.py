"""The search: the define-by-run space, the Tuner (Tune + Optuna + ASHA) and its tables."""

from search._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_SPACE": "search.tune.space",
    "build_space": "search.tune.space",
    "check_points": "search.tune.space",
    "sample": "search.tune.space",
    "build_tuner": "search.tune.tuner",
    "search": "search.tune.tuner",
    "write_tables": "search.tune.tuner",
    "collect": "search.tune.tables",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

"""Data: source layouts, the embedded demo set, image decoding, ``prepare`` (source -> Parquet
shards + manifest) and the Ray Data streams that feed training.

``prepare`` itself is ``search.prepare`` (here the name is the module ``search.data.prepare``).
"""

from search._lazy import lazy_exports

_EXPORTS = {
    "SourceError": "search.data.layouts",
    "scan_source": "search.data.layouts",
    "PrepareOptions": "search.data.prepare",
    "PrepareResult": "search.data.prepare",
    "load_manifest": "search.data.manifest",
    "manifest_hash": "search.data.manifest",
    "write_demo_source": "search.data.demo_painter",
    "train_dataset": "search.data.stream",
    "eval_dataset": "search.data.stream",
    "keep_probabilities": "search.data.stream",
    "Normalize": "search.data.stream",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

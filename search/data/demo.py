"""The embedded demo set as a prepare step: painted (:mod:`search.data.demo_painter`), then
prepared into shards like any downloaded source, once, where the project keeps its data.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from search.data.demo_painter import DEMO_SIZE, GRIDS
from search.data.manifest import load_manifest
from search.data.prepare import PrepareOptions, prepare
from search.filenames import MANIFEST
from search.paths import default_shards_dir

if TYPE_CHECKING:
    from search.config import ExperimentConfig

__all__ = ["DEMO_SIZE", "GRIDS", "ensure_demo_shards"]


def ensure_demo_shards(cfg: ExperimentConfig, *, size: int = DEMO_SIZE) -> ExperimentConfig:
    """With no shards configured, prepare the embedded demo set once and use it.

    A demo set prepared earlier at another image size (``prepare --layout demo --size N``)
    is made again at ``size``: the folder is the project's own, and the embedded run's
    timing depends on it.
    """
    if cfg.data.shards:
        return cfg
    out = default_shards_dir("demo")
    current = (out / MANIFEST).is_file() and load_manifest(out).get("image_size") == size
    if not current:
        print(f"preparing the embedded demo set ({size} px) into {out} ...", flush=True)
        print(prepare(PrepareOptions(layout="demo", size=size), progress=False).summary(), flush=True)
    return replace(cfg, data=replace(cfg.data, shards=str(out)))


"""Shared fixtures: the real data beside the repo, small prepared shard sets, a Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEEPFAKE_FACES = SHARED / "deepfake_faces"
FRAMES = SHARED / "ffpp_celebdf_frames"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data {path} is missing: the tests read ../shared/data beside the repo")
    return path


@pytest.fixture(scope="session")
def deepfake_faces() -> Path:
    return _need(DEEPFAKE_FACES)


@pytest.fixture(scope="session")
def frames() -> Path:
    return _need(FRAMES)


@pytest.fixture(scope="session")
def dff_shards(tmp_path_factory: pytest.TempPathFactory, deepfake_faces: Path) -> Path:
    """A few hundred real deepfake_faces images at 32 px (for training tests)."""
    from search.data.prepare import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("dff_shards")
    prepare(PrepareOptions(layout="deepfake_faces", source=str(deepfake_faces), out=str(out),
                           size=32, limit=450, seed=0), progress=False)
    return out


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded demo set, small, at 32 px."""
    from search.data.prepare import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("demo")
    prepare(PrepareOptions(layout="demo", source=str(root / "source"), out=str(root / "shards"),
                           size=32, demo_images=600, seed=0), progress=False)
    return root / "shards"


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster (4 logical CPUs over the 2 cores), with its dashboard:
    ray[default]'s State API is what frees placement groups of stopped trials."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, include_dashboard=True, log_to_driver=False,
             logging_level="WARNING")
    yield ray
    ray.shutdown()

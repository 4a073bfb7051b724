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


CLUSTER_CPUS = 5  # logical CPUs over the 2 cores: two tiny trials at once (2 CPUs each)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster shared by the session, without its dashboard: nothing the
    search frees may depend on the dashboard or the State API."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    from search.config import ExperimentConfig
    from search.train.driver import train_env

    # The same job environment as init_ray gives a real run (Train's poll interval).
    # address="local": always a new cluster of the tests' own, never one that happens to run
    # on this machine (a user's search, another test run).
    ray.init(address="local", num_cpus=CLUSTER_CPUS, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", runtime_env={"env_vars": train_env(ExperimentConfig())})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory: pytest.TempPathFactory, demo_shards: Path, ray_cluster) -> Path:
    """A finished tiny search (4 trials, 2 epochs, ASHA, two architectures) on the demo set,
    run through the command line as a user would (``run ... --export``), so the end of
    ``run`` (leaderboard, report, export) is covered by every test that uses it."""
    from search.cli import main as cli

    storage = tmp_path_factory.mktemp("results")
    # Seeded with two sound configurations and a hopeless one (lr 1e-7), so that ASHA has
    # something to stop at its first rung whatever the sampler draws next.
    seeds = ('search.points_to_evaluate=[{arch: custom_cnn, lr: 0.003}, '
             '{arch: resnet10t, lr: 0.003}, {arch: custom_cnn, lr: 1.0e-7}]')
    example = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"
    assert cli(["run", "--config", str(example), f"data.shards={demo_shards}",
                f"cluster.storage_path={storage}", seeds, "--export"]) == 0
    experiment = storage / "tiny"
    assert (experiment / "report" / "report.html").is_file()
    assert (experiment / "export" / "model.safetensors").is_file()
    return experiment

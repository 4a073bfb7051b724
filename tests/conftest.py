"""Shared fixtures: the real data beside the repo, small prepared shard sets, a Ray cluster,
a results folder with real weights written without training (``model_results``) and its
export (``exported``), and a finished tiny search (``tiny_search``: only for what a real
search is needed to show)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEEPFAKE_FACES = SHARED / "deepfake_faces"
FRAMES = SHARED / "ffpp_celebdf_frames"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray starts its workers at nice 15 (its ``worker_niceness``) so that its raylet and GCS stay
# responsive. Beside other work in the same scheduling group (a CI script that runs other
# jobs, busy loops started with the suite) every trial then yields almost all of the CPU to
# it: with two busy loops beside the suite, a two-node test's epochs went from 8 s to 77 s
# and each test's bound measured the neighbours rather than the search (issue 21). The
# suite's clusters, and every driver, `ray start` and SSH head its tests start (they inherit
# this environment), run their workers at the tests' own priority.
os.environ.setdefault("RAY_worker_niceness", "0")
# A suite started as a background job of a script (``nohup pytest &``) inherits SIGINT ignored,
# and so would every process its tests start: the tests that send a Ctrl-C would then test
# nothing (seen in issue 21's loaded run). They run as from a terminal; the ignored case has
# tests of its own (a SIGTERM must still stop a command started that way).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# ------------------------------------------------------------------ the quick lane
#: Fixtures that start Ray (``ray_cluster``) or need it: a test whose fixtures reach any of
#: them, directly or through another fixture (``tiny_search``, a module's own search), is
#: marked ``ray``. Tests that start Ray otherwise (a ``run`` in a subprocess, ``ray start``)
#: carry the mark themselves; ``_unmarked_tests_start_no_ray`` catches those that forget.
RAY_FIXTURES = frozenset({"ray_cluster"})
RAY_MARK_HINT = "this test starts Ray: mark it @pytest.mark.ray"


@pytest.hookimpl(tryfirst=True)  # before ``-m "not ray"`` deselects by the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(autouse=True)
def _unmarked_tests_start_no_ray(request: pytest.FixtureRequest,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick lane (``-m "not ray"``) polices itself: a test not marked ``ray`` that calls
    ``ray.init`` (itself, through ``search.cluster.connect`` or Ray's auto-init) fails.
    Marked tests, and the session fixtures only they request, start Ray as they like."""
    if request.node.get_closest_marker("ray") is not None:
        return
    import ray
    import ray._private.worker

    def refuse(*_args, **_kwargs):
        pytest.fail(RAY_MARK_HINT, pytrace=False)

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray._private.worker, "init", refuse)


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
    example = EXAMPLES / "tiny.yaml"
    assert cli(["run", "--config", str(example), f"data.shards={demo_shards}",
                f"cluster.storage_path={storage}", seeds, "--export"]) == 0
    experiment = storage / "tiny"
    assert (experiment / "report" / "report.html").is_file()
    assert (experiment / "export" / "model.safetensors").is_file()
    return experiment


# ------------------------------------------------------------------ a results folder, no training
def _epochs(skill: float, seed: int) -> tuple[list[dict], dict, tuple]:
    """Two epochs of validation metrics of a detector of ``skill``, its test metrics at the
    last epoch's threshold, and the (labels, p_fake) of both splits."""
    import numpy as np

    from search.train.metrics import detector_metrics

    rng = np.random.default_rng(seed)
    y = np.array([0] * 40 + [1] * 80)

    def scores(strength: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 1, len(y)))))

    epochs, val = [], None
    for epoch in (1, 2):
        val = scores(skill * epoch / 2)
        metrics = {f"val_{k}": v for k, v in detector_metrics(y, val).items()}
        epochs.append({"epoch": epoch, "train_loss": 1 / epoch, "time_total_s": float(epoch),
                       **metrics})
    test = scores(skill)
    return epochs, detector_metrics(y, test, threshold=epochs[-1]["val_threshold"]), (y, val, test)


def _trial(results: Path, base, tid: str, params: dict, skill: float, seed: int):
    """One trial's folder (two checkpoints: custom_cnn weights, config.json, a pickled optimiser
    state, predictions) written by the training loop's own writer; returns a Tune-like
    result for ``tables.collect`` and the test metrics."""
    import pandas as pd
    import torch

    from search import filenames
    from search.model.checkpoint import build_model, save_checkpoint

    cfg = base.with_params(params)
    torch.manual_seed(seed)
    model = build_model(cfg, pretrained=False)
    epochs, test, (y, val_p, test_p) = _epochs(skill, seed)
    for metrics in epochs:
        ckpt = results / filenames.trial_dirname(tid) / f"checkpoint_{metrics['epoch'] - 1:06d}"
        ckpt.mkdir(parents=True)
        save_checkpoint(ckpt, model, cfg, {"epoch": metrics["epoch"], "metrics": metrics})
        torch.save({"epoch": metrics["epoch"], "optimizer": {"lr": params["lr"]}},
                   ckpt / filenames.STATE)
        for name, p in ((filenames.VAL_PREDICTIONS, val_p), (filenames.TEST_PREDICTIONS, test_p)):
            pd.DataFrame({"id": range(len(y)), "label": y, "p_fake": p}).to_csv(ckpt / name,
                                                                               index=False)
    # Tune's last result: the last epoch's report, the one the scheduler decided on.
    result = SimpleNamespace(config=params, metrics={"trial_id": tid, "epoch": epochs[-1]["epoch"]},
                             error=None,
                             metrics_dataframe=pd.DataFrame(epochs),
                             path=str(results / filenames.trial_dirname(tid)))
    return result, test


def write_model_results(root: Path, shards: Path) -> Path:
    """The files a finished search leaves (experiment, space, trials and history tables, test
    metrics) around three custom_cnn trials with real, untrained weights: what export,
    predict and evaluate read, written in seconds. The tables come from ``tables.collect``."""
    from search import filenames
    from search.config import load_config
    from search.tune import tables

    base = load_config(EXAMPLES / "tiny.yaml", [f"data.shards={shards}", "search.name=cheap",
                                                f"cluster.storage_path={root}"])
    results = root / "cheap"
    results.mkdir(parents=True)
    (results / filenames.EXPERIMENT).write_text(json.dumps(base.to_dict(), indent=1))
    layers = {"arch": "custom_cnn", "ratio": "1:2", "conv_blocks": 2, "base_width": 8,
              "dense_units": 32}
    made = [_trial(results, base, tid, {**layers, "lr": lr}, skill, seed)
            for seed, (tid, lr, skill) in enumerate((("a1", 3e-3, 2.0), ("b2", 1e-3, 1.0),
                                                     ("c3", 1e-4, 0.5)))]
    trials, history = tables.collect([r for r, _ in made], experiment_dir=results,
                                     metric="val_auc", mode="max", max_epochs=2,
                                     param_names=[*layers, "lr"])
    trials.to_parquet(results / filenames.TRIALS_PARQUET, index=False)
    trials.to_csv(results / filenames.TRIALS_CSV, index=False)
    history.to_parquet(results / filenames.HISTORY, index=False)
    finalists = set(tables.finalists(trials, "val_auc")["trial_id"])
    test = {r.metrics["trial_id"]: m for r, m in made if r.metrics["trial_id"] in finalists}
    (results / filenames.TEST_METRICS).write_text(json.dumps(test, indent=1))
    return results


@pytest.fixture(scope="session")
def model_results(tmp_path_factory: pytest.TempPathFactory, demo_shards: Path) -> Path:
    """A results folder whose trials trained on ``demo_shards`` (see ``write_model_results``)."""
    return write_model_results(tmp_path_factory.mktemp("model_results"), demo_shards)


@pytest.fixture(scope="session")
def exported(model_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model_results``' best trial exported once per session, outside its results folder
    (as ``export --out`` puts it)."""
    from search.export import export_model

    return export_model(model_results, out=tmp_path_factory.mktemp("exported") / "model",
                        verbose=False)

"""Retention by rank (issue 29): weights only for trials that can still be a finalist.

The unit tests drive :class:`~search.tune.retention.WeightRetention` with stand-in trials
over real checkpoint folders; the search test runs a real 6-trial search with
``cluster.keep_weights=2`` and checks what the finalists' stage and ``export`` make of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from search.filenames import CONFIG, RELEASED, STATE, VAL_PREDICTIONS, WEIGHTS, trial_dirname
from search.tune.retention import WeightRetention


def _checkpoint(root: Path, tid: str, index: int, value: float) -> Path:
    folder = root / trial_dirname(tid) / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True)
    (folder / CONFIG).write_text(json.dumps({"epoch": index + 1,
                                             "metrics": {"val_auc": value}}))
    for name in (WEIGHTS, STATE, VAL_PREDICTIONS):
        (folder / name).write_bytes(b"x" * 100)
    return folder


def _trial(tid: str, arch: str = "custom_cnn", status: str = "RUNNING") -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"arch": arch}, status=status,
                           metric_analysis={})


def _epoch(cb: WeightRetention, root: Path, trial: SimpleNamespace, trials: list, index: int,
           value: float) -> None:
    """What a trial's epoch looks like to the driver: a checkpoint, then its result."""
    _checkpoint(root, trial.trial_id, index, value)
    trial.metric_analysis = {"val_auc": {"max": max(
        value, trial.metric_analysis.get("val_auc", {}).get("max", value))}}
    cb.on_trial_result(0, trials, trial, {"val_auc": value})


def _end(cb: WeightRetention, trials: list, trial: SimpleNamespace) -> None:
    trial.status = "TERMINATED"
    cb.on_trial_complete(0, trials, trial)


def _with_weights(root: Path) -> dict[str, list[str]]:
    return {d.name: sorted(c.name for c in d.glob("checkpoint_*") if (c / WEIGHTS).is_file())
            for d in sorted(root.glob("trial_*"))}


def test_only_the_best_k_keep_weights_and_the_running_keep_their_latest(tmp_path: Path) -> None:
    cb = WeightRetention(str(tmp_path), "val_auc", "max", keep=2)
    trials = [_trial(t) for t in "abcd"]
    a, b, c, d = trials
    for i, v in enumerate((0.7, 0.9, 0.8)):  # a: best epoch 1 (checkpoint_000001)
        _epoch(cb, tmp_path, a, trials, i, v)
    _end(cb, trials, a)
    # a ended among the best two: only its best checkpoint keeps weights, no optimiser state
    assert _with_weights(tmp_path)["trial_a"] == ["checkpoint_000001"]
    assert not list(tmp_path.glob("trial_a/*/" + STATE))
    _epoch(cb, tmp_path, b, trials, 0, 0.6)
    _epoch(cb, tmp_path, b, trials, 1, 0.65)
    _end(cb, trials, b)
    _epoch(cb, tmp_path, c, trials, 0, 0.95)  # running, best so far: pushes b out
    kept = _with_weights(tmp_path)
    assert kept["trial_b"] == [] and kept["trial_c"] == ["checkpoint_000000"]
    _epoch(cb, tmp_path, d, trials, 0, 0.1)  # running, last: only its latest is kept
    _epoch(cb, tmp_path, d, trials, 1, 0.2)
    assert _with_weights(tmp_path)["trial_d"] == ["checkpoint_000001"]
    assert (tmp_path / "trial_d/checkpoint_000001" / STATE).is_file()  # it may resume
    _end(cb, trials, d)
    _end(cb, trials, c)
    kept = _with_weights(tmp_path)
    assert {t for t, folders in kept.items() if folders} == {"trial_a", "trial_c"}
    # what stays of a released trial: its metrics, predictions, and a note naming the fix
    released = tmp_path / "trial_b/checkpoint_000001"
    assert (released / CONFIG).is_file() and (released / VAL_PREDICTIONS).is_file()
    assert "cluster.keep_weights: all" in (released / RELEASED).read_text()


def test_top_k_is_per_architecture_and_rebuilt_after_a_resume(tmp_path: Path) -> None:
    trials = [_trial("a", "custom_cnn"), _trial("b", "resnet10t"), _trial("c", "custom_cnn")]
    cb = WeightRetention(str(tmp_path), "val_auc", "max", keep=1)
    _epoch(cb, tmp_path, trials[0], trials, 0, 0.9)
    _epoch(cb, tmp_path, trials[1], trials, 0, 0.5)  # worse, but the best of its architecture
    _end(cb, trials, trials[0])
    _end(cb, trials, trials[1])
    # a driver restored by --resume: the callback as it was built (pickled), state rebuilt
    import pickle

    again = pickle.loads(pickle.dumps(cb))
    assert again.best == {}
    _epoch(again, tmp_path, trials[2], trials, 0, 0.95)
    _end(again, trials, trials[2])
    kept = _with_weights(tmp_path)
    assert kept == {"trial_a": [], "trial_b": ["checkpoint_000000"],
                    "trial_c": ["checkpoint_000000"]}


def test_export_of_a_released_trial_names_it_and_the_setting(model_results: Path,
                                                             tmp_path: Path) -> None:
    import shutil

    from search.export import choose_trial
    from search.model.checkpoint import released_note

    results = tmp_path / "results"
    shutil.copytree(model_results, results)
    row, checkpoint, _, _ = choose_trial(results)
    (checkpoint / WEIGHTS).unlink()
    (checkpoint / RELEASED).write_bytes(released_note([WEIGHTS], "not among the best 1"))
    with pytest.raises(ValueError) as err:
        choose_trial(results, trial_id=row["trial_id"])
    assert f"trial {row['trial_id']}" in str(err.value)
    assert "cluster.keep_weights: all" in str(err.value)


@pytest.mark.ray
def test_a_search_keeps_the_best_two_trials_weights(demo_shards: Path, ray_cluster,
                                                    tmp_path: Path) -> None:
    """6 trials, ``keep_weights=2``, one architecture: 2 trials keep weights, the finalists'
    stage and export use them, export of a released trial is the clear error."""
    import pandas as pd
    import yaml

    from search.cli import main as cli
    from search.export import choose_trial

    tiny = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples/tiny.yaml").read_text())
    tiny["search"].update({"name": "keep", "num_samples": 6, "grace_period": 1})
    tiny["search"]["space"]["arch"] = "custom_cnn"
    tiny["cluster"].update({"storage_path": str(tmp_path), "keep_weights": 2})
    tiny["data"] = {"shards": str(demo_shards)}
    config = tmp_path / "keep.yaml"
    config.write_text(yaml.safe_dump(tiny))
    assert cli(["run", "--config", str(config)]) == 0
    results = tmp_path / "keep"
    with_weights = {p.parent.parent.name for p in results.glob(f"trial_*/checkpoint_*/{WEIGHTS}")}
    assert len(with_weights) == 2
    assert not list(results.glob(f"trial_*/checkpoint_*/{STATE}"))  # no trial runs any more
    trials = pd.read_parquet(results / "trials.parquet")  # best first
    assert with_weights == {trial_dirname(t) for t in trials["trial_id"][:2]}
    assert str(trials["trial_id"][0]) in json.loads((results / "test_metrics.json").read_text())
    assert cli(["export", str(results), "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / WEIGHTS).is_file()
    released = str(trials["trial_id"].iloc[-1])
    with pytest.raises(ValueError, match=f"trial {released}'s weights were released"):
        choose_trial(results, trial_id=released)


def test_a_restored_trial_resumes_from_the_newest_checkpoint_that_kept_its_state(
        tmp_path: Path) -> None:
    """Tune's saved state can name a checkpoint retention released because a newer one had
    come in before the driver died: the trial resumes from that newer one; a trial whose
    every checkpoint was released had ended (None: it reports its last epoch and ends)."""
    from search.model.checkpoint import released_note, resumable

    old, new = (_checkpoint(tmp_path, "t", i, 0.5) for i in (0, 1))
    assert resumable(old) == old  # nothing released: as Tune says
    for name in (WEIGHTS, STATE):
        (old / name).unlink()
    (old / RELEASED).write_bytes(released_note([WEIGHTS, STATE], "a newer checkpoint"))
    assert resumable(old) == new
    (new / STATE).unlink()
    assert resumable(old) is None

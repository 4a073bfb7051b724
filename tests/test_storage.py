"""Storage behind a URI: the helpers, then a real search whose storage_path is a URI.

``file://`` is a real pyarrow filesystem URI, handled by the same code path as ``s3://`` or
``gs://`` (Tune, Train and this project's mirror/upload), without needing a bucket in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from search import storage


def test_join_and_is_uri(tmp_path: Path) -> None:
    assert storage.is_uri("s3://bucket/runs") and not storage.is_uri(tmp_path)
    assert storage.join("s3://bucket/runs/", "exp", "a.txt") == "s3://bucket/runs/exp/a.txt"
    assert storage.join(str(tmp_path), "exp") == str(tmp_path / "exp")


def test_experiment_locations(tmp_path: Path, monkeypatch) -> None:
    """Local storage is written in place; a URI's tables go to a local mirror under results/."""
    from search.config import load_config

    monkeypatch.setenv("DEEPFAKE_SEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    default = load_config(None, ["search.name=exp"])
    assert storage.storage_root(default) == str((tmp_path / "home" / "results").resolve())
    relative = load_config(None, ["search.name=exp", "cluster.storage_path=runs"])
    assert storage.experiment_dir(relative) == str(tmp_path.resolve() / "runs" / "exp")
    assert storage.local_experiment_dir(relative) == tmp_path.resolve() / "runs" / "exp"
    remote = load_config(None, ["search.name=exp", "cluster.storage_path=s3://bucket/runs"])
    assert storage.experiment_dir(remote) == "s3://bucket/runs/exp"
    assert storage.local_experiment_dir(remote) == tmp_path / "home" / "results" / "exp"


def test_upload_download_and_metadata_mirror(tmp_path: Path) -> None:
    local = tmp_path / "local"
    ckpt = local / "_train" / "trial_a" / "checkpoint_1"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"metrics": {"val_auc": 0.9}}))
    (ckpt / "model.safetensors").write_bytes(b"weights")
    (local / "trials.csv").write_text("trial_id\na\n")
    remote = f"file://{tmp_path / 'remote'}"
    assert sorted(storage.upload(local, remote)) == ["_train", "trials.csv"]
    assert storage.exists(storage.join(remote, "trials.csv"))
    assert storage.read_text(storage.join(remote, "trials.csv")) == "trial_id\na\n"
    assert not storage.exists(storage.join(remote, "nothing.here"))

    mirror = tmp_path / "mirror"
    assert storage.mirror_checkpoint_metadata(remote, mirror, "_train") == 1
    copied = mirror / "_train" / "trial_a" / "checkpoint_1"
    assert (copied / "config.json").is_file() and not (copied / "model.safetensors").exists()
    storage.fetch_checkpoint(remote, mirror, copied)
    assert (copied / "model.safetensors").read_bytes() == b"weights"


def test_search_with_uri_storage(tmp_path: Path, demo_shards: Path, ray_cluster,
                                 monkeypatch) -> None:
    """Tune and Train write to the URI; tables, study and test predictions land there too."""
    from search.config import load_config
    from search.study import run_search

    remote_root = tmp_path / "bucket"
    example = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"
    cfg = load_config(example, [f"data.shards={demo_shards}",
                                f"cluster.storage_path=file://{remote_root}", "search.name=uri",
                                "search.num_samples=2", "search.scheduler=none", "optim.epochs=1"])
    mirror = tmp_path / "mirror"
    monkeypatch.setenv("DEEPFAKE_SEARCH_HOME", str(mirror))  # where the local mirror goes
    outcome = run_search(cfg)
    remote = remote_root / "uri"
    assert outcome.remote == f"file://{remote}"
    assert outcome.experiment_dir == mirror / "results" / "uri"
    for name in ("trials.parquet", "trials.csv", "history.parquet", "leaderboard.md",
                 "experiment.json", "test_metrics.json"):
        assert (remote / name).is_file(), name
    from search.tune.study_store import PARTS  # the Optuna journal, uploaded as appends
    assert any((remote / PARTS).iterdir())
    trials = pd.read_parquet(remote / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    # Checkpoints live in the URI; the finalists' are mirrored whole for test and export.
    assert list(remote.glob("trial_*/checkpoint_*/model.safetensors"))
    for path in trials["checkpoint"]:  # recorded relative to the results folder
        assert not Path(path).is_absolute()
        assert (outcome.experiment_dir / path / "config.json").is_file()
    best = outcome.experiment_dir / trials["checkpoint"].iloc[0]
    assert (best / "model.safetensors").is_file()
    assert list(remote.glob("trial_*/checkpoint_*/test_predictions.csv"))
    # TensorBoard's event files are written by Tune straight to the URI.
    assert list(remote.glob("trial_*/events.out.tfevents.*"))
    # A checkpoint whose weights are not mirrored is fetched from the URI on export.
    from search.export import export_model

    (best / "model.safetensors").unlink()
    out = export_model(outcome.experiment_dir, out=tmp_path / "exported")
    assert (out / "model.safetensors").is_file() and (best / "model.safetensors").is_file()


def test_study_uploader_sends_a_consistent_snapshot(tmp_path: Path) -> None:
    import sqlite3

    from search.filenames import OPTUNA_DB
    from search.tune.study_upload import StudyUploader

    db = tmp_path / OPTUNA_DB
    con = sqlite3.connect(db)
    con.execute("create table trials (id integer, value real)")
    con.execute("insert into trials values (1, 0.9)")
    con.commit()  # the connection stays open, as Optuna's would
    remote = f"file://{tmp_path / 'bucket' / 'exp'}"
    assert StudyUploader(str(db), remote).upload()
    copy = sqlite3.connect(tmp_path / "bucket" / "exp" / OPTUNA_DB)
    assert copy.execute("select id, value from trials").fetchall() == [(1, 0.9)]
    con.close()
    import pytest

    with pytest.warns(UserWarning, match="could not upload the Optuna study"):
        assert not StudyUploader(str(tmp_path / "missing" / OPTUNA_DB), remote).upload()

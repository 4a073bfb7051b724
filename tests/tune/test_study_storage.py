"""``search.optuna_storage`` (issue 29): the journal by default, SQLite results still read,
the journal uploaded as appends, and a real PostgreSQL shared by two searches.

The PostgreSQL test starts Debian's server (``apt-get install postgresql``; ``.ci/run``
installs it) from its own data folder on a loopback port, as the ``postgres`` user when the
tests run as root, and stops it by its PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from search.config import ConfigError, load_config
from search.filenames import OPTUNA_DB, OPTUNA_JOURNAL
from search.tune import study_store
from search.tune.importance import param_importances
from search.tune.study_upload import JournalUploader


def _fill(storage, name: str, n: int) -> None:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                load_if_exists=True)
    for i in range(n):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                           "arch": optuna.distributions.CategoricalDistribution(["a", "b"])})
        study.tell(trial, 0.5 + 0.01 * i + (0.1 if trial.params["arch"] == "a" else 0))


def test_the_journal_is_the_default_and_read_back(tmp_path: Path) -> None:
    cfg = load_config(None, ["search.name=s"])
    storage = study_store.open_storage(cfg, tmp_path)
    _fill(storage, "s", 6)
    assert (tmp_path / OPTUNA_JOURNAL).is_file() and not (tmp_path / OPTUNA_DB).exists()
    study = optuna.load_study(study_name="s", storage=study_store.reader(tmp_path))
    assert len(study.trials) == 6
    assert study_store.describe(cfg, tmp_path) == str(tmp_path / OPTUNA_JOURNAL)
    assert isinstance(param_importances(study_store.reader(tmp_path), "s"), dict)


def test_a_results_folder_from_before_the_journal_is_still_read(tmp_path: Path) -> None:
    _fill(f"sqlite:///{tmp_path / OPTUNA_DB}", "old", 5)
    study = optuna.load_study(study_name="old", storage=study_store.reader(tmp_path))
    assert len(study.trials) == 5
    assert isinstance(param_importances(tmp_path, "old"), dict)
    assert "no optuna.db or optuna.journal" in param_importances(None, "old")


@pytest.mark.parametrize("value", ["journal", "sqlite", "postgresql://u@127.0.0.1:5432/db"])
def test_optuna_storage_values(value: str) -> None:
    assert load_config(None, [f"search.optuna_storage={value}"]).search.optuna_storage == value


def test_a_bad_optuna_storage_names_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError, match="search.optuna_storage must be 'journal'"):
        load_config(None, ["search.optuna_storage=postgres"])


def test_the_journal_goes_up_as_appends_and_comes_back_whole(tmp_path: Path) -> None:
    """Each upload sends only the new bytes (parts add up to the journal, never the whole
    file again); --resume on another machine joins them into the same journal."""
    cfg = load_config(None, ["search.name=s"])
    here, remote = tmp_path / "here", f"file://{tmp_path / 'bucket' / 's'}"
    here.mkdir()
    storage = study_store.open_storage(cfg, here)
    uploader = JournalUploader(str(here / OPTUNA_JOURNAL), remote)
    for _ in range(3):  # three trials end
        _fill(storage, "s", 2)
        assert uploader.upload()
    parts = sorted((tmp_path / "bucket" / "s" / study_store.PARTS).iterdir())
    assert len(parts) == 3
    assert sum(p.stat().st_size for p in parts) == (here / OPTUNA_JOURNAL).stat().st_size
    again = tmp_path / "there"
    study_store.fetch(cfg, again, remote)
    assert (again / OPTUNA_JOURNAL).read_bytes() == (here / OPTUNA_JOURNAL).read_bytes()
    resumed = JournalUploader(str(again / OPTUNA_JOURNAL), remote)
    _fill(study_store.open_storage(cfg, again), "s", 1)
    assert resumed.upload()  # continues after the last part, sends only the new trial
    parts = sorted((tmp_path / "bucket" / "s" / study_store.PARTS).iterdir())
    assert len(parts) == 4
    assert sum(p.stat().st_size for p in parts) == (again / OPTUNA_JOURNAL).stat().st_size


# ------------------------------------------------------------------ a real PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of the test's own (initdb in a temporary folder, trust auth on
    127.0.0.1 only); stopped by its PID."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql; "
                    ".ci/run installs it)")
    bindir = found[-1].parent
    user = {}
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        user = {"user": pw.pw_uid, "group": pw.pw_gid}
    data = Path(tempfile.mkdtemp(prefix="pg-test-"))
    if user:
        os.chown(data, user["user"], user["group"])
    subprocess.run([bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True, **user)
    port = _free_port()
    server = subprocess.Popen([bindir / "postgres", "-D", data, "-p", str(port), "-k", data,
                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **user)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([bindir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert server.poll() is None, "the PostgreSQL server ended at start"
            assert time.monotonic() < deadline, "the PostgreSQL server did not start in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        # Fast shutdown of this server only, by its PID: it disconnects the clients still
        # pooled in this process (SIGTERM's smart shutdown would wait for them).
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.ray
def test_two_searches_share_one_study_in_postgresql(postgres_url: str, ray_cluster,
                                                    tmp_path: Path) -> None:
    """Two drivers (each its own experiment folder) against one study URL: the study holds
    both searches' trials, each told once, and the second search's sampler saw the first's."""
    from bench.replay.replay import Curves, build_replay_tuner, replay_config
    from bench.replay.scale import RECORDING

    curves = Curves.load(RECORDING)
    told = []
    for i, n in enumerate((4, 5)):
        cfg = replay_config(curves, ["search.algorithm=tpe", "search.scheduler=asha",
                                     f"search.num_samples={n}", f"seed={i}",
                                     f"search.optuna_storage={postgres_url}",
                                     "cluster.max_concurrent_trials=2"],
                            storage=tmp_path / f"driver{i}", name="shared")
        results = build_replay_tuner(cfg, curves).fit()
        assert len(results) == n and not any(r.error for r in results)
        study = optuna.load_study(study_name="shared", storage=postgres_url)
        told.append(len(study.trials))
        assert not (tmp_path / f"driver{i}" / "shared" / OPTUNA_JOURNAL).exists()
        assert not (tmp_path / f"driver{i}" / "shared" / OPTUNA_DB).exists()
    assert told == [4, 9]  # the second search added its 5 to the first's 4
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    # the shared trials: the second driver's numbers follow the first's, in one study
    assert sorted(t.number for t in study.trials) == list(range(9))
    assert study_store.reader(tmp_path / "driver1" / "shared",
                              replay_config(curves, [f"search.optuna_storage={postgres_url}"],
                                            storage=tmp_path / "driver1", name="shared"))

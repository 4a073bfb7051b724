"""``deepfake-search run``'s exit status, on real searches (issue 22): a SIGTERM to the
driver (a scheduler, ``docker stop``, ``kill``) ends the search as Ctrl-C does, with its
tables and the resume hint, then exits 143; a search in which no trial finished exits 1
naming the error files. Each search is tiny (one trial, 32 px) and joins the session's
cluster, as a driver on a real cluster's head does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEEPFAKE_SEARCH = Path(sys.executable).with_name("deepfake-search")


def _config(tmp_path: Path, shards: Path, address: str, name: str, arch: str = "custom_cnn",
            **model: object) -> Path:
    tiny = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    tiny["model"].update(model)
    tiny["data"] = {"shards": str(shards)}
    tiny["cluster"] = {"storage_path": str(tmp_path / "results"), "address": address,
                       "data_cpus": 1, "max_concurrent_trials": 1}
    tiny["optim"]["epochs"] = 10  # far more than the test waits for
    tiny["search"].update({"name": name, "num_samples": 1, "scheduler": "none", "max_failures": 0,
                           "space": {**tiny["search"]["space"], "arch": [arch]}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return path


def _command(cfg: Path) -> list[str]:
    if DEEPFAKE_SEARCH.is_file():  # the console script, as a user runs it
        return [str(DEEPFAKE_SEARCH), "run", "--config", str(cfg), "--no-test"]
    return [sys.executable, "-c", "import sys; from search.cli import main; sys.exit(main())",
            "run", "--config", str(cfg), "--no-test"]


@pytest.mark.ray
def test_sigterm_to_the_driver_writes_the_tables_and_exits_143(tmp_path, demo_shards, ray_cluster):
    address = ray_cluster.get_runtime_context().gcs_address
    cfg = _config(tmp_path, demo_shards, address, "term")
    proc = subprocess.Popen(_command(cfg), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    deadline = time.time() + 300
    try:
        for line in proc.stdout:  # wait for the first epoch, then send SIGTERM to the driver
            lines.append(line)
            if re.search(r"\] (\w+)\s+epoch 1/10", line):
                break
            assert time.time() < deadline, "".join(lines[-30:])
        else:
            pytest.fail("the search ended before its first epoch:\n" + "".join(lines[-30:])
                        + proc.stderr.read()[-3000:])
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = "".join(lines) + out
    assert proc.returncode == 143, out[-3000:] + err[-3000:]
    assert f"continue with: deepfake-search run --config {cfg} --no-test --resume" in err, err[-3000:]
    assert "Tuner.restore" not in out + err and "Traceback" not in err, err[-3000:]
    exp = tmp_path / "results" / "term"
    trials = pd.read_parquet(exp / "trials.parquet")
    assert list(trials["status"]) == ["INTERRUPTED"], trials
    assert (exp / "leaderboard.md").is_file() and (exp / "history.parquet").is_file()


@pytest.mark.ray
def test_a_search_where_every_trial_failed_exits_1(tmp_path, demo_shards, ray_cluster):
    """Every trial fails as it builds its model (its pretrained weights file is damaged:
    read only inside the trial): before, this printed "Trials: 1 error" and exited 0."""
    address = ray_cluster.get_runtime_context().gcs_address
    weights = tmp_path / "resnet10t.safetensors"
    weights.write_bytes(b"not safetensors\n")
    cfg = _config(tmp_path, demo_shards, address, "allfail", arch="resnet10t",
                  pretrained=str(weights))
    done = subprocess.run(_command(cfg), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    exp = tmp_path / "results" / "allfail"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("deepfake-search run: error: no trial finished: 1 trial(s) ran and "
                           "none produced a result"), done.stderr[-3000:]
    assert "the first says: " in last and "deserializing header" in last, last
    (error_file,) = exp.glob("*/error.txt")
    assert str(error_file) in last
    trials = pd.read_parquet(exp / "trials.parquet")
    assert list(trials["status"]) == ["ERROR"]

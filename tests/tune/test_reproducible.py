"""A search rerun with the same seed gives the same leaderboard (issue: the study).

What makes it so: Optuna's sampler is seeded with the experiment's seed, trials run one at a
time (so TPE and ASHA see results in the same order), each trial seeds torch from it, and
the train stream keeps its blocks in the seeded shard order (``preserve_order``) with a
seeded shuffle buffer. The bar (issue 20): the same configurations, and every epoch's
training loss and validation AUC equal to 1e-6, trial by trial, on CPU. Run on a slice of
the real deepfake_faces set.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from search.cli import main as cli
from search.tune.tables import read_trials_csv

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


TOLERANCE = 1e-6


def _search(shards: Path, storage: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    assert cli(["run", "--config", str(EXAMPLES / "tiny.yaml"), f"data.shards={shards}",
                f"cluster.storage_path={storage}", "search.num_samples=3",
                "cluster.max_concurrent_trials=1", "seed=7", "--no-test"]) == 0
    return (read_trials_csv(storage / "tiny" / "trials.csv"),
            pd.read_parquet(storage / "tiny" / "history.parquet"))


def test_same_seed_same_numbers(dff_shards, ray_cluster, tmp_path):
    (first, first_h), (second, second_h) = (_search(dff_shards, tmp_path / "a"),
                                            _search(dff_shards, tmp_path / "b"))
    params = ["arch", "ratio", "lr"]
    # Trial ids differ between runs: trials are matched by what the sampler suggested.
    pairs = pd.merge(first, second, on=params, suffixes=("_a", "_b"))
    assert len(pairs) == len(first) == len(second) == 3, (first[params], second[params])
    assert list(pairs["status_a"]) == list(pairs["status_b"])
    assert list(pairs["epochs_a"]) == list(pairs["epochs_b"])
    # Every epoch of every trial: the loss the model trained to and the AUC it scored.
    ids = dict(zip(pairs["trial_id_b"], pairs["trial_id_a"], strict=True))
    epochs = pd.merge(first_h, second_h.assign(trial_id=second_h["trial_id"].map(ids)),
                      on=["trial_id", "epoch"], suffixes=("_a", "_b"))
    assert len(epochs) == len(first_h) == len(second_h) == pairs["epochs_a"].sum()
    for col in ("train_loss", "val_auc", "val_accuracy"):
        gap = (epochs[f"{col}_a"] - epochs[f"{col}_b"]).abs().max()
        print(f"largest {col} gap between the two runs: {gap:.2e}")
        assert gap <= TOLERANCE, epochs[["trial_id", "epoch", f"{col}_a", f"{col}_b"]]

"""A real tiny search that selects on another source (issue 13): trained on the demo set,
scored every other epoch on real deepfake_faces images and on the 32 real FF++/Celeb-DF
frames (``data.extra_sources``), selected by ``val_auc@dff``. Every reported cross-source figure is checked against a hand computation
from the checkpoint's own predictions and the history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.tune import tables

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _auc_by_hand(labels: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney: the share of (fake, real) pairs ranked right, ties counting a half."""
    fake, real = p[labels == 1], p[labels == 0]
    wins = (fake[:, None] > real[None, :]).sum() + 0.5 * (fake[:, None] == real[None, :]).sum()
    return float(wins / (len(fake) * len(real)))


@pytest.fixture(scope="module")
def frames_source(tmp_path_factory, frames) -> Path:
    """The 32 real FF++/Celeb-DF frames, half validation and half test: a real second source,
    far too small to select on, but real."""
    from search.data.prepare import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("frames_source") / "shards"
    prepare(PrepareOptions(layout="folders", source=str(frames), out=str(out), size=32,
                           splits=(0.0, 0.5, 0.5), seed=0), progress=False)
    return out


@pytest.fixture(scope="module")
def source_search(tmp_path_factory, demo_shards, dff_shards, frames_source, ray_cluster) -> Path:
    from search.cli import main as cli

    storage = tmp_path_factory.mktemp("cross_source")
    points = ("search.points_to_evaluate=[{arch: custom_cnn, lr: 0.003, base_width: 8}, "
              "{arch: custom_cnn, lr: 0.0003, base_width: 16}]")
    assert cli(["run", "--config", str(EXAMPLES / "tiny.yaml"), f"data.shards={demo_shards}",
                f"cluster.storage_path={storage}", "search.name=xsource", "search.num_samples=2",
                "search.scheduler=none", "optim.epochs=3", "data.extra_every=2",
                f"data.extra_sources={{dff: {dff_shards}, frames: {frames_source}}}",
                "search.metric=val_auc@dff",
                # every trial's weights stay: the tests re-score each trial's checkpoints
                "cluster.keep_weights=all",
                points]) == 0
    return storage / "xsource"


def test_a_search_selects_on_another_source(source_search, dff_shards):
    from search.evaluate import evaluate_checkpoint

    n_val = sum(json.loads((dff_shards / "manifest.json").read_text())["counts"]["val"].values())
    trials = pd.read_parquet(source_search / "trials.parquet")
    history = pd.read_parquet(source_search / "history.parquet")
    assert len(trials) == 2
    # Ranked by the cross-source metric, not the in-source one.
    assert trials["best_val_auc@dff"].is_monotonic_decreasing
    for _, t in trials.iterrows():
        epochs = history[history["trial_id"] == t["trial_id"]].sort_values("epoch")
        # Scored on epochs 1 and 3 (every 2, and the last); epoch 2 repeats epoch 1's figures.
        assert epochs["sources_epoch"].tolist() == [1, 1, 3]
        for key in ("val_auc@dff", "val_balanced_accuracy@dff", "val_ap@dff", "val_eer@dff"):
            assert epochs[key].iloc[1] == epochs[key].iloc[0]
        every = epochs[["val_auc", "val_auc@dff", "val_auc@frames"]]
        assert np.allclose(epochs["val_auc@mean"], every.mean(axis=1))
        assert np.allclose(epochs["val_auc@worst"], every.min(axis=1))
        _, metrics = tables.best_checkpoint(source_search, t["trial_id"], "val_auc@dff", "max")
        assert metrics["val_auc@dff"] == pytest.approx(t["best_val_auc@dff"])
        # A kept checkpoint whose figures are its own epoch's (always the last, epoch 3):
        # recompute its dff AUC by hand from its weights' predictions on the dff val split.
        scored = [(p, m) for p in tables.trial_checkpoints(source_search, t["trial_id"])
                  if (m := json.loads((p / "config.json").read_text())["metrics"])["sources_epoch"]
                  == m["epoch"]]
        assert scored
        path, own = scored[-1]
        _, preds = evaluate_checkpoint(path, dff_shards, "val")
        assert len(preds) == n_val
        assert own["val_auc@dff"] == pytest.approx(
            _auc_by_hand(preds["label"].to_numpy(), preds["p_fake"].to_numpy()), abs=1e-9)


def test_the_leaderboard_and_the_cross_matrix_come_from_the_search(source_search, dff_shards,
                                                                  frames_source):
    from search.evaluate import evaluate_checkpoint

    board = (source_search / "leaderboard.md").read_text()
    assert "by validation `val_auc@dff` (max)" in board
    assert "| auc | auc@dff | auc@frames | auc@mean | auc@worst |" in board
    matrix = json.loads((source_search / "cross_dataset.json").read_text())
    test = json.loads((source_search / "test_metrics.json").read_text())
    assert matrix["split"] == "test" and len(matrix["rows"]) == len(test) == 1  # one arch
    (row,) = matrix["rows"].values()
    assert not Path(row["model"]).is_absolute()  # relative to the results folder (issue 28)
    own = [name for name, cell in row["cells"].items() if cell["in_domain"]]
    assert len(own) == 1 and set(row["cells"]) == {own[0], "dff", "frames"}
    (tid,) = test
    assert row["cells"][own[0]]["auc"] == pytest.approx(test[tid]["auc"])
    _, preds = evaluate_checkpoint(source_search / row["model"], dff_shards, "test")  # the finalist, by hand
    assert row["cells"]["dff"]["n"] == len(preds) > 0
    assert row["cells"]["dff"]["auc"] == pytest.approx(
        _auc_by_hand(preds["label"].to_numpy(), preds["p_fake"].to_numpy()), abs=1e-9)
    _, preds = evaluate_checkpoint(source_search / row["model"], frames_source, "test")  # the real frames
    assert row["cells"]["frames"]["n"] == len(preds) > 0
    assert row["cells"]["frames"]["auc"] == pytest.approx(
        _auc_by_hand(preds["label"].to_numpy(), preds["p_fake"].to_numpy()), abs=1e-9)
    assert (source_search / "cross_dataset.md").is_file()
    html = (source_search / "report" / "report.html").read_text()
    assert "Cross-dataset" in html and "dff" in html


def test_the_report_says_what_each_rule_would_pick(source_search):
    from search.report.selection import selection_table

    history = pd.read_parquet(source_search / "history.parquet")
    trials = pd.read_parquet(source_search / "trials.parquet")
    table = selection_table(history, trials, "val_auc@dff").set_index("selected by")
    # Selecting on dff picks the search's own winner (its metric), at an epoch as good as
    # the trials table's best; in-source selection picks the best in-source epoch.
    assert table.loc["auc@dff", "trial"] == trials.iloc[0]["trial_id"]
    assert table.loc["auc@dff", "auc@dff"] == pytest.approx(trials["best_val_auc@dff"].max())
    assert table.loc["auc (in-source)", "auc (in-source)"] == pytest.approx(
        history["val_auc"].max())
    html = (source_search / "report" / "report.html").read_text()
    assert 'id="selection"' in html and "Cross-source selection" in html
    assert f"In-source selection picks trial {table.loc['auc (in-source)', 'trial']}" in html

"""The tables of a search (search/tune/tables.py): a trial's status from its Tune result, and
what a real tiny search wrote: trials and history tables, the leaderboard with the test split."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from search.filenames import checkpoint_in
from search.tune import tables

METRICS = ("val_accuracy", "val_precision", "val_recall", "val_f1", "val_auc", "val_ap",
           "val_eer", "val_balanced_accuracy", "val_tp", "val_tn", "val_fp", "val_fn")


def _manifest_counts(experiment_dir: Path) -> dict:
    shards = Path(json.loads((experiment_dir / "experiment.json").read_text())["data"]["shards"])
    return json.loads((shards / "manifest.json").read_text())["counts"]


# ------------------------------------------------------------------ from Tune results
def test_trial_status_uses_the_trials_own_epoch_budget(tmp_path):
    """With ``epochs`` in the space, a trial that ran its own (smaller) budget is COMPLETED,
    one that ASHA cut short of it is STOPPED_EARLY."""
    trials, history = tables.collect(
        [_result(tmp_path, "a", 2, 2), _result(tmp_path, "b", 4, 2),
         _result(tmp_path, "c", 4, 4)], experiment_dir=tmp_path,
        metric="val_auc", mode="max", max_epochs=4, param_names=["arch", "epochs"])
    status = dict(zip(trials["trial_id"], trials["status"]))
    assert status == {"a": "COMPLETED", "b": "STOPPED_EARLY", "c": "COMPLETED"}
    assert len(history) == 8 and history["seen_by_tune"].all()


def _result(tmp_path: Path, tid: str, budget: int, ran: int, seen: int | None = None):
    """A Tune result of a trial that trained ``ran`` epochs and reported ``seen`` of them
    to Tune (its last report, the one the scheduler decided on)."""
    frame = pd.DataFrame({"epoch": range(1, ran + 1), "val_auc": [0.6] * ran,
                          "time_total_s": [float(e) for e in range(1, ran + 1)]})
    return SimpleNamespace(config={"epochs": budget, "arch": "custom_cnn"},
                           metrics={"trial_id": tid, "epoch": ran if seen is None else seen},
                           metrics_dataframe=frame, error=None, path=str(tmp_path / tid))


def test_a_trial_asha_stopped_is_stopped_early_though_it_trained_its_budget(tmp_path):
    """Issue 28: a two-worker trial ASHA stopped after epoch 1 trained and wrote epoch 2
    before the stop reached it. Its status is the scheduler's decision (STOPPED_EARLY after
    the 1 epoch Tune saw), not its history's length; the history marks the epoch Tune never
    saw."""
    trials, history = tables.collect(
        [_result(tmp_path, "d", 2, 2, seen=1)], experiment_dir=tmp_path, metric="val_auc",
        mode="max", max_epochs=2, param_names=["arch"])
    assert trials[["status", "epochs", "tune_epochs"]].values.tolist() == [
        ["STOPPED_EARLY", 2, 1]]
    assert history[["epoch", "seen_by_tune"]].values.tolist() == [[1, True], [2, False]]


def test_a_trial_that_never_reported_gets_a_row(tmp_path):
    """A search interrupted (or restored) before a trial's first report: Tune's result has
    no config and no metrics; the trial is listed, not a crash of the whole table."""
    never = SimpleNamespace(config=None, metrics={}, metrics_dataframe=None, error=None,
                            path=str(tmp_path / "trial_z"))
    trials, history = tables.collect([never], experiment_dir=tmp_path, metric="val_auc",
                                     mode="max", max_epochs=4, param_names=["arch"],
                                     unfinished={"trial_z"})
    assert trials[["trial_id", "status", "epochs"]].values.tolist() == [["trial_z",
                                                                        "INTERRUPTED", 0]]
    assert history.empty


# ------------------------------------------------------------------ one real search
def test_tables(tiny_search):
    trials = pd.read_parquet(tiny_search / "trials.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert tables.read_trials_csv(tiny_search / "trials.csv")["trial_id"].tolist() == trials["trial_id"].tolist()
    for col in ("trial_id", "status", "arch", "ratio", "lr", "epochs", "wall_time_s",
                *METRICS, *(f"best_{m}" for m in METRICS)):
        assert col in trials, col
    assert set(trials["arch"]) <= {"custom_cnn", "resnet10t"}
    assert set(trials["status"]) <= {"COMPLETED", "STOPPED_EARLY"}
    counts = _manifest_counts(tiny_search)
    for _, t in trials.iterrows():
        n = t.val_tp + t.val_tn + t.val_fp + t.val_fn
        assert n == sum(counts["val"].values())  # the whole validation split, never undersampled
        assert t.val_tp + t.val_fn == counts["val"]["FAKE"]
        assert t.val_accuracy == pytest.approx((t.val_tp + t.val_tn) / n)
        if t.val_tp + t.val_fp:
            assert t.val_precision == pytest.approx(t.val_tp / (t.val_tp + t.val_fp))
        assert t.val_recall == pytest.approx(t.val_tp / (t.val_tp + t.val_fn))
        for m in ("val_accuracy", "val_f1", "val_auc", "val_ap", "val_eer"):
            assert 0.0 <= t[m] <= 1.0
        # recorded relative to the results folder, so a moved or copied folder still finds it
        assert not Path(t.checkpoint).is_absolute()
        assert 1 <= t.epochs <= 2 and checkpoint_in(tiny_search, t.checkpoint).is_dir()
    history = pd.read_parquet(tiny_search / "history.parquet")
    assert set(history["trial_id"]) == set(trials["trial_id"])
    assert len(history) == trials["epochs"].sum()
    # the best epoch's metrics are the history's best
    best = history.groupby("trial_id")["val_auc"].max()
    for _, t in trials.iterrows():
        assert t.best_val_auc == pytest.approx(best[t.trial_id])


def test_leaderboard_and_test_split(tiny_search):
    board = (tiny_search / "leaderboard.md").read_text()
    trials = pd.read_parquet(tiny_search / "trials.parquet")
    for arch in set(trials["arch"]):
        assert f"| {arch} |" in board
    for word in ("accuracy", "precision", "recall", "f1", "auc", "eer", "baseline_accuracy",
                 "ratio", "lr", "validation", "test", "Parameter importances"):
        assert word in board
    # Real importances over all trials (lr always varies: the seeded points differ in it).
    importances = board.split("## Parameter importances")[1]
    assert "### all trials" in importances, importances
    assert re.search(r"\| lr \| [0-9][0-9.e+-]* \|", importances), importances
    test = json.loads((tiny_search / "test_metrics.json").read_text())
    finalists = trials.drop_duplicates("arch")
    assert set(test) == set(finalists["trial_id"])
    counts = _manifest_counts(tiny_search)
    for metrics in test.values():
        assert metrics["tp"] + metrics["fn"] == counts["test"]["FAKE"]
        assert metrics["tn"] + metrics["fp"] == counts["test"]["REAL"]


def test_counts_print_as_whole_numbers_even_in_float_columns():
    """Counts share float columns with trials that have none (NaN): 2723, not 2723.000."""
    import numpy as np

    from search.leaderboard import markdown

    frame = pd.DataFrame({"model": ["a", "b"], "tp": [2723.0, np.nan], "epoch": [16.0, 6.0],
                          "auc": [0.8, 0.7], "lr": [6.07e-4, 1e-3]})
    lines = markdown(frame).splitlines()
    assert lines[2] == "| a | 2723 | 16 | 0.800 | 0.000607 |", lines
    assert lines[3].startswith("| b | — | 6 | 0.700 |"), lines


def test_trial_ids_that_look_like_numbers_stay_text(tmp_path):
    """Tune's hex ids: 6e672458 reads as inf and 12345678 as an int unless kept as text (a
    launcher test failed on exactly this); every reader of trials.csv goes through here."""
    from search.report.results import read_trials

    ids = ["6e672458", "12345678", "0a1b2c3d", "00001234"]
    pd.DataFrame({"trial_id": ids, "status": "COMPLETED", "checkpoint": ""}).to_csv(
        tmp_path / "trials.csv", index=False)
    assert tables.read_trials_csv(tmp_path / "trials.csv")["trial_id"].tolist() == ids
    assert read_trials(tmp_path)["trial_id"].tolist() == ids


def test_tunes_own_log_is_read_with_the_packed_record_unpacked():
    """The tables' fallback (a trial without history files) reads Tune's log, where a
    search's trial packed all but a few keys into one string: they come back as columns."""
    from types import SimpleNamespace

    from search.train.record import pack
    from search.tune.tables import _tune_log

    keys = frozenset({"epoch", "val_auc"})
    reports = [pack({"epoch": e, "val_auc": 0.5 + e / 10, "val_eer": 0.4 - e / 10}, keys)
               for e in (1, 2, 2)]
    frame = _tune_log(SimpleNamespace(metrics_dataframe=pd.DataFrame(reports)))
    assert frame["epoch"].tolist() == [1, 2]
    assert frame["val_eer"].round(3).tolist() == [0.3, 0.2]
    assert "record_json" not in frame

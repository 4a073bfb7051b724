"""A trial's own history (search/train/history.py): one durable file per epoch, written before
the report reaches Tune, read by the tables whatever Tune's loggers did. No Ray here."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from search.config import load_config
from search.filenames import TRAIN_RUNS, TRIAL_HISTORY, trial_dirname
from search.train import history as h
from search.tune import tables


def _hand_write(folder: Path, epoch: int, **values) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / h.epoch_filename(epoch)).write_text(json.dumps({"epoch": epoch, **values}))


def _result(tid: str, *, last_epoch: int | None, frame: pd.DataFrame | None = None,
            tmp: Path) -> SimpleNamespace:
    metrics = {"trial_id": tid, **({"epoch": last_epoch} if last_epoch else {})}
    return SimpleNamespace(config={"arch": "custom_cnn"}, metrics=metrics, error=None,
                           metrics_dataframe=frame, path=str(tmp / trial_dirname(tid)))


def test_the_writer_leaves_one_complete_file_per_epoch_and_the_last_report_wins(tmp_path):
    folder = tmp_path / "trial_a" / TRIAL_HISTORY
    writer = h.HistoryWriter.at(folder)
    for epoch, auc in ((1, 0.6), (2, 0.7), (2, 0.75)):  # epoch 2 re-run after a crash
        writer.write(h.epoch_record({"epoch": epoch, "val_auc": auc, "node_id": "n1",
                                     "val_eer": float("nan")}, time_total_s=epoch * 10.0))
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_000001.json", "epoch_000002.json"]
    records = h.read_history(tmp_path, "a")
    assert [(r["epoch"], r["val_auc"]) for r in records] == [(1, 0.6), (2, 0.75)]
    assert records[0]["node_id"] == "n1" and records[0]["time_total_s"] == 10.0
    assert records[0]["val_eer"] is None  # strict JSON: NaN is written as null
    assert all(isinstance(r["timestamp"], float) for r in records)


def test_reading_keeps_the_last_report_of_an_epoch_and_skips_what_is_not_a_record(tmp_path):
    """Hand-written files: an epoch reported twice (in the Tune trial folder and in the Train
    run folder, as a trial that moved would leave) appears once, the later report winning;
    a temp file left by a crash mid-write and a foreign file are not records; an unreadable
    record is skipped with a warning."""
    tune_folder = tmp_path / trial_dirname("t1") / TRIAL_HISTORY
    train_folder = tmp_path / TRAIN_RUNS / trial_dirname("t1") / TRIAL_HISTORY
    _hand_write(tune_folder, 1, val_auc=0.5, timestamp=100.0)
    _hand_write(tune_folder, 2, val_auc=0.6, timestamp=200.0)
    _hand_write(train_folder, 2, val_auc=0.65, timestamp=300.0)  # the re-run: later
    _hand_write(train_folder, 1, val_auc=0.1, timestamp=50.0)  # earlier than the other 1
    (tune_folder / ".epoch_000003.json.123.tmp").write_text('{"epoch": 3, "val_a')
    (tune_folder / "notes.txt").write_text("not a record")
    (train_folder / h.epoch_filename(4)).write_text("{truncated")
    with pytest.warns(UserWarning, match="unreadable history record"):
        records = h.read_history(tmp_path, "t1")
    assert [(r["epoch"], r["val_auc"]) for r in records] == [(1, 0.5), (2, 0.65)]


def test_the_tables_read_the_trials_files_not_tunes_log(tmp_path):
    """Tune's loggers off (no result.json: ``metrics_dataframe`` None): the tables hold every
    epoch from the trials' own files, an epoch reported twice once (the last report)."""
    folder = tmp_path / trial_dirname("a") / TRIAL_HISTORY
    writer = h.HistoryWriter.at(folder)
    for epoch, auc in ((1, 0.6), (2, 0.9), (2, 0.8)):
        writer.write(h.epoch_record({"epoch": epoch, "val_auc": auc, "train_loss": 1 / epoch},
                                    time_total_s=5.0 * epoch))
    trials, hist = tables.collect([_result("a", last_epoch=2, tmp=tmp_path)],
                                  experiment_dir=tmp_path, metric="val_auc", mode="max",
                                  max_epochs=2, param_names=["arch"])
    assert hist[["trial_id", "epoch", "val_auc"]].values.tolist() == [["a", 1, 0.6],
                                                                      ["a", 2, 0.8]]
    row = trials.iloc[0]
    assert row["status"] == "COMPLETED" and row["epochs"] == 2 and row["wall_time_s"] == 10.0
    assert row["best_epoch"] == 2 and row["best_val_auc"] == 0.8
    assert row["missing_epochs"] == "" and row["history_note"] == ""
    assert tables.history_notes(trials) == []


def test_the_tables_say_which_epochs_are_missing_and_why(tmp_path):
    """Tune counted 4 epochs: a trial with files for 1 and 2 only, one with no files whose
    result.json has 3 of them (an older results folder, cut short), and one with neither."""
    for epoch in (1, 2):
        _hand_write(tmp_path / trial_dirname("gap") / TRIAL_HISTORY, epoch, val_auc=0.5,
                    timestamp=float(epoch))
    old = pd.DataFrame({"epoch": [1, 2, 2, 3], "val_auc": [0.5, 0.6, 0.61, 0.7],
                        "time_total_s": [1.0, 2.0, 2.5, 3.0]})
    results = [_result("gap", last_epoch=4, tmp=tmp_path),
               _result("old", last_epoch=4, frame=old, tmp=tmp_path),
               _result("none", last_epoch=4, tmp=tmp_path)]
    trials, hist = tables.collect(results, experiment_dir=tmp_path, metric="val_auc",
                                  mode="max", max_epochs=4, param_names=["arch"])
    by = trials.set_index("trial_id")
    assert by.loc["gap", "missing_epochs"] == "3-4" and "history files" in by.loc["gap", "history_note"]
    assert by.loc["old", "missing_epochs"] == "4" and "result.json lacks" in by.loc["old", "history_note"]
    assert by.loc["none", "missing_epochs"] == "1-4" and "holds none" in by.loc["none", "history_note"]
    # the older folder's log, each epoch once (the last report of epoch 2)
    assert hist[hist.trial_id == "old"][["epoch", "val_auc"]].values.tolist() == [
        [1, 0.5], [2, 0.61], [3, 0.7]]
    lines = tables.history_notes(trials)
    assert len(lines) == 3 and all(line.startswith("note: trial ") for line in lines)


def test_a_uri_storage_path_gets_whole_objects(tmp_path):
    """Through pyarrow's filesystem for a URI (``file://`` here; ``s3://`` alike): one
    object per epoch, read back the same way."""
    location = f"file://{tmp_path}"
    writer = h.HistoryWriter.at(f"{location}/{trial_dirname('u')}/{TRIAL_HISTORY}")
    assert writer.local  # pyarrow resolves file:// to the local filesystem
    writer.local = False  # take the object-store path: whole objects, no rename
    writer.write(h.epoch_record({"epoch": 1, "val_auc": 0.7}))
    writer.write(h.epoch_record({"epoch": 1, "val_auc": 0.8}))
    assert [r["val_auc"] for r in h.read_history(location, "u")] == [0.8]


def test_spans_and_missing_epochs():
    assert h.spans([5, 1, 2, 3, 7, 8]) == "1-3, 5, 7-8" and h.spans([]) == ""
    assert h.missing_epochs([1, 3], 4) == [2, 4] and h.missing_epochs([], None) == []


class _Runtime:
    """Rank 0 of a trial, reporting to a list; checks at each report that the epoch's history
    file is already on disk, complete."""

    rank, world_size = 0, 1

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.reports: list[dict] = []

    def device(self) -> torch.device:
        return torch.device("cpu")

    def prepare_model(self, model):
        return model

    def restored(self):
        return nullcontext(None)

    def history(self) -> h.HistoryWriter:
        return h.HistoryWriter.at(self.folder)

    def report(self, metrics, checkpoint) -> None:
        path = self.folder / h.epoch_filename(metrics["epoch"])
        assert path.is_file(), "reported before the history file was written"
        assert json.loads(path.read_text())["val_auc"] == metrics["val_auc"]
        assert checkpoint is not None and (checkpoint / "config.json").is_file()
        self.reports.append(dict(metrics))


def test_the_loop_writes_the_epoch_before_it_reports(tmp_path):
    cfg = load_config(None, ["model.arch=custom_cnn", "model.input_size=32",
                             "model.conv_blocks=2", "model.base_width=8"])
    rt = _Runtime(tmp_path / "trial_x" / TRIAL_HISTORY)
    from search.train.worker import Recipe

    recipe = Recipe(cfg, rt)
    recipe.setup()
    recipe.resume()
    preds = (["a", "b"], np.array([0, 1]), np.array([0.2, 0.9]))
    for epoch in (1, 2):
        recipe.save({"epoch": epoch, "val_auc": 0.5 + epoch / 10, "train_loss": 0.1}, preds)
    records = h.read_records(rt.folder)
    assert [r["epoch"] for r in records] == [1, 2] and len(rt.reports) == 2
    assert records[1]["time_total_s"] >= records[0]["time_total_s"] > 0

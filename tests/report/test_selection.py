"""search.report.selection: what each selection rule picks, checked on a history built by hand."""

from __future__ import annotations

import math

import pandas as pd

from search.report.selection import pick, rule_columns, selection_table, summary


def _history() -> pd.DataFrame:
    # Trial a is best in-source (0.90 at epoch 2); trial b is best on source "x" (0.80 at
    # epoch 1) and in the worst case; "y" ties between a@1 and b@2 (earliest epoch wins).
    rows = [
        ("a", 1, 0.85, 0.50, 0.70), ("a", 2, 0.90, 0.40, 0.60),
        ("b", 1, 0.70, 0.80, 0.65), ("b", 2, 0.75, 0.60, 0.70),
    ]
    h = pd.DataFrame(rows, columns=["trial_id", "epoch", "val_auc", "val_auc@x", "val_auc@y"])
    aucs = h[["val_auc", "val_auc@x", "val_auc@y"]]
    h["val_auc@mean"], h["val_auc@worst"] = aucs.mean(axis=1), aucs.min(axis=1)
    h["val_eer@x"] = 0.1  # another metric of a source: not an AUC rule
    return h


def test_rules_are_the_metric_family_sources_then_aggregates() -> None:
    h = _history()
    assert rule_columns(h) == ["val_auc", "val_auc@x", "val_auc@y", "val_auc@mean",
                               "val_auc@worst"]
    assert rule_columns(h, "val_auc@x") == rule_columns(h)  # the family, whatever the source
    assert rule_columns(h.drop(columns=["val_auc@x", "val_auc@y", "val_auc@mean",
                                        "val_auc@worst"])) == []  # no extra sources: no rules


def test_each_rule_picks_its_best_epoch_by_hand() -> None:
    h = _history()
    assert tuple(pick(h, "val_auc")[["trial_id", "epoch"]]) == ("a", 2)
    assert tuple(pick(h, "val_auc@x")[["trial_id", "epoch"]]) == ("b", 1)
    assert tuple(pick(h, "val_auc@y")[["trial_id", "epoch"]]) == ("a", 1)  # ties b@2: earlier
    # mean: a@1 (0.85+0.5+0.7)/3=0.683, a@2 0.633, b@1 0.717, b@2 0.683 -> b@1
    assert tuple(pick(h, "val_auc@mean")[["trial_id", "epoch"]]) == ("b", 1)
    # worst: a@1 0.5, a@2 0.4, b@1 0.65, b@2 0.6 -> b@1
    assert tuple(pick(h, "val_auc@worst")[["trial_id", "epoch"]]) == ("b", 1)
    assert pick(h.assign(val_auc=math.nan), "val_auc") is None


def test_ties_go_to_the_earliest_epoch() -> None:
    h = pd.DataFrame({"trial_id": ["a", "a"], "epoch": [1, 2], "val_auc@y": [0.7, 0.7]})
    assert pick(h, "val_auc@y")["epoch"] == 1


def test_lower_is_better_rules_pick_the_minimum() -> None:
    h = pd.DataFrame({"trial_id": ["a", "b"], "epoch": [1, 1], "val_eer@x": [0.3, 0.2]})
    assert pick(h, "val_eer@x")["trial_id"] == "b"


def test_the_table_gives_each_pick_its_figures_on_every_source() -> None:
    h = _history()
    trials = pd.DataFrame({"trial_id": ["a", "b"], "arch": ["custom_cnn", "resnet10t"]})
    t = selection_table(h, trials)
    assert list(t.columns) == ["selected by", "trial", "arch", "epoch", "auc (in-source)",
                               "auc@x", "auc@y", "auc@mean", "auc@worst"]
    assert t["selected by"].tolist() == ["auc (in-source)", "auc@x", "auc@y", "auc@mean",
                                         "auc@worst"]
    assert t["trial"].tolist() == ["a", "b", "a", "b", "b"]
    row = t.iloc[1]  # selected on x: b@1, in-source 0.70 although a reached 0.90
    assert (row["arch"], row["epoch"], row["auc (in-source)"], row["auc@x"]) == \
        ("resnet10t", 1, 0.70, 0.80)
    assert summary(t).startswith("In-source selection picks trial a (custom_cnn, epoch 2); "
                                 "`auc@x` picks trial b (resnet10t, epoch 1); "
                                 "`auc@y` picks the same trial at epoch 1;")
    same = selection_table(h.assign(**{"val_auc@y": h["val_auc"]}), trials)
    assert "`auc@y` picks the same trial and epoch;" in summary(same)
    assert summary(selection_table(h.iloc[:0], trials)) == ""

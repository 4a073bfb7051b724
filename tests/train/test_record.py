"""A search's trial tells Tune a few keys and packs the rest for TensorBoard: nothing is lost
on the way (the TensorBoard files themselves are read back in test_tuner.py)."""

from __future__ import annotations

import json
import math

from search.train.record import RECORD, pack, unpack


def test_pack_keeps_the_keys_and_packs_every_other_number():
    metrics = {"epoch": 2, "val_auc": 0.8, "val_eer": 0.25, "val_ap": 0.9, "arch": "custom_cnn",
               "val_nan": math.nan, "flag": True}
    told = pack(metrics, frozenset({"epoch", "val_auc"}))
    assert {k for k in told if k != RECORD} == {"epoch", "val_auc"}
    assert json.loads(told[RECORD]) == {"val_eer": 0.25, "val_ap": 0.9}
    back = unpack(told)
    assert back == {"epoch": 2, "val_auc": 0.8, "val_eer": 0.25, "val_ap": 0.9}


def test_unpack_leaves_a_result_without_a_record_alone():
    assert unpack({"epoch": 1, "val_auc": 0.5}) == {"epoch": 1, "val_auc": 0.5}
    assert RECORD not in pack({"epoch": 1}, frozenset({"epoch"}))

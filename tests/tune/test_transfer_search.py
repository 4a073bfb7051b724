"""A real tiny search over the transfer options (issue 19): input_transform, synthetic share
and down-up augmentation in search.space, each trial's choice recorded in the trials table
and in its checkpoint, whose model is rebuilt with its input transform."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from search.tune.tables import read_trials_csv

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

POINTS = [{"input_transform": "npr", "synthetic": 1.0, "downup_prob": 0.5},
          {"input_transform": "rgb", "synthetic": 0.0, "downup_prob": 0.0},
          {"input_transform": "highpass", "synthetic": 0.5, "downup_prob": 0.5}]


@pytest.mark.ray
def test_a_search_over_the_transfer_options_records_every_choice(tmp_path, demo_shards,
                                                                 ray_cluster):
    from search.cli import main as cli
    from search.filenames import checkpoint_in
    from search.model.checkpoint import load_checkpoint
    from search.model.transforms import WithInputTransform

    space = ("search.space={arch: custom_cnn, ratio: '1:1', lr: 0.003, conv_blocks: 2, "
             "base_width: 8, dense_units: 32, input_transform: [rgb, npr, highpass], "
             "synthetic: [0.0, 0.5, 1.0], downup_prob: [0.0, 0.5]}")
    points = "search.points_to_evaluate=" + json.dumps(POINTS)
    assert cli(["run", "--config", str(EXAMPLES / "tiny.yaml"), f"data.shards={demo_shards}",
                f"cluster.storage_path={tmp_path}", "search.name=transfer", "cluster.keep_weights=all",
                "search.num_samples=3", "search.scheduler=none", space, points]) == 0
    results = tmp_path / "transfer"
    trials = pd.read_parquet(results / "trials.parquet")
    assert (trials["status"] != "ERROR").all() and len(trials) == 3
    chosen = {tuple(r) for r in trials[["input_transform", "synthetic", "downup_prob"]]
              .itertuples(index=False)}
    assert chosen == {(p["input_transform"], p["synthetic"], p["downup_prob"]) for p in POINTS}
    csv = read_trials_csv(results / "trials.csv")
    assert set(csv["input_transform"]) == {"rgb", "npr", "highpass"}
    for _, row in trials.iterrows():  # each checkpoint records and rebuilds its choice
        model, info = load_checkpoint(checkpoint_in(results, row["checkpoint"]))
        meta = info.meta
        assert meta["experiment"]["model"]["input_transform"] == row["input_transform"]
        assert meta["experiment"]["data"]["synthetic"] == row["synthetic"]
        assert isinstance(model, WithInputTransform) == (row["input_transform"] != "rgb")
        assert meta["metrics"]["val_auc"] == meta["metrics"]["val_auc"]  # a number, not NaN
    assert (results / "leaderboard.md").is_file()

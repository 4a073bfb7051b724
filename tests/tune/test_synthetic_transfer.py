"""A controlled case where self-blended fakes must transfer (issue 19), shown by one real
tiny search on the demo set.

Source A's FAKEs carry a 1-px checkerboard grid (a generator's artefact), source B's REALs
carry it and its FAKEs do not; both have the same face-swap seams (tests/tune/
test_shift_selection.py). Trained on A with its own fakes (``synthetic: 0``) the CNN learns
the grid alone and is wrong on B by construction. Trained on A's REAL images and their
self-blends only (``synthetic: 1``) it never sees A's fakes, so never the grid as a FAKE
cue: it must learn a blending boundary, which B's fakes share.

The blend's source/target transform matters here, measured on 2 cores with these sources
and seed (6 epochs, B's validation AUC at the last): ``colour`` 0.91, ``none`` 0.76, SBI's
full ``sbi`` 0.21 and ``quality`` alone 0.47, against 0.005 for the RGB baseline. The
down-up/sharpen step teaches "a region with other high frequencies", which B's gridded
REALs show; colour shifts teach the boundary and the colour mismatch alone. So this test
uses ``colour``. Its run (one seed): B's test AUC 0.90 for the self-blends against 0.23 for
the baseline's kindest epoch there; in-source (A's test) 0.79 against 0.98. About 2.5 min
with the Ray cluster's start on a loaded 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from search.tune import tables

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
METRIC = "val_auc@shifted"


def _source(root: Path, grid: str, seed: int) -> Path:
    from search.data.prepare import PrepareOptions, prepare

    prepare(PrepareOptions(layout="demo", source=str(root / "source"), out=str(root / "shards"),
                           size=64, demo_images=600, demo_grid=grid, seed=seed), progress=False)
    return root / "shards"


@pytest.mark.ray
def test_self_blends_transfer_where_the_sets_own_fakes_teach_a_shortcut(tmp_path, ray_cluster):
    from search.cli import main as cli
    from search.evaluate import evaluate_checkpoint

    a = _source(tmp_path / "a", "fake", seed=0)
    b = _source(tmp_path / "b", "real", seed=1)
    space = ("search.space={arch: custom_cnn, input_size: 64, ratio: '1:1', lr: 0.001, "
             "conv_blocks: 2, base_width: 16, kernel_size: 3, dense_units: 32, dropout: 0.25, "
             "batch_norm: true, weight_decay: 1.0e-4, synthetic: [0.0, 1.0], "
             "blend_transform: colour}")
    assert cli(["run", "--config", str(EXAMPLES / "shift-demo.yaml"), f"data.shards={a}",
                f"data.extra_sources={{shifted: {b}}}", f"cluster.storage_path={tmp_path}", "cluster.keep_weights=all",
                "search.name=sbi", "optim.epochs=6", space,
                "search.points_to_evaluate=[{synthetic: 0.0}, {synthetic: 1.0}]",
                "--no-test"]) == 0
    experiment = tmp_path / "sbi"
    trials = pd.read_parquet(experiment / "trials.parquet")
    share = dict(zip(trials["trial_id"], trials["synthetic"], strict=True))
    assert sorted(share.values()) == [0.0, 1.0]
    assert share[trials.iloc[0]["trial_id"]] == 1.0  # selecting on B picks the self-blends
    test = {}
    for tid in share:  # B's test split, never used to select
        path, _ = tables.best_checkpoint(experiment, tid, METRIC, "max")
        test[share[tid]] = {name: evaluate_checkpoint(path, shards, "test")[0]["auc"]
                            for name, shards in (("A", a), ("B", b))}
    print(f"test AUC by synthetic share {test}")
    assert test[1.0]["B"] > 0.7  # it learned what B's fakes share with self-blends
    assert test[1.0]["B"] > test[0.0]["B"] + 0.4  # the baseline learned the grid
    assert test[0.0]["A"] > 0.95  # ... which is all it needs in-source

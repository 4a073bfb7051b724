"""Self-blended fakes in the training stream (data.synthetic) and the down-up augmentation:
the blend itself, which rows become FAKE, the ratio, determinism per seed and epoch, and
that validation and test never see any of it. No Ray: the stream's batch functions are
called directly, with the epoch set as Ray Data would set it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from search.config import ConfigError, DataConfig, ExperimentConfig, parse_blend_ratios
from search.data import stream
from search.data.images import decode_to_array, down_up
from search.data.stream import (
    Augment,
    DecodeBatch,
    SelfBlendRows,
    Undersample,
    blends_per_real,
    train_decoder,
    train_steps,
)
from search.data.synthetic import BlendSpec, blend_mask, self_blend
from search.tune.space import build_space, sample


def _epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    monkeypatch.setattr(stream, "_execution_index", lambda: epoch)


def _train_batch(shards: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(next(shards.glob("train-*.parquet")),
                          columns=["image", "label", "id"]).to_pydict()
    return {"image": np.asarray(table["image"], dtype=object),
            "label": np.asarray(table["label"]), "id": np.asarray(table["id"], dtype=object)}


def _counts(shards: Path) -> dict[str, int]:
    return json.loads((shards / "manifest.json").read_text())["counts"]["train"]


def _epoch_batch(batch, counts, cfg, *, size=32, seed=0):
    """One epoch of the train split as the stream makes it: its row steps, then decode."""
    rows = batch
    for step in train_steps(counts, cfg, seed=seed):
        rows = step(rows)
    return rows, train_decoder(cfg, size=size, seed=seed)(rows)


# ------------------------------------------------------------------ the blend itself
def test_self_blend_is_a_pure_function_of_its_generator():
    img = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    a = self_blend(img, np.random.default_rng(7))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, self_blend(img, np.random.default_rng(7)))
    assert not np.array_equal(a, self_blend(img, np.random.default_rng(8)))
    assert not np.array_equal(a, img)
    # Without the source/target transforms only the face region changes: the corners of a
    # face-centred crop lie outside every ellipse, so they are the image as it was.
    for seed in range(10):
        plain = self_blend(img, np.random.default_rng(seed), BlendSpec(transform="none"))
        assert np.array_equal(plain[:4, :4], img[:4, :4])
        assert np.array_equal(plain[:4, -4:], img[:4, -4:])
        assert not np.array_equal(plain, img)


def test_the_mask_is_soft_face_centred_and_varies():
    masks = [blend_mask(64, 64, np.random.default_rng(s)) for s in range(20)]
    for m in masks:
        assert m.dtype == np.float32 and m.min() >= 0 and m.max() == pytest.approx(1.0)
        assert m[:6, :6].max() == 0 and m[:6, -6:].max() == 0  # corners: outside
        assert m[36, 32] > 0.5  # the middle of the face: inside
        assert 0.05 < ((m > 0) & (m < 1)).mean()  # a feathered edge, not a hard one
    areas = [float((m > 0.5).mean()) for m in masks]
    assert min(areas) < 0.3 < max(areas)  # inner-face and whole-face masks both occur


def test_blend_settings_are_checked():
    assert parse_blend_ratios("0.25,0.5,0.75,1,1,1") == (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    assert BlendSpec.from_config(DataConfig(blend_ratios="1")).ratios == (1.0,)
    for bad in ("0", "1.5", "a,b", ""):
        with pytest.raises(ConfigError, match=r"data\.blend_ratios.*comma-separated"):
            DataConfig(blend_ratios=bad)
    for key, value in (("synthetic", 1.5), ("downup_prob", -0.1)):
        with pytest.raises(ConfigError, match=rf"data\.{key} must be between 0 and 1"):
            DataConfig(**{key: value})
    with pytest.raises(ConfigError, match=r"data\.blend_mask must be one of 'ellipse'"):
        DataConfig(blend_mask="hull")
    with pytest.raises(ConfigError, match=r"data\.blend_transform must be one of"):
        DataConfig(blend_transform="hsv")


# ------------------------------------------------------------------ which rows, how many
def _ids_and_labels(n_real: int, n_fake: int):
    ids = np.array([f"img{i:05d}" for i in range(n_real + n_fake)], dtype=object)
    labels = np.array([0] * n_real + [1] * n_fake, dtype=np.int8)
    return {"id": ids, "label": labels, "image": ids.copy()}


@pytest.mark.parametrize("ratio", ["1:1", "1:2", "natural"])
@pytest.mark.parametrize("share", [0.25, 0.5, 1.0])
def test_the_ratio_is_kept_and_the_share_of_fakes_is_synthetic(monkeypatch, ratio, share):
    """REAL:FAKE as without the option; FAKE rows a mix with ``share`` self-blends; only
    self-blends are new FAKEs, and each is a copy of a REAL row of the same epoch."""
    counts = {"REAL": 1500, "FAKE": 4500}
    batch = _ids_and_labels(counts["REAL"], counts["FAKE"])
    cfg = DataConfig(ratio=ratio, synthetic=share)
    plain = DataConfig(ratio=ratio)
    fakes, synth, reals = [], [], []
    for epoch in range(6):
        _epoch(monkeypatch, epoch)
        rows = batch
        for step in train_steps(counts, cfg, seed=3):
            rows = step(rows)
        base = batch
        for step in train_steps(counts, plain, seed=3):
            base = step(base)
        number = rows["synthetic"]
        assert set(rows["label"][number > 0]) == {1}  # every self-blend is FAKE ...
        real_ids = set(batch["id"][: counts["REAL"]])
        assert set(rows["id"][number > 0]) <= real_ids  # ... made from a REAL row ...
        assert set(rows["id"][number > 0]) <= set(rows["id"][(number == 0) & (rows["label"] == 0)])
        assert set(rows["id"][(rows["label"] == 1) & (number == 0)]).isdisjoint(real_ids)
        reals.append((rows["label"] == 0).sum())
        fakes.append((rows["label"] == 1).sum() / max(1, (base["label"] == 1).sum()))
        synth.append((number > 0).sum() / max(1, (rows["label"] == 1).sum()))
        assert (rows["label"] == 0).sum() == (base["label"] == 0).sum()  # REALs untouched
    assert np.mean(fakes) == pytest.approx(1.0, abs=0.04)  # as many FAKE rows as without
    assert np.mean(synth) == pytest.approx(share, abs=0.04)
    if share == 1.0:
        assert all(s == 1.0 for s in synth)  # the SBI recipe: no real FAKE is left


def test_share_one_on_a_real_only_split_follows_the_ratio(monkeypatch):
    _epoch(monkeypatch, 0)
    counts = {"REAL": 1000, "FAKE": 0}
    assert blends_per_real(counts, "1:2", 1.0) == 2.0
    rows = SelfBlendRows(1.0, blends_per_real(counts, "1:1", 1.0), seed=0)(
        _ids_and_labels(1000, 0))
    assert (rows["label"] == 1).sum() == (rows["label"] == 0).sum() == 1000
    with pytest.raises(ValueError, match="REAL images"):
        blends_per_real({"REAL": 0, "FAKE": 10}, "1:1", 0.5)


def test_rows_do_not_depend_on_batch_boundaries(monkeypatch):
    _epoch(monkeypatch, 2)
    batch = _ids_and_labels(500, 1000)
    step = SelfBlendRows(0.5, 1.0, seed=4)
    whole = step(batch)
    parts = [step({k: v[a:b] for k, v in batch.items()}) for a, b in ((0, 333), (333, 1500))]
    for key in ("id", "label", "synthetic"):
        assert np.array_equal(whole[key], np.concatenate([p[key] for p in parts]))


# ------------------------------------------------------------------ images, epochs, splits
def test_only_self_blends_are_fake_and_they_are_blended(demo_shards, monkeypatch):
    _epoch(monkeypatch, 0)
    cfg = DataConfig(ratio="1:1", synthetic=1.0, hflip=False)
    rows, out = _epoch_batch(_train_batch(demo_shards), _counts(demo_shards), cfg)
    number = rows["synthetic"]
    assert np.array_equal(out["label"] == 1, number > 0)  # FAKE exactly when synthetic
    assert (out["label"] == 0).sum() == (out["label"] == 1).sum()  # 1:1
    changed = [not np.array_equal(img, decode_to_array(data, 32))
               for img, data in zip(out["image"], rows["image"])]
    assert np.array_equal(np.array(changed), number > 0)  # blended exactly those rows


def _digest(out: dict[str, np.ndarray]) -> str:
    return hashlib.sha1(out["image"].tobytes() + out["label"].tobytes()).hexdigest()


def test_identical_for_a_seed_and_epoch_different_across_epochs(demo_shards, monkeypatch):
    batch, counts = _train_batch(demo_shards), _counts(demo_shards)
    cfg = DataConfig(ratio="1:2", synthetic=0.5)
    seen = {}
    for epoch in (0, 1, 0):
        _epoch(monkeypatch, epoch)
        rows, out = _epoch_batch(batch, counts, cfg, seed=11)
        digest = _digest(out), tuple(rows["id"])
        assert seen.setdefault(epoch, digest) == digest  # the same epoch again: identical
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]  # other rows, other blends
    _epoch(monkeypatch, 0)
    other = _epoch_batch(batch, counts, cfg, seed=12)[1]
    assert _digest(other) != seen[0][0]  # another seed, another epoch


def test_share_zero_is_the_stream_without_the_option(demo_shards, monkeypatch):
    """synthetic 0 adds no step and no draw: the same steps and bytes as a config that
    never mentions it (checked once against the code before the option: identical)."""
    batch, counts = _train_batch(demo_shards), _counts(demo_shards)
    for cfg in (DataConfig(ratio="1:1", jpeg_prob=0.5, blur_prob=0.3),
                DataConfig(ratio="1:2")):
        off = DataConfig(**{**cfg.__dict__, "synthetic": 0.0, "downup_prob": 0.0})
        assert train_steps(counts, off, seed=5) == train_steps(counts, cfg, seed=5)
        assert not any(isinstance(s, SelfBlendRows) for s in train_steps(counts, off, seed=5))
        assert train_decoder(off, size=32, seed=5).blend is None
        _epoch(monkeypatch, 1)
        rows = batch
        p = stream.keep_probabilities(counts, cfg.ratio)
        if min(p) < 1:
            rows = Undersample(*p, seed=5)(rows)
        before = DecodeBatch(32, augment=Augment(cfg.hflip, cfg.jpeg_prob, cfg.blur_prob,
                                                 cfg.color_jitter), seed=5)(rows)
        after = _epoch_batch(batch, counts, off, seed=5)[1]
        assert _digest(before) == _digest(after)


class _Recorder:
    """Stands in for a Ray dataset: records the functions mapped over it."""

    def __init__(self, calls: list) -> None:
        self.calls = calls
        self.context = type("Ctx", (), {"execution_options": type("Opt", (), {})()})()

    def map_batches(self, fn, **_kwargs):
        self.calls.append(fn)
        return self


def test_never_applied_to_validation_or_test(demo_shards, monkeypatch):
    calls: dict[str, list] = {}
    monkeypatch.setattr(stream, "_read", lambda shards, split, **_: _Recorder(
        calls.setdefault(split, [])))
    cfg = DataConfig(ratio="1:1", synthetic=1.0, downup_prob=1.0, jpeg_prob=1.0)
    stream.train_dataset(demo_shards, cfg, size=32, seed=0)
    for split in ("val", "test"):
        stream.eval_dataset(demo_shards, split, size=32)
    assert any(isinstance(f, SelfBlendRows) for f in calls["train"])
    assert calls["train"][-1].blend is not None and calls["train"][-1].augment.downup_prob == 1
    for split in ("val", "test"):
        (decode,) = calls[split]  # read, then decode: nothing in between
        assert decode.blend is None and decode.augment is None
    # Even a validation batch that carried the column would not be blended.
    _epoch(monkeypatch, 0)
    table = pq.read_table(next(demo_shards.glob("val-*.parquet"))).slice(0, 4).to_pydict()
    batch = {"image": np.asarray(table["image"], dtype=object), "label": np.ones(4),
             "id": np.asarray(table["id"], dtype=object), "synthetic": np.ones(4, np.int16)}
    out = calls["val"][-1](batch)
    for img, data in zip(out["image"], table["image"]):
        assert np.array_equal(img, decode_to_array(data, 32))


# ------------------------------------------------------------------ down-up augmentation
def test_downup_is_the_robustness_tests_2x_resize_drawn_with_its_probability():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    always = Augment(hflip=False, downup_prob=1.0)
    assert np.array_equal(always.apply(img, np.random.default_rng(0)), down_up(img, 2))
    half = Augment(hflip=False, downup_prob=0.5)
    hits = sum(not np.array_equal(half.apply(img, np.random.default_rng(s)), img)
               for s in range(200))
    assert 70 < hits < 130
    assert Augment.from_config(DataConfig(downup_prob=0.3)).downup_prob == 0.3


def test_the_new_options_are_searchable():
    space = build_space({"input_transform": ["rgb", "npr", "highpass"],
                         "synthetic": [0.0, 0.5, 1.0], "blend_mask": ["ellipse"],
                         "blend_ratios": ["0.25,0.5,0.75,1,1,1", "1"],
                         "blend_transform": ["sbi", "colour"],
                         "downup_prob": {"low": 0.0, "high": 0.5}, "arch": "custom_cnn"},
                        input_size=64)
    import optuna

    params = {"input_transform": "npr", "synthetic": 1.0, "blend_mask": "ellipse",
              "blend_ratios": "1", "blend_transform": "colour", "downup_prob": 0.25,
              "ratio": "1:1", "lr": 1e-3, "weight_decay": 1e-4, "conv_blocks": 3,
              "base_width": 16, "kernel_size": 3, "dense_units": 64, "dropout": 0.1,
              "batch_norm": True}
    trial = optuna.trial.FixedTrial(params)
    constants = sample(trial, space)
    cfg = ExperimentConfig().with_params({**params, **constants})
    assert (cfg.model.input_transform, cfg.data.synthetic, cfg.data.blend_ratios,
            cfg.data.blend_transform, cfg.data.downup_prob) == ("npr", 1.0, "1", "colour", 0.25)
    with pytest.raises(ConfigError, match=r"search\.space\.input_transform: the choice 'nrp'"):
        build_space({"input_transform": ["rgb", "nrp"]})
    with pytest.raises(ConfigError, match=r"search\.space\.blend_ratios: the choice '2'"):
        build_space({"blend_ratios": ["1", "2"]})

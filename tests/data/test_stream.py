"""The training stream: per-epoch undersampling to a ratio, validation untouched, decoding."""

from __future__ import annotations

import numpy as np
import pytest

from search.config import ConfigError, DataConfig
from search.data import stream
from search.data.stream import (
    DecodeBatch,
    Normalize,
    Undersample,
    eval_dataset,
    keep_probabilities,
    train_dataset,
)


@pytest.mark.parametrize("ratio, expected", [
    ("1:1", (1.0, 0.5)), ("1:2", (1.0, 1.0)), ("natural", (1.0, 1.0)), ("2:1", (1.0, 0.25)),
    ("1:4", (0.5, 1.0)),
])
def test_keep_probabilities(ratio, expected):
    assert keep_probabilities({"REAL": 1000, "FAKE": 2000}, ratio) == pytest.approx(expected)


def test_bad_ratio_is_a_clear_error():
    with pytest.raises(ConfigError, match="REAL:FAKE"):
        keep_probabilities({"REAL": 1, "FAKE": 2}, "one to one")


def test_undersampling_over_many_epochs(monkeypatch):
    """Each epoch redraws; across epochs the realised ratio matches the requested one."""
    n_real, n_fake = 3000, 6000
    ids = np.array([f"img{i:05d}" for i in range(n_real + n_fake)], dtype=object)
    labels = np.array([0] * n_real + [1] * n_fake, dtype=np.int8)
    p_real, p_fake = keep_probabilities({"REAL": n_real, "FAKE": n_fake}, "1:1")
    fn = Undersample(p_real, p_fake, seed=7)
    kept_sets, ratios = [], []
    for epoch in range(20):
        monkeypatch.setattr(stream, "_execution_index", lambda e=epoch: e)
        # batch boundaries must not matter: split the rows into uneven batches
        out = [fn({"id": ids[a:b], "label": labels[a:b]}) for a, b in ((0, 1234), (1234, 9000))]
        kept = np.concatenate([o["id"] for o in out])
        lab = np.concatenate([o["label"] for o in out])
        ratios.append((lab == 1).sum() / max((lab == 0).sum(), 1))
        kept_sets.append(set(kept))
        assert abs(len(kept) - 6000) < 300
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.03)
    assert all(abs(r - 1.0) < 0.1 for r in ratios)
    assert kept_sets[0] != kept_sets[1]  # a new draw every epoch
    monkeypatch.setattr(stream, "_execution_index", lambda: 0)
    again = set(fn({"id": ids, "label": labels})["id"])
    assert again == kept_sets[0]  # ... reproducible by seed


def test_decode_to_uint8_nchw_then_normalise(demo_shards):
    import pyarrow.parquet as pq
    import torch

    from search.data.images import decode_to_array

    table = pq.read_table(next(demo_shards.glob("val-*.parquet"))).slice(0, 8).to_pydict()
    batch = {k: np.asarray(v, dtype=object) for k, v in table.items()}
    size = table["width"][0]
    out = DecodeBatch(size, keep_ids=True)(batch)
    assert out["image"].shape == (8, size, size, 3) and out["image"].dtype == np.uint8
    assert list(out["id"]) == list(table["id"])
    for img, data in zip(out["image"], table["image"]):
        np.testing.assert_array_equal(img, decode_to_array(data, size))
    small = DecodeBatch(24)(batch)["image"]  # resized
    assert small.shape == (8, 24, 24, 3)
    x = Normalize((0.5, 0.4, 0.3), (0.25, 0.2, 0.1))(small)
    assert x.dtype == torch.float32 and x.shape == (8, 3, 24, 24) and x.is_contiguous()
    expected = (small.transpose(0, 3, 1, 2).astype(np.float64) / 255
                - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array([0.25, 0.2, 0.1])[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="NHWC"):
        Normalize((0.5,) * 3, (0.25,) * 3)(small.transpose(0, 3, 1, 2))
    cl = Normalize((0.5,) * 3, (0.25,) * 3)(torch.from_numpy(small), channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)


def test_augment_flip_is_a_mirror():
    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    aug = stream.Augment(hflip=True)
    outs = [aug.apply(img, np.random.default_rng(s)) for s in range(8)]
    assert any(np.array_equal(o, img[:, ::-1]) for o in outs)
    assert any(np.array_equal(o, img) for o in outs)
    full = stream.Augment(hflip=True, jpeg_prob=1.0, blur_prob=1.0, color_jitter=0.2)
    big = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert full.apply(big, np.random.default_rng(1)).shape == (32, 32, 3)


def test_ray_stream_ratio_and_untouched_validation(demo_shards, ray_cluster):
    import json

    counts = json.loads((demo_shards / "manifest.json").read_text())["counts"]
    def run_epochs(n: int) -> tuple[list[np.ndarray], list[list[bytes]]]:
        """Labels and per-image digests (pixels after augmentation, in the order they are
        delivered) of ``n`` executions; two decode tasks, so completion order could vary."""
        import hashlib

        ds = train_dataset(demo_shards, DataConfig(ratio="1:1"), size=16, seed=3, batch_size=32,
                           data_cpus=2)
        labels, digests = [], []
        for _ in range(n):
            batches = list(ds.iter_batches(batch_format="numpy"))
            labels.append(np.concatenate([b["label"] for b in batches]))
            digests.append([hashlib.sha1(img.tobytes()).digest()
                            for b in batches for img in b["image"]])
        return labels, digests

    epochs, drawn = run_epochs(2)
    for labels in epochs:
        real = (labels == 0).sum()
        assert real == counts["train"]["REAL"]  # the smaller class is kept whole
        assert abs((labels == 1).sum() / real - 1.0) < 0.15
    # Through real Ray executions: each epoch draws anew (other FAKEs, other flips) ...
    assert drawn[0] != drawn[1]
    # ... and a new dataset with the same seed repeats the same epochs, in the same order.
    _, again = run_epochs(2)
    assert again == drawn
    ev = eval_dataset(demo_shards, "val", size=16, data_cpus=1)
    labels = np.concatenate([b["label"] for b in ev.iter_batches(batch_format="numpy")])
    assert (labels == 1).sum() == counts["val"]["FAKE"] and (labels == 0).sum() == counts["val"]["REAL"]


def test_shards_from_a_uri_stream_like_a_folder(demo_shards, ray_cluster):
    """data.shards may be a pyarrow URI (s3://, gs://; file:// here): the manifest is read
    through pyarrow and every read task opens its shard by URI on whatever node it runs."""
    from search.config import load_config
    from search.train.driver import resolve_shards

    uri = demo_shards.as_uri()
    assert uri.startswith("file://")
    assert all(f.startswith("file://") for f in stream.split_files(uri, "train"))
    assert resolve_shards(load_config(None, [f"data.shards={uri}/"])) == uri
    by_uri = eval_dataset(uri, "val", size=16, data_cpus=1)
    by_path = eval_dataset(demo_shards, "val", size=16, data_cpus=1)

    def rows(ds):
        return sorted((i, img.tobytes()) for b in ds.iter_batches(batch_format="numpy")
                      for i, img in zip(b["id"], b["image"]))

    assert rows(by_uri) == rows(by_path)
    with pytest.raises(Exception, match="manifest.json not found"):
        resolve_shards(load_config(None, [f"data.shards={uri}/missing"]))

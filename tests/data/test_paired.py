"""Paired batches (data.paired): every FAKE streamed next to the REAL image it was made from,
so the batches hold both sides of a pair; off, the stream is what it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from search.config import ConfigError, load_config
from search.data.stream import ReadShards, paired_order


def _shard(path: Path, n_groups: int = 40, seed: int = 0) -> Path:
    """A shard whose rows are in id order (as prepare writes them): groups of one REAL and
    one to three FAKEs, plus a few groups of FAKEs whose REAL is not in the set."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        if g % 7:  # every seventh group has no REAL image here
            rows.append({"id": f"r{g:03d}", "label": 0, "group": f"v{g:03d}"})
        for k in range(int(rng.integers(1, 4))):
            rows.append({"id": f"f{g:03d}_{k}", "label": 1, "group": f"v{g:03d}"})
    rows.sort(key=lambda r: r["id"])
    table = pa.table({"image": [b"x"] * len(rows), "label": pa.array([r["label"] for r in rows], pa.int8()),
                      "id": [r["id"] for r in rows], "group": [r["group"] for r in rows]})
    pq.write_table(table, path)
    return path


def _read(path: Path, seed: int, paired: bool) -> dict:
    table = next(ReadShards((str(path),), seed, paired)({"shard": np.array([0])}))
    return table.to_pydict()


def test_each_group_is_together_its_real_first(tmp_path):
    rows = _read(_shard(tmp_path / "s.parquet"), seed=3, paired=True)
    groups, labels = rows["group"], rows["label"]
    seen, previous = set(), None
    for i, g in enumerate(groups):
        if g != previous:
            assert g not in seen, f"group {g} parted"  # one run per group
            seen.add(g)
            first = i
        elif labels[first] == 1:  # a group without its REAL: FAKEs only
            assert labels[i] == 1
        previous = g
    for g in set(groups):  # the REAL, when the group has one, opens its run
        labels_g = [lab for gg, lab in zip(groups, labels) if gg == g]
        assert labels_g == sorted(labels_g)


def test_batches_hold_both_sides_of_almost_every_pair(tmp_path):
    """Batches of 32: a pair is parted only at a batch boundary. Unpaired (today's row
    shuffle) most pairs are apart, the measure this option exists to change."""
    path = _shard(tmp_path / "s.parquet", n_groups=120)

    def together(paired: bool) -> float:
        rows = _read(path, seed=5, paired=paired)
        groups = [f"v{i[1:4]}" for i in rows["id"]]  # the id names its group (unpaired: no column)
        batch = {i: n // 32 for n, i in enumerate(rows["id"])}
        reals = {g: i for i, g, lab in zip(rows["id"], groups, rows["label"]) if lab == 0}
        fakes = [(i, g) for i, g, lab in zip(rows["id"], groups, rows["label"])
                 if lab == 1 and g in reals]
        return np.mean([batch[i] == batch[reals[g]] for i, g in fakes])

    assert together(True) >= 0.9
    assert together(False) <= 0.3


def test_the_order_is_new_each_epoch_and_the_same_for_a_seed():
    groups = np.array([f"g{i % 30}" for i in range(90)], dtype=object)
    labels = np.array([int(i >= 30) for i in range(90)])
    a = paired_order(groups, labels, np.random.default_rng([1, 0, 0]))
    assert (a == paired_order(groups, labels, np.random.default_rng([1, 0, 0]))).all()
    assert not (a == paired_order(groups, labels, np.random.default_rng([1, 1, 0]))).all()
    assert sorted(a) == list(range(90))  # every row once


def test_off_the_stream_is_unchanged(tmp_path):
    """``paired: false`` reads and permutes exactly as before (no group column, same rows)."""
    path = _shard(tmp_path / "s.parquet")
    rows = _read(path, seed=3, paired=False)
    assert "group" not in rows
    table = pq.read_table(path, columns=["image", "label", "id"])
    expected = table.take(np.random.default_rng([3, 0, 0]).permutation(table.num_rows))
    assert rows["id"] == expected.column("id").to_pylist()


def test_paired_is_a_searchable_switch():
    assert load_config(None, ["data.paired=true"]).data.paired is True
    with pytest.raises(ConfigError, match="data.paired"):
        load_config(None, ["data.paired=sometimes"])

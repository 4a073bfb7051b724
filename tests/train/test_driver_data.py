"""The data a search reads is resolved once: every manifest read by the driver, none by a
trial (with shards at a URI, each would be a remote read, per trial)."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.config import load_config
from search.data import prepare, sets
from search.train import driver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def manifest_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every manifest read, wherever it comes from (the prepare module and its importers)."""
    reads: list[str] = []
    real = prepare.load_manifest

    def counted(shards):
        reads.append(str(shards))
        return real(shards)

    monkeypatch.setattr(prepare, "load_manifest", counted)
    monkeypatch.setattr(sets, "load_manifest", counted)
    return reads


def test_resolving_reads_each_manifest_once(demo_shards, manifest_reads):
    cfg = load_config(EXAMPLES / "tiny.yaml", [f"data.shards={demo_shards}",
                                               f"data.extra_sources={{b: {demo_shards}}}"])
    data = driver.resolve_data(cfg)
    assert len(manifest_reads) == 2  # the training set and the one extra source
    assert data.train.location == str(demo_shards.resolve())
    assert data.train.rows("val") == sum(data.train.manifest["counts"]["val"].values()) > 0
    assert set(data.extra) == {"b"}


@pytest.mark.ray
def test_a_trial_reads_no_manifest(demo_shards, ray_cluster, manifest_reads):
    """Three trials' datasets built from the search's resolved data: not one manifest read
    (before, five per trial: the shards, the extra sources, the cache check, the train
    split's counts and each split's file list)."""
    cfg = load_config(EXAMPLES / "tiny.yaml", [f"data.shards={demo_shards}",
                                               f"data.extra_sources={{b: {demo_shards}}}"])
    data = driver.resolve_data(cfg)
    manifest_reads.clear()
    for params in ({"ratio": "1:1"}, {"ratio": "1:2"}, {"lr": 0.01}):
        datasets = driver.build_datasets(cfg.with_params(params), data)
        assert set(datasets) == {"train", "val", "val@b"}
    assert manifest_reads == []
    # Without the resolved data (deepfake-search train outside a search) it is read here.
    driver.build_datasets(cfg)
    assert len(manifest_reads) == 2


def test_an_extra_source_prepared_at_another_size_is_named():
    """CIPLAB prepared at 224 px beside training shards at 64 px: scored through another
    resize chain than training and predict use, which artefact-level inputs read. Warned,
    with the key and the --size that fixes it; the same size is silent."""
    from search.data.sets import PreparedSet
    from search.train.driver import warn_resize_mismatch

    def at(size: int) -> PreparedSet:
        return PreparedSet(f"/data/{size}", {"options": {"size": size}, "counts": {}})

    with pytest.warns(UserWarning, match=r"data\.extra_sources\.ciplab: /data/224 was prepared "
                                         r"at 224 px, the training shards at 64 px.*--size 64"):
        told = warn_resize_mismatch(at(64), {"ciplab": at(224), "same": at(64)})
    assert len(told) == 1
    assert warn_resize_mismatch(at(64), {"same": at(64)}) == []
    assert warn_resize_mismatch(PreparedSet("/old", {}), {"x": at(224)}) == []  # size unknown

"""The reader of a prepared set (search/data/manifest.py): its manifest parsed and checked, its
shards verified against their hashes, one hash for the set; and a reader that loads no writer."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from search.data import manifest as reader
from search.data.layouts import SourceError
from search.data.manifest import MANIFEST, VERIFIED, load_manifest, manifest_hash, verify_shards


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo set, prepared once for the module (each test damages a copy)."""
    from search.data.prepare import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("manifest")
    prepare(PrepareOptions(layout="demo", source=str(root / "source"), out=str(root / "shards"),
                           size=32, demo_images=40, seed=0, workers=1, shard_mb=0.01),
            progress=False)
    return root / "shards"


@pytest.fixture
def shards(prepared: Path, tmp_path: Path) -> Path:
    """A copy of the prepared set this test may change."""
    return Path(shutil.copytree(prepared, tmp_path / "shards"))


def _first_shard(folder: Path) -> Path:
    return folder / load_manifest(folder)["shards"][0]["file"]


def test_an_intact_set_verifies_and_its_hash_is_over_the_shards_hashes(shards: Path) -> None:
    manifest = verify_shards(shards)
    assert len(manifest["shards"]) > 3  # several shards per split, so each split is exercised
    assert (shards / VERIFIED).is_file()  # the hash cache, written after a full check
    joined = "\n".join(f"{s['file']}:{s['sha256']}" for s in manifest["shards"])
    assert manifest_hash(shards) == hashlib.sha256(joined.encode()).hexdigest()


def test_a_changed_byte_of_a_shard_is_caught_by_its_hash(shards: Path) -> None:
    verify_shards(shards)  # cached as checked: the change below must still be seen
    shard = _first_shard(shards)
    data = bytearray(shard.read_bytes())
    data[100] ^= 1  # same size, same footer: only the hash tells
    shard.write_bytes(bytes(data))
    assert verify_shards(shards, hashes=False)["shards"]  # the cheap check cannot see it
    with pytest.raises(SourceError, match=f"{shard.name} does not match its SHA-256"):
        verify_shards(shards)


def test_a_missing_or_truncated_shard_is_named(shards: Path) -> None:
    shard = _first_shard(shards)
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(SourceError, match=rf"{shard.name} is \d+ bytes, the manifest says"):
        verify_shards(shards, hashes=False)
    shard.unlink()
    with pytest.raises(SourceError, match=f"{shard.name} is listed in .* but missing"):
        verify_shards(shards, hashes=False)


def test_counts_that_disagree_with_the_shards_are_refused(shards: Path) -> None:
    manifest = json.loads((shards / MANIFEST).read_text())
    manifest["counts"]["train"]["REAL"] += 1
    (shards / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SourceError, match="counts .* train images but its shards hold"):
        verify_shards(shards, hashes=False)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "is not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"shards": []}', "lacks counts"),
    ('{"counts": {}, "shards": [{"file": "../x.parquet", "split": "train", "rows": 1, '
     '"sha256": ""}]}', "malformed shard entry"),
])
def test_a_damaged_manifest_is_named_with_the_fix(tmp_path: Path, text: str,
                                                  message: str) -> None:
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(SourceError, match=message):
        load_manifest(tmp_path)


def test_a_folder_without_a_manifest_says_prepare_first(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found: prepare the data first"):
        load_manifest(tmp_path)


def test_prepare_re_exports_the_readers_names() -> None:
    """Older imports (``from search.data.prepare import load_manifest``) get the reader's."""
    import search.data.prepare as writer

    for name in ("load_manifest", "manifest_hash", "verify_shards", "MAX_SIZE", "STAGING_PREFIX"):
        assert getattr(writer, name) is getattr(reader, name)


def test_reading_a_prepared_set_loads_no_writer() -> None:
    """The reader and the set it feeds (sets) import none of prepare's modules: a model
    folder, scoring or export reads shards without the decode pool, the lock or the writer."""
    code = ("import json, sys, search.data.manifest, search.data.sets\n"
            "print(json.dumps(sorted(m for m in sys.modules if m in ("
            "'search.data.prepare', 'search.data._decode', 'search.data._out_folder', "
            "'search.data._shard_writer', 'search.data._options'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

"""The bad-input corpus (bench/robustness.py): every kind gets a clear error or a reported
skip at every entry point, and results/robustness.md is exactly what the corpus gives."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.robustness import TABLE, Outcome, render, run_corpus


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    return run_corpus(tmp_path_factory.mktemp("robustness") / "corpus")


def test_every_bad_input_gets_its_outcome(outcomes: list[Outcome]) -> None:
    wrong = [f"{o.kind} @ {o.entry}: got {o.got}, expected {o.expect}: {o.message}"
             for o in outcomes if not o.ok]
    assert not wrong, "\n".join(wrong)
    assert len({o.kind for o in outcomes}) >= 36
    entries = {o.entry for o in outcomes}
    for entry in ("prepare (folders)", "prepare (real_vs_fake)", "prepare (deepfake_faces)",
                  "predict", "export"):
        assert entry in entries


def test_errors_name_the_file_or_key(outcomes: list[Outcome]) -> None:
    """An error message names what is wrong: the file (a path), the config key (or
    ``seed``, or the override) or the command-line option."""
    for o in outcomes:
        if o.expect == "error":
            head = o.message.split(" must ")[0]
            assert "<tmp>/" in o.message or "." in head or "unknown" in o.message or \
                head.endswith("config: seed") or "override '" in o.message or \
                re.search(r"(^|\s)--[a-z]", o.message), o


def test_table_is_current(outcomes: list[Outcome]) -> None:
    """results/robustness.md is regenerated from this very corpus (python -m bench.robustness)."""
    assert TABLE.read_text() == render(outcomes), (
        "results/robustness.md is stale: run python -m bench.robustness")


def test_outcome_needs_a_message_for_errors_and_skips() -> None:
    """The checker itself can fail: a silent skip or a wrong outcome is not ok."""
    assert not Outcome("k", "e", "skipped", "skipped", "").ok
    assert not Outcome("k", "e", "error", "traceback KeyError", "x").ok
    assert Outcome("k", "e", "kept", "kept", "").ok


def test_prepare_rerun_replaces_only_its_own_files(tmp_path: Path, frames: Path) -> None:
    """A re-run into the same --out replaces the earlier shards; a user's file there is
    refused before any decoding and is left as it was."""
    from search.data.layouts import SourceError
    from search.data.prepare import PrepareOptions, prepare

    out = tmp_path / "out"
    opts = PrepareOptions(layout="folders", source=str(frames), out=str(out), size=32,
                          splits=(0.34, 0.33, 0.33), seed=0)
    first = prepare(opts, progress=False).manifest
    again = prepare(opts, progress=False).manifest
    assert [s["sha256"] for s in first["shards"]] == [s["sha256"] for s in again["shards"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", *(s["file"] for s in again["shards"])])
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SourceError, match="notes.txt"):
        prepare(opts, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "manifest.json").read_text())["shards"] == again["shards"]


def test_shard_hashes_are_checked_once_and_cached(tmp_path: Path, frames: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import search.data.manifest as reader
    import search.data.prepare as prep

    out = tmp_path / "out"
    prep.prepare(prep.PrepareOptions(layout="folders", source=str(frames), out=str(out), size=32,
                                     splits=(0.34, 0.33, 0.33)), progress=False)
    hashed: list[Path] = []
    real = reader.file_sha256  # verify_shards hashes through the reader's own name
    monkeypatch.setattr(reader, "file_sha256", lambda p: hashed.append(p) or real(p))
    prep.verify_shards(out)
    n = len(json.loads((out / "manifest.json").read_text())["shards"])
    assert len(hashed) == n
    prep.verify_shards(out)
    assert len(hashed) == n  # cached by (size, mtime): not hashed again
    shard = out / "train-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))  # a new mtime: hashed again, and refused
    with pytest.raises(prep.SourceError, match="does not match its SHA-256"):
        prep.verify_shards(out)

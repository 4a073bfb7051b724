"""prepare against a hostile or tired user (issue 22): two runs into one --out, an
interrupted run, a stale staging folder, option values out of range, byte-identical
images, an oversized metadata field and HEIC photos.

The concurrency tests run real ``deepfake-search prepare`` processes on a few dozen tiny
images; a run is held at a chosen point by a wrapper (it waits for a file the test writes)
instead of a fixed sleep, so the overlap is certain, not timing luck.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.cli import main as cli
from search.data.layouts import SourceError
from search.data.prepare import LOCK, STAGING_PREFIX, PrepareOptions, prepare, verify_shards

# A prepare process held at one point: it runs ``deepfake-search ARGV`` with
# search.data.prepare.<WHERE> wrapped to write MARKER (its pid) and wait until GO exists
# (prepare calls its steps by the names it imports, so they are patched there).
HELD = """
import os, sys, time
from pathlib import Path
import search.data.prepare as prep
from search.cli import main
where, marker, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
real = getattr(prep, where)
def held(*args, **kwargs):
    marker.write_text(str(os.getpid()))
    while not go.exists():
        time.sleep(0.02)
    return real(*args, **kwargs)
setattr(prep, where, held)
sys.exit(main(sys.argv[4:]))
"""
CLI = "import sys; from search.cli import main; sys.exit(main(sys.argv[1:]))"


def _jpeg(seed: int, size: int = 40) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _source(root: Path, n: int = 12) -> Path:
    for label, offset in (("real", 0), ("fake", 1000)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / label / f"{label}{i:03d}.jpg").write_bytes(_jpeg(offset + i))
    return root


def _argv(src: Path, out: Path) -> list[str]:
    return ["prepare", "--layout", "folders", "--source", str(src), "--out", str(out),
            "--size", "32", "--workers", "1", "--quiet"]


def _held(where: str, argv: list[str], tmp: Path, *,
          sigint_ignored: bool = False) -> tuple[subprocess.Popen, Path, Path]:
    """``sigint_ignored``: started as ``nohup ... &`` starts it, SIGINT ignored."""
    marker, go = tmp / f"held-{where}", tmp / f"go-{where}"
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    proc = subprocess.Popen([sys.executable, "-c", HELD, where, str(marker), str(go), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=ignore)
    deadline = time.time() + 120
    while not marker.exists():  # it holds the lock from before it decodes until it is done
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the held prepare never reached its hold point"
        time.sleep(0.02)
    return proc, marker, go


def _consistent(out: Path) -> dict:
    """``out`` is one complete prepared set: the shards its manifest lists, nothing else."""
    manifest = verify_shards(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", ".verified.json", *(s["file"] for s in manifest["shards"])])
    return manifest


# ------------------------------------------------------------------ the lock on --out
def test_a_second_prepare_into_the_same_out_is_refused_naming_the_first(tmp_path: Path) -> None:
    src_a, src_b = _source(tmp_path / "a"), _source(tmp_path / "b", n=8)
    out = tmp_path / "out"
    first, _, go = _held("decode_all", _argv(src_a, out), tmp_path)
    try:
        second = subprocess.run([sys.executable, "-c", CLI, *_argv(src_b, out)],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip()
        assert err.startswith("deepfake-search prepare: error: ") and "\n" not in err, err
        assert f"--out {out} is being written by another prepare (pid {first.pid}" in err, err
        assert "Traceback" not in err
    finally:
        go.write_text("")
    out_a, err_a = first.communicate(timeout=120)
    assert first.returncode == 0, err_a
    manifest = _consistent(out)
    assert sum(s["rows"] for s in manifest["shards"]) == 24  # the first run's set, whole
    assert manifest["options"]["source"] == str(src_a)


def test_two_prepares_started_together_leave_one_consistent_set(tmp_path: Path) -> None:
    """No hold: two real processes started at once into one folder. Each either succeeds or
    is refused by the lock, never both writing; the folder is one complete set."""
    src_a, src_b = _source(tmp_path / "a"), _source(tmp_path / "b", n=8)
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-c", CLI, *_argv(src, out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for src in (src_a, src_b)]
    done = [(p.wait(timeout=180), p.communicate()[1]) for p in procs]
    for code, err in done:
        assert code == 0 or (code == 2 and "is being written by another prepare" in err), err
    assert any(code == 0 for code, _ in done)
    manifest = _consistent(out)
    rows = sum(s["rows"] for s in manifest["shards"])
    winner = src_a if rows == 24 else src_b
    assert manifest["options"]["source"] == str(winner) and rows in (24, 16)


def test_sigint_or_sigterm_while_writing_leaves_no_staging_folder(tmp_path: Path) -> None:
    """Interrupted while its shards are written (its staging folder exists): the run ends
    with 130 (SIGINT) or 143 (SIGTERM), the earlier set in --out is untouched, and neither
    a hidden .prepare-* folder nor the lock file is left. Also for a run started with SIGINT
    ignored (``nohup ... &``): a SIGTERM still ends it (it used to be lost: the run waited on)."""
    src = _source(tmp_path / "src")
    out = tmp_path / "out"
    assert cli(_argv(src, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for sig, code, ignored in ((signal.SIGINT, 130, False), (signal.SIGTERM, 143, False),
                               (signal.SIGTERM, 143, True)):
        proc, marker, _ = _held("write_shards", _argv(src, out), tmp_path, sigint_ignored=ignored)
        assert [p.name for p in out.glob(f"{STAGING_PREFIX}*")], "held before its staging exists"
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=120)
        finally:  # a run the signal did not end is not left waiting for ever
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == code, err
        assert "Traceback" not in err, err
        assert not list(out.glob(f"{STAGING_PREFIX}*")) and not (out / LOCK).exists()
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        marker.unlink()


def test_a_killed_runs_staging_folder_and_lock_are_taken_over(tmp_path: Path) -> None:
    """A run SIGKILLed mid-write leaves its staging folder and its lock file (no longer
    held: the kernel let go); the next run takes the lock and removes that folder."""
    src = _source(tmp_path / "src")
    out = tmp_path / "out"
    proc, _, _ = _held("write_shards", _argv(src, out), tmp_path)
    proc.kill()
    proc.wait(timeout=60)
    assert list(out.glob(f"{STAGING_PREFIX}*")) and (out / LOCK).exists()
    assert cli(_argv(src, out)) == 0
    assert not list(out.glob(f"{STAGING_PREFIX}*")) and not (out / LOCK).exists()
    _consistent(out)


def test_a_run_that_fails_leaves_no_empty_out_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "fake").mkdir(parents=True)
    (src / "fake" / "a.jpg").write_bytes(_jpeg(1))
    with pytest.raises(SourceError, match="no usable REAL image"):
        prepare(PrepareOptions(layout="folders", source=str(src), out=str(tmp_path / "out"),
                               size=32), progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ option values
@pytest.mark.parametrize(("flags", "fragment"), [
    (["--group-regex", "("], "--group-regex '(' is not a valid regular expression"),
    (["--splits", "nan,0.2,0.2"], "the train fraction must be a finite number"),
    (["--splits", "0.6,inf,0.2"], "the validation fraction must be a finite number"),
    (["--splits", "0.8,-0.1,0.3"], "the validation fraction must be a finite number of 0 or more"),
    (["--splits", "1,0,0"], "leaves the validation and the test split empty"),
    (["--splits", "0.8,0.2,0"], "leaves the test split empty"),
    (["--splits", "0.5,0.5"], "must be three fractions"),
    (["--workers", "-1"], "--workers -1 must be 0 (one decode process per core)"),
    (["--workers", "100000"], "from 1 to 256"),
    (["--size", "100000"], "--size 100000 is above the maximum of 4096 px"),
    (["--quality", "200"], "--quality 200 is not a JPEG quality: give 1 to 100"),
    (["--quality", "0"], "--quality must be a positive number"),
    (["--shard-mb", "inf"], "--shard-mb must be a positive number, not inf"),
    (["--seed", "-1"], "--seed -1 must be 0 or more"),
    (["--class-map", "original=banana"], "must map a folder name to real or fake"),
])
def test_bad_option_values_are_errors_naming_the_option(flags: list[str], fragment: str,
                                                      tmp_path: Path, capsys) -> None:
    argv = ["prepare", "--layout", "folders", "--source", str(tmp_path / "src"),
            "--out", str(tmp_path / "out"), *flags]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepfake-search prepare: error: ") and fragment in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize("layout", ["deepfake_faces", "demo"])
@pytest.mark.parametrize("flag", [["--class-map", "original=real"], ["--group-regex", "(\\w+)_"]])
def test_name_options_are_refused_where_metadata_decides(layout: str, flag: list[str],
                                                        tmp_path: Path, capsys) -> None:
    """--class-map and --group-regex would be ignored by these layouts (labels and groups
    come from metadata.csv) yet recorded in the manifest: refused instead."""
    assert cli(["prepare", "--layout", layout, "--source", str(tmp_path / "src"),
                "--out", str(tmp_path / "out"), *flag]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} does not apply to --layout {layout}" in err and "metadata.csv" in err, err


# ------------------------------------------------------------------ byte-identical images
def test_byte_identical_images_are_kept_once_and_never_under_both_labels(tmp_path: Path) -> None:
    src = _source(tmp_path / "src", n=10)
    (src / "real" / "copy_of_real003.jpg").write_bytes((src / "real" / "real003.jpg").read_bytes())
    (src / "real" / "sub").mkdir()
    (src / "real" / "sub" / "again_real003.jpg").write_bytes((src / "real" / "real003.jpg").read_bytes())
    (src / "fake" / "also_real005.jpg").write_bytes((src / "real" / "real005.jpg").read_bytes())
    res = prepare(PrepareOptions(layout="folders", source=str(src), out=str(tmp_path / "out"),
                                 size=32, splits=(0.4, 0.3, 0.3), seed=0), progress=False)
    skipped = {s["path"]: s["reason"] for s in res.manifest["skipped"]}
    assert skipped == {
        "real/real003.jpg": "duplicate image: same bytes as real/copy_of_real003.jpg (kept that one)",
        "real/sub/again_real003.jpg": "duplicate image: same bytes as real/copy_of_real003.jpg "
                                      "(kept that one)",
        "fake/also_real005.jpg": "same bytes labelled REAL and FAKE: real/real005.jpg (REAL) and "
                                 "fake/also_real005.jpg (FAKE); both dropped, fix the label of one",
        "real/real005.jpg": "same bytes labelled REAL and FAKE: real/real005.jpg (REAL) and "
                            "fake/also_real005.jpg (FAKE); both dropped, fix the label of one",
    }
    assert res.manifest["skipped_by_reason"] == {"duplicate image": 2,
                                                 "same bytes labelled REAL and FAKE": 2}
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    rows = [r for s in res.manifest["shards"] for r in pq.read_table(out / s["file"]).to_pylist()]
    ids = [r["id"] for r in rows]
    # REAL: 10 + 2 copies - 2 copies - real005; FAKE: 10 + also_real005 - also_real005
    assert len(ids) == 9 + 10 and "real/copy_of_real003.jpg" in ids
    # every image is in exactly one split: no two rows hold the same pixels
    assert len({r["image"] for r in rows}) == len(rows)
    assert "2  duplicate image" in res.summary()


def test_identical_files_in_the_sources_own_splits_are_kept_once(tmp_path: Path) -> None:
    """real_vs_fake keeps the source's split: the same file in Train and in Test would be a
    test image the model trained on. One copy stays (in one split), the other is skipped."""
    root = tmp_path / "rvf" / "Dataset"
    for split in ("Train", "Validation", "Test"):
        for label, offset in (("Real", 0), ("Fake", 500)):
            (root / split / label).mkdir(parents=True)
            for i in range(3):
                seed = offset + 10 * ("Train", "Validation", "Test").index(split) + i
                (root / split / label / f"{i}.jpg").write_bytes(_jpeg(seed))
    (root / "Test" / "Fake" / "leak.jpg").write_bytes((root / "Train" / "Fake" / "0.jpg").read_bytes())
    res = prepare(PrepareOptions(layout="real_vs_fake", source=str(tmp_path / "rvf"),
                                 out=str(tmp_path / "out"), size=32), progress=False)
    assert [(s["path"], s["reason"].split(":")[0]) for s in res.manifest["skipped"]] == [
        ("Train/Fake/0.jpg", "duplicate image")]
    assert res.manifest["counts"]["train"]["FAKE"] == 2 and res.manifest["counts"]["test"]["FAKE"] == 4


# ------------------------------------------------------------------ metadata.csv, HEIC
def _dff(root: Path, extra_row: list[str] | None = None) -> Path:
    faces = root / "faces_224"
    faces.mkdir(parents=True)
    rows = []
    for i in range(4):
        for label, offset in (("REAL", 0), ("FAKE", 100)):
            name = f"{label.lower()}{i}"
            (faces / f"{name}.jpg").write_bytes(_jpeg(offset + i))
            rows.append([f"{name}.mp4", 40, 40, label, ""])
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["videoname", "original_width", "original_height", "label", "original"])
        w.writerows(rows[:5] + ([extra_row] if extra_row else []) + rows[5:])
    return root


def test_a_200_kb_metadata_field_is_an_error_naming_the_file_and_line(tmp_path: Path, capsys) -> None:
    src = _dff(tmp_path / "dff", ["x.mp4", 40, 40, "FAKE", "y" * 200_000])
    assert cli(["prepare", "--layout", "deepfake_faces", "--source", str(src),
                "--out", str(tmp_path / "out"), "--size", "32", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{src / 'metadata.csv'}:7 has a field over 131072 characters" in err, err
    assert "\n" not in err and "Error" not in err.split(": error: ", 1)[1]


def test_heic_is_refused_saying_to_convert(tmp_path: Path) -> None:
    src = _source(tmp_path / "src", n=3)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(range(256)) * 4
    (src / "fake" / "IMG_0001.HEIC").write_bytes(heic)
    res = prepare(PrepareOptions(layout="folders", source=str(src), out=str(tmp_path / "out"),
                                 size=32), progress=False)
    (reason,) = [s["reason"] for s in res.manifest["skipped"] if s["path"] == "fake/IMG_0001.HEIC"]
    assert reason.startswith("HEIC/HEIF image: not supported: convert it to JPEG or PNG"), reason
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped_by_reason"] == {
        "HEIC/HEIF image": 1}

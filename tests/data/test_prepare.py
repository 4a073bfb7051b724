"""prepare: real data, the other layouts, determinism, streaming back, and bad input."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from search.cli import main as cli
from search.data.layouts import SourceError, scan_source
from search.data.prepare import PrepareOptions, assign_splits, load_manifest, prepare, select


def _rows(out: Path) -> list[dict]:
    manifest = load_manifest(out)
    rows = []
    for s in manifest["shards"]:
        rows += pq.read_table(out / s["file"]).to_pylist()
    return rows


@pytest.fixture(scope="module")
def dff_prepared(tmp_path_factory, deepfake_faces):
    out = tmp_path_factory.mktemp("dff")
    result = prepare(PrepareOptions(layout="deepfake_faces", source=str(deepfake_faces),
                                    out=str(out), size=32, limit=1500, seed=3), progress=False)
    return out, result


def test_deepfake_faces_counts_groups_and_stratification(dff_prepared, deepfake_faces):
    out, result = dff_prepared
    manifest = result.manifest
    rows = _rows(out)
    assert len(rows) == sum(s["rows"] for s in manifest["shards"]) == 1500
    # counts in the manifest are the rows on disk
    counts = Counter((r["split"], r["label"]) for r in rows)
    for split, c in manifest["counts"].items():
        assert c == {"REAL": counts[(split, 0)], "FAKE": counts[(split, 1)]}
    # the limit keeps the source's 1:2 balance
    assert sum(c["FAKE"] for c in manifest["counts"].values()) == 1000
    # a group (a REAL video and the fakes made from it) never straddles splits
    splits_of = {}
    for r in rows:
        splits_of.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    # fakes are grouped with their original: check against metadata.csv
    meta = {Path(m["videoname"]).stem: m for m in csv.DictReader(open(deepfake_faces / "metadata.csv"))}
    for r in rows[:200]:
        m = meta[Path(r["id"]).stem]
        expected = Path(m["original"]).stem if m["label"] == "FAKE" else Path(m["videoname"]).stem
        assert r["group"] == expected
    # 6:2:2 and stratified within a few percent
    n = len(rows)
    for split, frac in zip(("train", "val", "test"), (0.6, 0.2, 0.2)):
        part = [r for r in rows if r["split"] == split]
        assert abs(len(part) / n - frac) < 0.03, split
        assert abs(sum(r["label"] for r in part) / len(part) - 2 / 3) < 0.03, split
    # shards are what the manifest says they are
    for s in manifest["shards"]:
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    assert manifest["options"]["size"] == 32 and manifest["skipped"] == []
    for r in rows[:20]:
        img = Image.open(io.BytesIO(r["image"]))
        assert img.size == (32, 32) == (r["width"], r["height"]) and img.mode == "RGB"


def test_deterministic_and_seed_sensitive(tmp_path, deepfake_faces):
    def shas(out, seed):
        prepare(PrepareOptions(layout="deepfake_faces", source=str(deepfake_faces), out=str(out),
                               size=32, limit=300, seed=seed, workers=2), progress=False)
        return [s["sha256"] for s in load_manifest(out)["shards"]]

    a, b = shas(tmp_path / "a", 1), shas(tmp_path / "b", 1)
    assert a == b
    assert (tmp_path / "a" / "manifest.json").read_bytes().replace(b"/a", b"/b") == \
        (tmp_path / "b" / "manifest.json").read_bytes()
    assert shas(tmp_path / "c", 2) != a


def test_at_size_keeps_original_bytes_and_ray_streams_same_pixels(tmp_path, deepfake_faces, ray_cluster):
    out = tmp_path / "s224"
    prepare(PrepareOptions(layout="deepfake_faces", source=str(deepfake_faces), out=str(out),
                           size=224, limit=120, seed=0, shard_mb=1), progress=False)
    manifest = load_manifest(out)
    assert manifest["reencoded"] == 0
    rows = _rows(out)
    for r in rows[:30]:  # already 224x224: bytes kept verbatim, no recompression
        assert r["image"] == (deepfake_faces / r["id"]).read_bytes()
    ds = ray_cluster.data.read_parquet([str(out / s["file"]) for s in manifest["shards"]])
    streamed = {row["id"]: row["image"] for row in ds.iter_rows()}
    assert len(streamed) == len(rows)
    for r in rows:
        a = np.asarray(Image.open(io.BytesIO(streamed[r["id"]])))
        b = np.asarray(Image.open(deepfake_faces / r["id"]).convert("RGB"))
        assert np.array_equal(a, b)


def _frames_tree(frames: Path, root: Path, layout: str) -> Path:
    files = {lab: sorted((frames / lab).glob("*.png")) for lab in ("REAL", "FAKE")}
    if layout == "real_vs_fake":
        for lab, names in files.items():
            for i, f in enumerate(names):
                split = ("Train", "Validation", "Test")[i % 3]
                dst = root / "Dataset" / split / lab.capitalize() / f.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dst)
    else:  # folders, with odd class-name case and a mapped name
        for lab, names in files.items():
            for f in names:
                cls = "Real" if lab == "REAL" else "manipulated"
                dst = root / cls / "sub" / f.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dst)
    return root


def test_real_vs_fake_keeps_its_split(tmp_path, frames):
    src = _frames_tree(frames, tmp_path / "rvf", "real_vs_fake")
    res = prepare(PrepareOptions(layout="real_vs_fake", source=str(src), out=str(tmp_path / "o"),
                                 size=64), progress=False)
    rows = _rows(tmp_path / "o")
    assert len(rows) == 32 and not res.manifest["skipped"]
    for r in rows:
        expected = {"Train": "train", "Validation": "val", "Test": "test"}[r["id"].split("/")[0]]
        assert r["split"] == expected
        assert r["label"] == (1 if "/Fake/" in r["id"] else 0)


def test_folders_with_class_map(tmp_path, frames):
    src = _frames_tree(frames, tmp_path / "fold", "folders")
    with pytest.raises(SourceError, match="no usable FAKE"):
        prepare(PrepareOptions(layout="folders", source=str(src), out=str(tmp_path / "x"), size=64),
                progress=False)
    # Two groups cannot fill three splits: refused (issue 28), not written with an empty one.
    with pytest.raises(SourceError, match="leaves the validation split with no image"):
        prepare(PrepareOptions(layout="folders", source=str(src), out=str(tmp_path / "o"),
                               size=64, class_map={"manipulated": "fake"},
                               group_regex=r"/(\w+?)_"), progress=False)
    scan = scan_source("folders", str(src), group_regex=r"/(\w+?)_",
                       class_map={"manipulated": "fake"})
    assert sum(r.label == 0 for r in scan.records) == 12
    assert sum(r.label == 1 for r in scan.records) == 20
    groups = {}
    for r, split in zip(scan.records, assign_splits(scan.records, (0.6, 0.2, 0.2), 0)):
        groups.setdefault(r.group, set()).add(split)  # by source prefix (FF, CDFv2), never split
    assert set(groups) == {"FF", "CDFv2"} and all(len(v) == 1 for v in groups.values())


def _save(img: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def test_bad_input_corpus_is_counted_with_reasons(tmp_path):
    src = tmp_path / "bad"
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    for i in range(4):  # enough good images of both classes, all different (copies are dropped)
        _save(Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)), src / "real" / f"ok{i}.jpg")
        _save(Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)), src / "FAKE" / f"ok{i}.png")
    # odd but valid images: converted to RGB, kept
    _save(rgb.convert("L"), src / "real" / "grey.png")
    _save(rgb.convert("RGBA"), src / "real" / "rgba.png")
    _save(rgb.convert("P"), src / "real" / "palette.png")
    _save(rgb.convert("CMYK"), src / "fake" / "cmyk.jpg")
    _save(Image.fromarray((rng.integers(0, 65535, (40, 40))).astype(np.uint16)), src / "fake" / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    _save(Image.new("RGB", (40, 20), (200, 10, 10)), src / "fake" / "rotated.jpg", exif=exif)
    # bad ones
    (src / "real" / "zero.jpg").write_bytes(b"")
    (src / "real" / "notes.txt").write_text("not an image")
    (src / "fake" / "garbage.jpg").write_bytes(rng.bytes(500))
    buf = io.BytesIO()
    rgb.save(buf, "JPEG")
    (src / "fake" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _save(Image.new("RGB", (1200, 1000)), src / "fake" / "bomb.png")
    _save(rgb, src / "unknown_class" / "x.jpg")
    _save(rgb, src / "loose.jpg")

    res = prepare(PrepareOptions(layout="folders", source=str(src), out=str(tmp_path / "o"),
                                 size=32, max_pixels=1_000_000), progress=False)
    reasons = {s["path"]: s["reason"] for s in res.manifest["skipped"]}
    expected = {
        "real/zero.jpg": "zero-byte",
        "real/notes.txt": "not an image",
        "fake/garbage.jpg": "not an image",
        "fake/truncated.jpg": "truncated",
        "fake/bomb.png": "decompression bomb",
        "unknown_class/x.jpg": "unknown label folder",
        "loose.jpg": "outside a class folder",
    }
    assert set(reasons) == set(expected)
    for path, fragment in expected.items():
        assert fragment in reasons[path], (path, reasons[path])
    rows = {r["id"]: r for r in _rows(tmp_path / "o")}
    for name in ("real/grey.png", "real/rgba.png", "real/palette.png", "fake/cmyk.jpg",
                 "fake/deep16.png", "fake/rotated.jpg"):
        img = Image.open(io.BytesIO(rows[name]["image"]))
        assert img.mode == "RGB" and img.size == (32, 32), name
    assert len(rows) == 8 + 6
    assert sum(res.manifest["skipped_by_reason"].values()) == len(expected)
    assert "skipped 7" in res.summary()


def _prepare_with_metadata(src: Path, rows: list[dict], out: Path):
    """Write ``rows`` as src/metadata.csv and prepare src (deepfake_faces layout, 32 px)."""
    with open(src / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return prepare(PrepareOptions(layout="deepfake_faces", source=str(src), out=str(out), size=32),
                   progress=False)


def test_bad_metadata_rows(tmp_path, deepfake_faces):
    src = tmp_path / "dff"
    (src / "faces_224").mkdir(parents=True)
    rows = list(csv.DictReader(open(deepfake_faces / "metadata.csv")))
    real = [r for r in rows if r["label"] == "REAL"][:3]
    fake = [r for r in rows if r["label"] == "FAKE"][:3]
    for r in real + fake:
        stem = Path(r["videoname"]).stem
        shutil.copy(deepfake_faces / "faces_224" / f"{stem}.jpg", src / "faces_224")
    shutil.copy(deepfake_faces / "faces_224" / f"{Path(real[0]['videoname']).stem}.jpg",
                src / "faces_224" / "orphan.jpg")
    out_rows = real + fake + [
        {**real[0]},  # duplicate id
        {**fake[0], "videoname": "missing.mp4"},
        {**fake[1], "videoname": "weird.mp4", "label": "MAYBE"},
    ]
    shutil.copy(src / "faces_224" / f"{Path(fake[1]['videoname']).stem}.jpg", src / "faces_224" / "weird.jpg")
    res = _prepare_with_metadata(src, out_rows, tmp_path / "o")
    reasons = [s["reason"] for s in res.manifest["skipped"]]
    assert any("duplicate id" in r for r in reasons)
    assert any("missing file" in r for r in reasons)
    assert any("unknown label value 'MAYBE'" in r for r in reasons)
    assert any(s["path"] == "faces_224/orphan.jpg" and "no metadata row" in s["reason"]
               for s in res.manifest["skipped"])
    assert len(reasons) == 4  # weird.jpg is reported once, through its row
    assert sum(sum(c.values()) for c in res.manifest["counts"].values()) == 6


def test_same_name_in_two_formats_is_reported_not_dropped(tmp_path, deepfake_faces):
    """x.jpg beside x.png: one metadata row cannot say which, so one is kept and the other
    is listed in skipped (never silently shadowed)."""
    src = tmp_path / "dff"
    (src / "faces_224").mkdir(parents=True)
    rows = list(csv.DictReader(open(deepfake_faces / "metadata.csv")))
    picked = [r for r in rows if r["label"] == "REAL"][:2] + [r for r in rows if r["label"] == "FAKE"][:2]
    for r in picked:
        shutil.copy(deepfake_faces / "faces_224" / f"{Path(r['videoname']).stem}.jpg", src / "faces_224")
    twin = Path(picked[0]["videoname"]).stem
    Image.open(src / "faces_224" / f"{twin}.jpg").save(src / "faces_224" / f"{twin}.png")
    res = _prepare_with_metadata(src, picked, tmp_path / "o")
    assert [s["path"] for s in res.manifest["skipped"]] == [f"faces_224/{twin}.png"]
    assert "duplicate id" in res.manifest["skipped"][0]["reason"]
    assert sum(sum(c.values()) for c in res.manifest["counts"].values()) == 4


@pytest.mark.parametrize("limit", [1, 2, 5, 7, 10, 11])
def test_limit_is_never_exceeded_and_keeps_both_classes(limit):
    from search.data.layouts import Record

    # 3 REAL : 8 FAKE rounds to one too many for several limits without the correction.
    recs = [Record(Path(f"/x/{i}"), f"id{i}", int(i >= 3), f"g{i}") for i in range(11)]
    kept = select(recs, limit, None, seed=0)
    assert len(kept) <= max(limit, 2)
    assert {r.label for r in kept} == {0, 1}
    assert select(recs, limit, None, seed=0) == kept


def test_clear_errors_and_cli(tmp_path, capsys):
    with pytest.raises(SourceError, match="unknown layout 'kaggle'"):
        prepare(PrepareOptions(layout="kaggle", source=str(tmp_path)), progress=False)
    with pytest.raises(SourceError, match="deepfake_faces layout"):
        prepare(PrepareOptions(layout="deepfake_faces", source=str(tmp_path)), progress=False)
    assert cli(["prepare", "--layout", "folders", "--source", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_prepares_the_demo_at_64_px_by_default(tmp_path, capsys):
    """The demo is small by default (64 px), real sets at the study's 224 px."""
    out = tmp_path / "shards"
    assert cli(["prepare", "--layout", "demo", "--source", str(tmp_path / "src"), "--out", str(out),
                "--demo-images", "60", "--quiet"]) == 0
    manifest = load_manifest(out)
    assert manifest["image_size"] == 64 and manifest["layout"] == "demo"
    assert "prepared 60 images" in capsys.readouterr().out


def test_source_without_one_class_is_a_clear_error(tmp_path, frames):
    src = tmp_path / "only_fake"
    shutil.copytree(frames / "FAKE", src / "fake")
    with pytest.raises(SourceError, match="no usable REAL image"):
        prepare(PrepareOptions(layout="folders", source=str(src), out=str(tmp_path / "o"), size=32),
                progress=False)


def test_assign_splits_is_grouped_and_balanced():
    from search.data.layouts import Record

    recs = [Record(Path(f"/x/{g}_{i}"), f"{g}_{i}", int(i > 0), f"g{g}")
            for g in range(300) for i in range(1 + g % 3)]
    splits = assign_splits(recs, (0.6, 0.2, 0.2), seed=0)
    per_group = {}
    for r, s in zip(recs, splits):
        per_group.setdefault(r.group, set()).add(s)
    assert all(len(v) == 1 for v in per_group.values())
    c = Counter(splits)
    assert abs(c["train"] / len(recs) - 0.6) < 0.02
    assert splits == assign_splits(recs, (0.6, 0.2, 0.2), seed=0)


def test_demo_layout_through_prepare(demo_shards):
    manifest = json.loads((demo_shards / "manifest.json").read_text())
    total = {k: sum(c[k] for c in manifest["counts"].values()) for k in ("REAL", "FAKE")}
    assert total["FAKE"] == 2 * total["REAL"]
    assert manifest["image_size"] == 32

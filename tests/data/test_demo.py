"""Tests for the embedded synthetic demo data set (search/data/demo_painter.py, search/data/demo.py).

Besides layout and determinism, this checks that the set is a *useful* benchmark: a small CNN
learns it, a bad learning rate does not, and global colour statistics carry no label signal.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data.demo import ensure_demo_shards
from search.data.demo_painter import (
    DEFAULT_DIFFICULTY,
    FACES_DIR,
    GRID_AMPLITUDE,
    GRIDS,
    METADATA_COLUMNS,
    add_grid,
    make_fake,
    make_real,
    write_demo_source,
)
from search.data.images import decode_to_array


def _read_meta(root: Path) -> list[dict[str, str]]:
    with (root / "metadata.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- demo shards


def test_ensure_demo_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured shards are kept; without any, the demo set is prepared once at ``size``."""
    from search.config import load_config

    monkeypatch.setenv("DEEPFAKE_SEARCH_HOME", str(tmp_path))
    given = load_config(None, [f"data.shards={tmp_path / 'mine'}"])
    assert ensure_demo_shards(given) is given
    cfg = ensure_demo_shards(load_config(None), size=16)
    shards = tmp_path / "datasets" / "demo" / "shards"
    assert cfg.data.shards == str(shards) and (shards / "manifest.json").is_file()
    stamp = (shards / "manifest.json").stat().st_mtime_ns
    assert ensure_demo_shards(load_config(None), size=16).data.shards == str(shards)
    assert (shards / "manifest.json").stat().st_mtime_ns == stamp  # not prepared again


# --------------------------------------------------------------------------- layout


def test_layout_and_metadata(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    root = write_demo_source(tmp_path / "demo", n_images=30, size=48, seed=3)
    print(f"generated 30 images at 48 px in {time.perf_counter() - t0:.2f} s")
    assert root == tmp_path / "demo"
    with (root / "metadata.csv").open() as fh:
        assert fh.readline().strip() == ",".join(METADATA_COLUMNS)
    rows = _read_meta(root)
    assert len(rows) == 30
    assert [r["videoname"] for r in rows] == sorted(r["videoname"] for r in rows)
    reals = {r["videoname"] for r in rows if r["label"] == "REAL"}
    fakes = [r for r in rows if r["label"] == "FAKE"]
    assert len(reals) == 10 and len(fakes) == 20  # REAL:FAKE = 1:2
    assert {r["label"] for r in rows} == {"REAL", "FAKE"}
    for r in rows:
        assert r["videoname"].endswith(".mp4")
        if r["label"] == "REAL":
            assert r["original"] == ""
        else:
            assert r["original"] in reals
            # the FAKE belongs to the same identity as its source REAL
            assert r["videoname"].rsplit("_", 1)[0] == r["original"].rsplit("_", 1)[0]
        assert (r["original_width"], r["original_height"]) == ("48", "48")
        img = Image.open(root / FACES_DIR / (r["videoname"][:-4] + ".jpg"))
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (48, 48)
    for real in reals:
        assert sum(f["original"] == real for f in fakes) == 2
    assert len(list((root / FACES_DIR).iterdir())) == 30


@pytest.mark.parametrize(
    ("n_images", "fpr", "n_real", "n_fake"), [(10, 1, 5, 5), (7, 2, 2, 4), (5, 0, 5, 0)]
)
def test_counts(tmp_path: Path, n_images: int, fpr: int, n_real: int, n_fake: int) -> None:
    rows = _read_meta(write_demo_source(tmp_path, n_images=n_images, size=16, fakes_per_real=fpr))
    assert sum(r["label"] == "REAL" for r in rows) == n_real
    assert sum(r["label"] == "FAKE" for r in rows) == n_fake


def test_make_real_and_fake_arrays() -> None:
    real = make_real(np.random.default_rng(0), 40)
    assert real.shape == (40, 40, 3) and real.dtype == np.uint8
    assert real.std() > 10  # not a flat image
    fake = make_fake(real, np.random.default_rng(1), DEFAULT_DIFFICULTY)
    assert fake.shape == real.shape and fake.dtype == np.uint8
    assert not np.array_equal(fake, real)
    # the manipulation is local: the border (background) is left alone
    diff = np.abs(fake.astype(int) - real.astype(int)).mean(-1)
    assert diff[:3].mean() < 0.5 and diff[16:24, 12:28].mean() > diff[:3].mean()


def test_deterministic(tmp_path: Path) -> None:
    a = _files(write_demo_source(tmp_path / "a", n_images=12, size=32, seed=7))
    b = _files(write_demo_source(tmp_path / "b", n_images=12, size=32, seed=7))
    c = _files(write_demo_source(tmp_path / "c", n_images=12, size=32, seed=8))
    assert a == b
    assert a.keys() == c.keys()
    assert a["metadata.csv"] == c["metadata.csv"]
    assert all(a[k] != c[k] for k in a if k.endswith(".jpg"))


def test_difficulty_is_monotone() -> None:
    """Higher difficulty -> the fake departs less from its source REAL."""
    reals = [make_real(np.random.default_rng([5, i]), 48) for i in range(24)]
    dists = []
    for d in (0.0, 0.25, 0.5, 0.75, 1.0):
        diffs = [
            np.abs(make_fake(r, np.random.default_rng([6, i]), d).astype(float) - r).mean()
            for i, r in enumerate(reals)
        ]
        dists.append(float(np.mean(diffs)))
    print("mean |fake - real| by difficulty:", [round(x, 2) for x in dists])
    assert all(a > b for a, b in zip(dists, dists[1:], strict=False))


# --------------------------------------------------------------------------- grid (issue 13)


def _checker(h: int, w: int) -> np.ndarray:
    return 1 - 2 * ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2)


def _grid_level(img: np.ndarray) -> float:
    """The checkerboard's amplitude in an image: its grey level's projection on the grid."""
    grey = img.astype(float).mean(-1)
    return float((grey * _checker(*grey.shape)).mean())


def _decoded(root: Path, size: int) -> dict[str, tuple[str, np.ndarray]]:
    """Every image of a demo source as the worker decodes it at ``size``: stem -> (label, array)."""
    return {r["videoname"][:-4]: (r["label"], decode_to_array(
        (root / FACES_DIR / (r["videoname"][:-4] + ".jpg")).read_bytes(), size))
        for r in _read_meta(root)}


def test_add_grid_keeps_every_block_and_never_clips() -> None:
    """+/-amplitude on a checkerboard; each aligned 2x2 block keeps its sum (so its mean and
    colour), saturated blocks are left alone, nothing is drawn at random."""
    img = make_real(np.random.default_rng(4), 32)
    img[:4, :6] = 255  # a saturated corner, and a near-black row (headroom below amplitude)
    img[8, :] = 2
    out = add_grid(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    diff = out.astype(int) - img
    blocks = diff.reshape(16, 2, 16, 2, 3).sum(axis=(1, 3))
    assert (blocks == 0).all()  # every 2x2 block sums to what it did
    assert (diff[:4, :6] == 0).all()  # no headroom: no grid, no clipping
    assert np.abs(diff[8:10]).max() <= 2  # headroom 2: amplitude 2
    assert (np.abs(diff[12:]).max(axis=-1) <= GRID_AMPLITUDE).all()
    grey = diff[..., 0]
    assert (grey == diff[..., 1]).all() and (grey == diff[..., 2]).all()  # grey: luminance only
    assert (np.sign(grey) * _checker(32, 32) >= 0).all()  # +on even, -on odd pixels
    assert np.array_equal(add_grid(img), out)


@pytest.mark.parametrize("grid", ["fake", "real"])
def test_grid_is_in_the_written_jpegs_of_its_label_only(tmp_path: Path, grid: str) -> None:
    """At full size the grid survives the demo's JPEG on the images of its label (6.0 to 8.7
    grey levels of its 8, measured) and is absent from the others (|level| < 0.1)."""
    images = _decoded(write_demo_source(tmp_path, n_images=45, size=64, seed=2, grid=grid), 64)
    levels = {"REAL": [], "FAKE": []}
    for label, img in images.values():
        levels[label].append(_grid_level(img))
    marked, clean = levels[grid.upper()], levels["REAL" if grid == "fake" else "FAKE"]
    print(f"grid level on {grid}: {min(marked):.2f}..{max(marked):.2f}, "
          f"others {min(clean):.2f}..{max(clean):.2f}")
    assert min(marked) > GRID_AMPLITUDE / 2
    assert max(np.abs(clean)) < 1.0


@pytest.mark.parametrize(("full", "n_images"), [(32, 300), (64, 150)])
def test_the_grid_is_gone_after_the_workers_2x_downscale(tmp_path: Path, full: int,
                                                         n_images: int) -> None:
    """The same images with and without the grid, decoded as a trial at half the prepared size
    decodes them (JPEG draft + resize): no systematic difference is left (the mean over images
    is a fraction of a grey level at every pixel) where at full size it is the grid itself."""
    a = write_demo_source(tmp_path / "plain", n_images=n_images, size=full, seed=1)
    b = write_demo_source(tmp_path / "grid", n_images=n_images, size=full, seed=1, grid="fake")
    for size in (full, full // 2):
        plain, grid = _decoded(a, size), _decoded(b, size)
        diff = np.stack([grid[k][1].astype(float) - plain[k][1] for k in plain
                         if plain[k][0] == "FAKE"])
        mean = diff.mean(axis=0)  # what every gridded image shares: the detectable signal
        print(f"{full} -> {size} px: mean difference max {np.abs(mean).max():.3f}, "
              f"rms {np.sqrt((mean**2).mean()):.3f}; per image rms {np.sqrt((diff**2).mean()):.3f}")
        if size == full:
            assert np.sqrt((mean**2).mean()) > GRID_AMPLITUDE / 2
            assert (np.sign(mean.mean(-1)) == _checker(full, full)).all()
        else:  # measured rms 0.10 and 0.13, max 0.30 and 0.49 (JPEG rounding, averaged)
            assert np.sqrt((mean**2).mean()) < 0.25 and np.abs(mean).max() < 1.0
            assert np.sqrt((diff**2).mean()) < 1.5  # per image: JPEG rounding noise, 0.97


def test_grid_none_is_the_default_demo_and_leaves_the_other_label_alone(tmp_path: Path) -> None:
    """grid="none" is byte-identical to the demo made without the option, and a grid changes
    only the files of its label (it draws nothing from the images' generators)."""
    kwargs = {"n_images": 15, "size": 32, "seed": 4}
    default = _files(write_demo_source(tmp_path / "default", **kwargs))
    made = {g: _files(write_demo_source(tmp_path / g, grid=g, **kwargs)) for g in GRIDS}
    assert made["none"] == default
    for grid in ("fake", "real"):
        changed = {k for k in default if made[grid][k] != default[k]}
        assert changed == {k for k in default if f"_{grid}" in k}  # demo_00001_fake2.jpg
        assert made[grid].keys() == default.keys()


def test_a_bad_grid_is_refused_by_name(tmp_path: Path) -> None:
    from search.data.layouts import SourceError
    from search.data.prepare import PrepareOptions

    with pytest.raises(ValueError, match=r"grid must be one of none, fake, real, not 'both'"):
        write_demo_source(tmp_path, n_images=3, size=16, grid="both")  # type: ignore[arg-type]
    assert not (tmp_path / FACES_DIR).exists()  # refused before anything is written
    with pytest.raises(SourceError, match=r"--demo-grid must be one of none, fake, real"):
        PrepareOptions(layout="demo", demo_grid="Fake").resolved()


def test_prepare_demo_grid_from_the_command_line(tmp_path: Path, capsys) -> None:
    """``prepare --layout demo --demo-grid fake``: the option reaches the images and the
    manifest; an unknown style is a usage error listing the valid ones."""
    import json

    import pyarrow.parquet as pq

    from search.cli import main as cli

    out = tmp_path / "shards"
    assert cli(["prepare", "--layout", "demo", "--demo-grid", "fake", "--demo-images", "30",
                "--size", "32", "--source", str(tmp_path / "src"), "--out", str(out),
                "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text())["options"]["demo_grid"] == "fake"
    rows = pq.read_table(sorted(out.glob("train-*.parquet"))[0]).to_pylist()
    for row in rows:  # the kept JPEG bytes carry the grid on FAKEs only
        level = _grid_level(decode_to_array(row["image"], 32))
        assert (level > GRID_AMPLITUDE / 2) if row["label"] == 1 else (abs(level) < 1.0)
    with pytest.raises(SystemExit):
        cli(["prepare", "--layout", "demo", "--demo-grid", "both"])
    assert "invalid choice: 'both' (choose from 'none', 'fake', 'real')" in capsys.readouterr().err


# --------------------------------------------------------------------------- learnability


def _load(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = _read_meta(root)
    x = np.stack(
        [np.asarray(Image.open(root / FACES_DIR / (r["videoname"][:-4] + ".jpg"))) for r in rows]
    )
    y = np.array([r["label"] == "FAKE" for r in rows], dtype=np.float32)
    ident = np.array([int(r["videoname"].split("_")[1]) for r in rows])
    return x, y, ident


def _train_cnn(
    xtr: np.ndarray,
    ytr: np.ndarray,
    xva: np.ndarray,
    yva: np.ndarray,
    lr: float,
    epochs: int,
    batch: int = 16,
) -> float:
    """Train a 3-conv CNN with Adam; return the validation ROC-AUC."""
    import torch
    from sklearn.metrics import roc_auc_score
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.from_numpy(xtr).permute(0, 3, 1, 2).float() / 255 - 0.5
    yt = torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch):
            idx = perm[i : i + batch]
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(xt[idx]).squeeze(1), yt[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        xv = torch.from_numpy(xva).permute(0, 3, 1, 2).float() / 255 - 0.5
        scores = model(xv).squeeze(1).numpy()
    return float(roc_auc_score(yva, scores))


def test_learnable_but_not_trivial(tmp_path: Path) -> None:
    """Good CNN >> chance; bad learning rate and mean-colour model stay low."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    t0 = time.perf_counter()
    root = write_demo_source(tmp_path, n_images=1500, size=32, seed=0)
    print(f"generated 1500 images at 32 px in {time.perf_counter() - t0:.1f} s")
    x, y, ident = _load(root)
    val = ident % 5 == 0  # split by identity: a FAKE never shares a face with a training REAL
    tr = ~val

    mean_rgb = x.reshape(len(x), -1, 3).mean(1)
    logreg = LogisticRegression(max_iter=1000).fit(mean_rgb[tr], y[tr])
    auc_colour = roc_auc_score(y[val], logreg.predict_proba(mean_rgb[val])[:, 1])

    t0 = time.perf_counter()
    # One thread: a tiny CNN on batches of 16 gains nothing from a second, and on a busy
    # 2-core machine two threads waiting on each other made this training 10-30x slower
    # (95-110 s against 4-15 s for two epochs, measured side by side).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        auc_good = _train_cnn(x[tr], y[tr], x[val], y[val], lr=1e-3, epochs=6)
        auc_bad = _train_cnn(x[tr], y[tr], x[val], y[val], lr=1e-6, epochs=6)
    finally:
        torch.set_num_threads(threads)
    print(
        f"AUC mean-colour logreg={auc_colour:.3f} cnn lr=1e-3: {auc_good:.3f} "
        f"cnn lr=1e-6: {auc_bad:.3f} (training {time.perf_counter() - t0:.1f} s)"
    )
    assert auc_good > 0.8
    assert auc_colour < 0.7
    assert auc_bad < auc_good - 0.15

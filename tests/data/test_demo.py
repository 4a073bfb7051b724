"""Tests for the embedded synthetic demo data set (search/data/demo.py).

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

from search.data.demo import (
    DEFAULT_DIFFICULTY,
    FACES_DIR,
    METADATA_COLUMNS,
    ensure_demo_shards,
    make_fake,
    make_real,
    write_demo_source,
)


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

    torch.set_num_threads(2)
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
    auc_good = _train_cnn(x[tr], y[tr], x[val], y[val], lr=1e-3, epochs=6)
    auc_bad = _train_cnn(x[tr], y[tr], x[val], y[val], lr=1e-6, epochs=6)
    print(
        f"AUC mean-colour logreg={auc_colour:.3f} cnn lr=1e-3: {auc_good:.3f} "
        f"cnn lr=1e-6: {auc_bad:.3f} (training {time.perf_counter() - t0:.1f} s)"
    )
    assert auc_good > 0.8
    assert auc_colour < 0.7
    assert auc_bad < auc_good - 0.15

"""The embedded demo set's painter: synthetic, labelled REAL/FAKE face-like images.

With no data downloadable the tool still needs something realistic to search over, so this
module paints face-like REAL images (head, hair, eyes, mouth, lighting, camera noise) and
derives FAKE images from them the way face-swaps do: the inner face is re-synthesised at a
lower resolution, slightly mis-warped, blended back with a feathered mask, colour-transferred
(histogram-matched) and left with a colour mismatch of random sign, so its noise/sharpness
differ from the surroundings while global colour statistics carry (almost) no label
information: a model has to look at local texture and seams.

For a controlled distribution shift, ``grid`` adds a 1-pixel grey checkerboard (see
:func:`add_grid`) to the FAKEs (the upsampling artefact of some generators), to the REALs
(a camera's sharpening/demosaicing pattern) or to neither (the default, byte-identical to a
set made without the option). Two sources that differ only in where the grid is have the same
seams but an opposite shortcut: a model that sees the images at full resolution learns the
grid, one at half the resolution cannot see it and must learn the seams, and only the seams
transfer (tests/tune/test_shift_selection.py, examples/shift-demo.yaml).

The set is written in the Kaggle "deepfake_faces" layout that ``prepare`` understands::

    ROOT/metadata.csv        videoname,original_width,original_height,label,original
    ROOT/faces_224/<stem>.jpg

Painting only: preparing the painted source into shards is :mod:`search.data.demo`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

from search.data._demo_brush import (
    ellipse_r,
    gauss_blur,
    paint,
    pick,
    pixel_grid,
    resize,
    smooth_noise,
    soft,
    to_uint8,
)

__all__ = ["DEFAULT_DIFFICULTY", "DEMO_SIZE", "GRIDS", "GRID_AMPLITUDE", "Grid", "add_grid",
           "check_grid", "make_fake", "make_real", "write_demo_source"]

log = logging.getLogger(__name__)

DEFAULT_DIFFICULTY = 0.5

#: Which images carry the checkerboard grid (``write_demo_source(grid=...)``): none (the
#: default demo), the FAKEs (a generator's upsampling artefact: a shortcut that works in
#: source) or the REALs (a camera pattern: the same shortcut, pointing the wrong way).
Grid = Literal["none", "fake", "real"]
GRIDS: tuple[str, ...] = ("none", "fake", "real")
#: The grid's amplitude in grey levels (+/-): faint to the eye, it survives the demo's JPEG
#: (q 90) and is the cue a CNN at full resolution learns first and relies on. Measured at
#: 64 px: with +/-4 the same CNN also learns the seams (AUC 0.84-0.96 on a source whose REALs
#: carry the grid), with +/-8 it learns the grid alone (test AUC 0.00-0.26 there).
GRID_AMPLITUDE = 8
FACES_DIR = "faces_224"
METADATA_FILE = "metadata.csv"
METADATA_COLUMNS = ("videoname", "original_width", "original_height", "label", "original")

# Skin tones from light to dark (RGB in [0, 1]); a real tone is interpolated between them.
_SKIN = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.87, 0.67, 0.54],
        [0.74, 0.53, 0.39],
        [0.55, 0.37, 0.26],
        [0.36, 0.24, 0.17],
    ]
)
_HAIR = np.array(
    [
        [0.07, 0.06, 0.06],
        [0.20, 0.13, 0.08],
        [0.40, 0.26, 0.14],
        [0.78, 0.64, 0.40],
        [0.55, 0.22, 0.10],
        [0.62, 0.62, 0.62],
    ]
)
_IRIS = np.array([[0.30, 0.18, 0.08], [0.20, 0.35, 0.55], [0.25, 0.40, 0.25], [0.12, 0.08, 0.05]])


# --------------------------------------------------------------------------- REAL


class _Pose(NamedTuple):
    """Where a REAL's head sits in the crop: pixel coordinates, one pixel's width, centre,
    half-axes, roll, and the head-local coordinates (the unit ellipse is the head)."""

    x: np.ndarray
    y: np.ndarray
    px: float
    cx: float
    cy: float
    a: float
    b: float
    th: float
    ur: np.ndarray
    vr: np.ndarray


def make_real(rng: np.random.Generator, size: int) -> np.ndarray:
    """Paint one face-like "camera" image (HxWx3 uint8) from ``rng``.

    Aligned face crop (like the Kaggle faces_224 crops): a shaded skin-tone head roughly centred,
    with hair, brows, eyes, nose and mouth, a gradient/textured background, random pose, scale and
    lighting, then camera optics (slight blur) and sensor noise (Gaussian + shot noise).

    The steps draw from ``rng`` in this fixed order: reordering them changes every demo image.
    """
    x, y = pixel_grid(size, size)
    img = _background(rng, x, y, size)
    pose = _pose(rng, x, y, 2.0 / size)  # 2 / size: one pixel in normalised units
    skin = pick(rng, _SKIN, 0.06)
    hair = pick(rng, _HAIR, 0.1)
    _paint_body(img, rng, pose, skin, hair)
    shade = _paint_head(img, rng, pose, skin, size)
    _paint_hair_band(img, rng, pose, hair, shade)
    _paint_eyes(img, rng, pose, skin, hair, shade[..., None])
    _paint_nose_and_mouth(img, rng, pose, skin, shade[..., None])

    # Scene lighting: global exposure, colour cast, vignetting.
    img *= rng.uniform(0.75, 1.2) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    img *= (1.0 - rng.uniform(0.0, 0.3) * (x**2 + y**2) / 2.0)[..., None]
    img = np.clip(img, 0.0, 1.0) * 255.0

    # Camera: optics blur, then shot noise (signal dependent) + read noise.
    img = _camera(img, rng)
    return to_uint8(img)


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Two-colour gradient + blotchy low-frequency texture (+ optional stripes), in [0, 1]."""
    c0, c1 = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    ang = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + 0.5 * (x * np.cos(ang) + y * np.sin(ang)), 0, 1)[..., None]
    img = (c0 * (1 - t) + c1 * t).astype(np.float32)
    img += rng.uniform(0.03, 0.12) * smooth_noise(rng, size, int(rng.integers(2, 7)), 3)
    if rng.random() < 0.4:
        f = rng.uniform(4, 14)
        a2 = rng.uniform(0, np.pi)
        img += rng.uniform(0.02, 0.06) * np.sin(f * (x * np.cos(a2) + y * np.sin(a2)))[..., None]
    return img


def _pose(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, px: float) -> _Pose:
    """An aligned crop's pose: only mild jitter in position, scale and roll."""
    cx, cy = rng.normal(0, 0.04), rng.normal(0.02, 0.04)
    a = rng.uniform(0.50, 0.62)
    b = a * rng.uniform(1.22, 1.36)
    th = rng.normal(0, 0.10)
    cth, sth = np.cos(th), np.sin(th)
    u, v = x - cx, y - cy
    ur, vr = (u * cth + v * sth) / a, (-u * sth + v * cth) / b  # head-local, unit ellipse
    return _Pose(x, y, px, cx, cy, a, b, th, ur, vr)


def _paint_body(img: np.ndarray, rng: np.random.Generator, pose: _Pose, skin: np.ndarray,
                hair: np.ndarray) -> None:
    """What lies behind and below the head: long hair (half of them), neck and shoulders."""
    x, y, px, cx, cy, a, b, th, ur, vr = pose
    if rng.random() < 0.5:
        r_back = ellipse_r(x, y, cx, cy - 0.05 * b, a * 1.25, b * 1.15, th)
        paint(img, soft(r_back, 3 * px) * (vr < rng.uniform(0.3, 1.2)), hair * 0.8)
    neck = (np.abs(ur) < rng.uniform(0.45, 0.6)) & (vr > 0.5)
    paint(img, neck.astype(np.float32), skin * 0.72)
    shoulders = soft(ellipse_r(x, y, cx, cy + 1.75 * b, 1.9 * a, 0.7 * b), 3 * px)
    paint(img, shoulders, rng.uniform(0.05, 0.9, 3).astype(np.float32))


def _paint_head(img: np.ndarray, rng: np.random.Generator, pose: _Pose, skin: np.ndarray,
                size: int) -> np.ndarray:
    """Lambertian shading of an ellipsoid under a random light, plus skin texture; the
    shading (HxW), which the hair, eyes and lips take on too."""
    px, a, ur, vr = pose.px, pose.a, pose.ur, pose.vr
    r2 = ur**2 + vr**2
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    light = np.array([rng.normal(0, 0.5), rng.normal(-0.3, 0.3), 1.0])
    light /= np.linalg.norm(light)
    shade = 0.45 + 0.6 * np.clip(ur * light[0] + vr * light[1] + nz * light[2], 0, 1)
    tex = 1.0 + 0.05 * smooth_noise(rng, size, 6) + 0.025 * smooth_noise(rng, size, size // 4)
    face = skin * (shade[..., None] * tex)
    paint(img, soft(np.sqrt(r2), 2 * px / a), face)
    return shade


def _paint_hair_band(img: np.ndarray, rng: np.random.Generator, pose: _Pose, hair: np.ndarray,
                     shade: np.ndarray) -> None:
    """Hair band on top of the head (wavy hairline, strand texture); 10 % are bald."""
    px, a, b, ur, vr = pose.px, pose.a, pose.b, pose.ur, pose.vr
    if rng.random() < 0.9:
        hl = -rng.uniform(0.45, 0.7) + 0.06 * np.sin(ur * rng.uniform(5, 12) + rng.uniform(0, 6))
        cap = soft(np.sqrt(ur**2 + (vr + 0.04) ** 2) / 1.08, 2 * px / a)
        band = cap * np.clip((hl - vr) / (2 * px / b) + 0.5, 0, 1)
        strands = 1.0 + 0.15 * np.sin(ur * rng.uniform(25, 45) + 2 * vr)
        paint(img, band, hair * (strands * (0.6 + 0.5 * shade))[..., None])


def _paint_eyes(img: np.ndarray, rng: np.random.Generator, pose: _Pose, skin: np.ndarray,
                hair: np.ndarray, shade3: np.ndarray) -> None:
    """Both eyes (white, iris, pupil, one gaze) with their brows, in head-local coordinates."""
    a, b, ur, vr = pose.a, pose.b, pose.ur, pose.vr
    ex, ey = rng.uniform(0.33, 0.43), rng.uniform(-0.16, -0.02)
    erx = rng.uniform(0.13, 0.18)
    ery = erx * rng.uniform(0.40, 0.60) * a / b
    iris = pick(rng, _IRIS, 0.1)
    gaze = rng.normal(0, 0.03, 2)
    brow_c = hair * 0.8 if rng.random() < 0.7 else skin * 0.4
    for sgn in (-1.0, 1.0):
        ru = (ur - sgn * ex) / erx
        rv = (vr - ey) / ery
        eye = soft(np.sqrt(ru**2 + rv**2), 0.35)
        paint(img, eye, np.array([0.92, 0.90, 0.87], np.float32) * shade3)
        ri = np.sqrt(
            ((ur - sgn * ex - gaze[0]) / (ery * 1.1 * b / a)) ** 2
            + ((vr - ey - gaze[1]) / (ery * 1.1)) ** 2
        )
        paint(img, eye * soft(ri, 0.3), iris)
        paint(img, eye * soft(ri / 0.45, 0.5), np.array([0.03, 0.03, 0.03], np.float32))
        brow_v = ey - rng.uniform(0.16, 0.22) + 0.5 * ((ur - sgn * ex) / (erx * 1.4)) ** 2 * 0.12
        brow = (np.abs(ur - sgn * ex) < erx * 1.3) * soft(np.abs(vr - brow_v) / 0.04, 0.4)
        paint(img, brow.astype(np.float32), brow_c)


def _paint_nose_and_mouth(img: np.ndarray, rng: np.random.Generator, pose: _Pose,
                          skin: np.ndarray, shade3: np.ndarray) -> None:
    """Nose (bridge shadow, nostrils) and mouth (lips, the gap between), in head-local
    coordinates."""
    ur, vr = pose.ur, pose.vr
    ny = rng.uniform(0.18, 0.28)
    nose = soft(np.sqrt((ur / 0.09) ** 2 + ((vr - ny) / 0.18) ** 2), 0.8)
    paint(img, 0.25 * nose, skin * 0.6)
    for sgn in (-1.0, 1.0):
        nos = soft(np.sqrt(((ur - sgn * 0.08) / 0.045) ** 2 + ((vr - ny - 0.1) / 0.03) ** 2), 0.6)
        paint(img, 0.6 * nos, skin * 0.35)
    my, mrx, mry = rng.uniform(0.46, 0.58), rng.uniform(0.22, 0.34), rng.uniform(0.04, 0.08)
    lips = soft(np.sqrt((ur / mrx) ** 2 + ((vr - my) / mry) ** 2), 0.4)
    lip_c = np.clip(skin * np.array([0.95, 0.55, 0.55]) + rng.normal(0, 0.04, 3), 0, 1)
    paint(img, lips, (lip_c * shade3).astype(np.float32))
    gap = soft(np.sqrt((ur / (mrx * 0.9)) ** 2 + ((vr - my) / 0.012) ** 2), 0.6)
    paint(img, 0.7 * gap, skin * 0.25)


def _camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slight optical blur plus sensor noise, on a float image in [0, 255]."""
    sigma_blur = rng.uniform(0.25, 0.75)
    img = gauss_blur(img, sigma_blur)
    read = rng.uniform(1.5, 5.0)
    shot = rng.uniform(0.05, 0.25)
    std = np.sqrt(read**2 + shot * img)
    return img + std * rng.standard_normal(img.shape, dtype=np.float32)


# --------------------------------------------------------------------------- FAKE


def make_fake(real: np.ndarray, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Derive a face-swap-like FAKE (HxWx3 uint8) from a REAL image.

    The inner face (an ellipse around eyes, nose and mouth) is re-synthesised the way swap
    pipelines do it: rendered at a lower resolution and upscaled (lost detail and noise), slightly
    mis-aligned (warp), given a cleaner noise level, blended back with a feathered mask,
    histogram-matched to the original face and colour/brightness shifted. ``difficulty`` in [0, 1]: 0 = obvious (strong blur, big colour shift,
    narrow seam), 1 = subtle (nearly invisible).
    """
    d = float(np.clip(difficulty, 0.0, 1.0))
    s = 1.0 - d  # strength of every artefact
    h, w = real.shape[:2]
    src = real.astype(np.float32)
    x, y = pixel_grid(h, w)

    # Region: aligned crops put the inner face near the centre; a detector's box jitters.
    cx, cy = rng.normal(0, 0.03), rng.normal(0.10, 0.03)
    ax = rng.uniform(0.38, 0.46)
    ay = ax * rng.uniform(1.15, 1.3)
    r = ellipse_r(x, y, cx, cy, ax, ay, rng.normal(0, 0.08))
    feather = 0.06 + 0.35 * d * rng.uniform(0.8, 1.2)
    mask = np.clip((1.0 + feather / 2 - r) / feather, 0.0, 1.0)
    mask = mask * mask * (3 - 2 * mask)

    # Re-synthesised face: low-resolution render, upscaled, slightly mis-warped.
    factor = max(1.0, (1.0 + 3.0 * s**1.2) * rng.uniform(0.85, 1.15))
    lw, lh = max(4, round(w / factor)), max(4, round(h / factor))
    low = resize(src, (lw, lh), Image.BILINEAR)
    scale = 1.0 + rng.normal(0, 0.02 + 0.04 * s)
    shift = rng.normal(0, 0.3 + 1.2 * s, 2)
    swap = _warp_up(low, (w, h), scale, shift)

    # A donor face's blotchy skin texture.
    swap *= 1.0 + 0.06 * s * smooth_noise(rng, max(h, w), 5)[:h, :w]

    # Different noise statistics: the generator's output is cleaner than the camera's. Measure
    # the camera noise outside the region (robust MAD of a high-pass residual) and re-add only a
    # fraction of it inside (all of it at difficulty 1).
    sigma_out = _noise_sigma(src, r > 1.1)
    sigma_in = sigma_out * (0.1 + 0.9 * d**1.5) * rng.uniform(0.85, 1.1)
    swap += sigma_in * rng.standard_normal(swap.shape, dtype=np.float32)

    # Blend back with the feathered mask, then colour transfer as swap tools do it (histogram
    # matching to the target face), so the colour distribution stays that of a REAL; finally an
    # imperfect-transfer colour/brightness mismatch of random sign, fading out over the feather.
    m = mask[..., None]
    out = m * swap + (1.0 - m) * src
    inside = mask > 0.0
    out[inside] = _match_histograms(out[inside], src[inside])
    gain = 1.0 + rng.normal(0, 0.01 + 0.10 * s, 3) + rng.normal(0, 0.01 + 0.06 * s)
    offset = rng.normal(0, 1.0 + 8.0 * s)
    out = out * (1.0 + m * (gain.astype(np.float32) - 1.0)) + m * np.float32(offset)
    return to_uint8(out)


def _match_histograms(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel rank mapping of ``values`` (N x 3) onto the sorted ``reference`` (N x 3)."""
    out = np.empty_like(values)
    for c in range(values.shape[1]):
        order = np.argsort(values[:, c], kind="stable")
        out[order, c] = np.sort(reference[:, c], kind="stable")
    return out


def _noise_sigma(img: np.ndarray, where: np.ndarray) -> float:
    """Robust estimate of white-noise sigma from a high-pass residual over pixels ``where``."""
    sigma = 1.0
    resid = img - gauss_blur(img, sigma)
    vals = resid[where] if where.any() else resid
    mad = float(np.median(np.abs(vals - np.median(vals))))
    # Residual of unit white noise under (identity - Gaussian): std = sqrt(1 - 2 K0 + sum K^2).
    rad = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sigma) ** 2)
    k /= k.sum()
    gain = np.sqrt(1.0 - 2.0 * k[rad] ** 2 + (k**2).sum() ** 2)
    return 1.4826 * mad / gain


def _warp_up(low: np.ndarray, size: tuple[int, int], scale: float, shift: np.ndarray) -> np.ndarray:
    """Upscale ``low`` to ``size`` (W, H) with a small scale/shift about the centre (bilinear)."""
    w, h = size
    lh, lw = low.shape[:2]
    # Output pixel centre -> input (low-res) coordinates.
    ox = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2 - shift[0]) / scale + w / 2) * lw / w - 0.5
    oy = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2 - shift[1]) / scale + h / 2) * lh / h - 0.5
    ox, oy = np.clip(ox, 0, lw - 1), np.clip(oy, 0, lh - 1)
    x0, y0 = np.minimum(ox.astype(np.int64), lw - 2), np.minimum(oy.astype(np.int64), lh - 2)
    fx, fy = (ox - x0)[None, :, None], (oy - y0)[:, None, None]
    rows0, rows1 = low[y0], low[y0 + 1]
    top = rows0[:, x0] * (1 - fx) + rows0[:, x0 + 1] * fx
    bot = rows1[:, x0] * (1 - fx) + rows1[:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


# --------------------------------------------------------------------------- grid


def check_grid(grid: str, option: str = "grid") -> str:
    """``grid`` when it is one of :data:`GRIDS`, else a ValueError naming ``option``."""
    if grid not in GRIDS:
        raise ValueError(f"{option} must be one of {', '.join(GRIDS)}, not {grid!r}")
    return grid


def add_grid(img: np.ndarray, amplitude: int = GRID_AMPLITUDE) -> np.ndarray:
    """``img`` (HxWx3 uint8) plus a grey 1-pixel checkerboard of +/- ``amplitude`` levels.

    The highest spatial frequency an image can hold: a 2x downscale removes it (a 2x2 box or
    bilinear filter sums to zero over it, and JPEG's DCT-domain 1/2 scaling, the worker's
    path, drops the coefficients that carry nearly all of it: 0.1 grey level rms is left,
    measured), so a model at half the resolution cannot see it. Grey, so that it lives in
    JPEG's luminance channel and survives 4:2:0 chroma subsampling. Never clipped: the
    amplitude of each aligned 2x2 block is cut to the block's headroom below 255 and above 0
    (none in a saturated block), so every block keeps its mean and colour exactly (a clipped
    grid would darken the bright areas of the images that have it, a cue at any resolution).
    No randomness: adding it draws nothing from the image's generator.
    """
    h, w = img.shape[:2]
    v = img.astype(np.int16)
    room = np.minimum(v, 255 - v).min(axis=-1)  # headroom of each pixel, over its channels
    hb, wb = (h + 1) // 2, (w + 1) // 2
    padded = np.pad(room, ((0, 2 * hb - h), (0, 2 * wb - w)), mode="edge")
    block = padded.reshape(hb, 2, wb, 2).min(axis=(1, 3))
    amp = np.minimum(amplitude, np.repeat(np.repeat(block, 2, 0), 2, 1)[:h, :w])
    checker = 1 - 2 * ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2)
    return (v + (amp * checker)[..., None]).astype(np.uint8)


# --------------------------------------------------------------------------- writer


def _identity_rngs(seed: int, ident: int, fakes_per_real: int) -> list[np.random.Generator]:
    """Independent generators for one identity's REAL (0) and FAKEs (1..k), keyed by index."""
    return [
        np.random.default_rng(np.random.SeedSequence([seed, ident, j]))
        for j in range(fakes_per_real + 1)
    ]


def _jpeg(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


#: The embedded demo's image side: small enough to search on a laptop's CPU.
DEMO_SIZE = 64


def write_demo_source(
    root: str | Path,
    *,
    n_images: int = 2000,
    size: int = DEMO_SIZE,
    difficulty: float = DEFAULT_DIFFICULTY,
    fakes_per_real: int = 2,
    seed: int = 0,
    jpeg_quality: int = 90,
    grid: Grid = "none",
) -> Path:
    """Write the demo set under root (creating it), return root.

    ``n_images`` counts REAL + FAKE; there are ``round(n_images / (1 + fakes_per_real))``
    identities, each with one REAL and ``fakes_per_real`` FAKEs made from it. Deterministic:
    same args -> byte-identical files (every image has its own RNG keyed by (seed, identity, k)).
    ``grid`` (:data:`GRIDS`) puts :func:`add_grid`'s checkerboard on the FAKEs or the REALs:
    the images are otherwise the same, so two sources made with different grids differ only
    in that artefact (a controlled shift). Files of the same name are overwritten;
    ``metadata.csv`` is written last (atomically) and is the index of the set.
    """
    check_grid(grid)
    if n_images < 1 or fakes_per_real < 0:
        raise ValueError("need n_images >= 1 and fakes_per_real >= 0")
    if size < 16:
        raise ValueError("size must be >= 16")
    root = Path(root)
    faces = root / FACES_DIR
    faces.mkdir(parents=True, exist_ok=True)
    n_ids = max(1, round(n_images / (1 + fakes_per_real)))
    width = max(5, len(str(n_ids - 1)))
    rows: list[tuple[str, int, int, str, str]] = []
    t0 = time.perf_counter()
    for ident in range(n_ids):
        rngs = _identity_rngs(seed, ident, fakes_per_real)
        real = make_real(rngs[0], size)
        stem = f"demo_{ident:0{width}d}"
        real_video = f"{stem}_real.mp4"
        shown = add_grid(real) if grid == "real" else real  # fakes are made from the clean one
        (faces / f"{stem}_real.jpg").write_bytes(_jpeg(shown, jpeg_quality))
        rows.append((real_video, size, size, "REAL", ""))
        for k in range(1, fakes_per_real + 1):
            fake = make_fake(real, rngs[k], difficulty)
            fake = add_grid(fake) if grid == "fake" else fake
            (faces / f"{stem}_fake{k}.jpg").write_bytes(_jpeg(fake, jpeg_quality))
            rows.append((f"{stem}_fake{k}.mp4", size, size, "FAKE", real_video))
    rows.sort()
    tmp = root / (METADATA_FILE + ".tmp")
    with tmp.open("w", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(METADATA_COLUMNS)
        wr.writerows(rows)
    os.replace(tmp, root / METADATA_FILE)
    log.info("wrote %d demo images (%d identities) to %s in %.1f s", len(rows), n_ids, root,
             time.perf_counter() - t0)
    return root



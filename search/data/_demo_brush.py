"""The demo painter's brushes: coordinates, smooth noise, soft masks, compositing, palette
picks, resizing and blur, on float images in [0, 255] or [0, 1].

Private (used by :mod:`search.data.demo_painter`). Apart from what is painted (the REAL
face, the FAKE swap) so that each of the painter's steps reads as a list of strokes; every
function draws from the ``rng`` it is given, in a fixed order, so the demo set stays the same
for a seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["ellipse_r", "gauss_blur", "paint", "pick", "pixel_grid", "resize", "smooth_noise",
           "soft", "to_uint8"]


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] (x to the right, y downwards)."""
    cx = (np.arange(w, dtype=np.float32) + 0.5) / w * 2.0 - 1.0
    cy = (np.arange(h, dtype=np.float32) + 0.5) / h * 2.0 - 1.0
    return np.broadcast_to(cx[None, :], (h, w)), np.broadcast_to(cy[:, None], (h, w))


def smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Bilinearly upsampled random lattice: smooth, low-frequency noise in about [-1, 1]."""
    lattice = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1, channels)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * cells
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3.0 - 2.0 * f)  # smoothstep so cell borders do not show
    rows = lattice[i] * (1 - f)[:, None, None] + lattice[i + 1] * f[:, None, None]
    out = rows[:, i] * (1 - f)[None, :, None] + rows[:, i + 1] * f[None, :, None]
    return out


def ellipse_r(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, theta: float = 0.0
) -> np.ndarray:
    """Normalised elliptical radius (1 on the ellipse boundary)."""
    u, v = x - cx, y - cy
    c, s = np.cos(theta), np.sin(theta)
    return np.sqrt(((u * c + v * s) / ax) ** 2 + ((-u * s + v * c) / ay) ** 2)


def soft(r: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased inside-mask of ``r <= 1`` with an edge ``width`` (in r units) wide."""
    return np.clip((1.0 - r) / width + 0.5, 0.0, 1.0)


def paint(img: np.ndarray, mask: np.ndarray, color: np.ndarray | float) -> None:
    """Alpha-composite ``color`` (RGB or HxWx3) onto ``img`` in place."""
    m = mask[..., None]
    img *= 1.0 - m
    img += m * color


def pick(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> np.ndarray:
    """A palette colour, interpolated between neighbours and jittered."""
    t = rng.uniform(0, len(palette) - 1)
    i = min(int(t), len(palette) - 2)
    c = palette[i] * (1 - (t - i)) + palette[i + 1] * (t - i)
    return np.clip(c * rng.uniform(1 - jitter, 1 + jitter, 3), 0.0, 1.0).astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """A float image in [0, 255] rounded to uint8 (out-of-range values clipped)."""
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def resize(img: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize a float HxWx3 image in [0, 255] with PIL (per channel, in float precision)."""
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(img[..., k], np.float32)).resize(size, resample)
        )
        for k in range(3)
    ]
    return np.stack(chans, axis=-1)


def gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (reflect padding) of an HxWx3 float image."""
    if sigma <= 0.05:
        return img
    rad = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    p = np.pad(img, ((rad, rad), (0, 0), (0, 0)), mode="reflect")
    h = img.shape[0]
    out = sum(k[i] * p[i : i + h] for i in range(2 * rad + 1))
    p = np.pad(out, ((0, 0), (rad, rad), (0, 0)), mode="reflect")
    w = img.shape[1]
    return sum(k[i] * p[:, i : i + w] for i in range(2 * rad + 1))

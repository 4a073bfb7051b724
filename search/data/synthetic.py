"""Self-blended fakes (SBI): a REAL face blended with a transformed copy of itself.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022;
mapooon/SelfBlendedImages, ``src/utils/sbi.py`` and ``src/utils/blend.py``). A detector
trained on these learns what every face swap leaves, a blending boundary and a mismatch of
colour and sharpness between the inner face and its surroundings, instead of the artefacts
of one generator. Pure functions of numpy and Pillow taking a ``numpy`` Generator, so that
the training stream (:mod:`search.data.stream`) can make them inside its Ray Data tasks,
deterministically per row, seed and epoch.

One self-blend (:func:`self_blend`), as in SBI's ``self_blending``:

1. **Mask** (:func:`ellipse_mask`, then :func:`soften`). SBI fills the convex hull of dlib's
   81 face landmarks (25% of the time the 68 without the forehead), deforms it elastically
   (alpha 50, sigma 7) and blurs it twice (a Gaussian of kernel 5-25, everything below 1
   zeroed, which shrinks it, then one of kernel 5-25 and sigma 5-45). Here the hull is a
   *landmark-free* jittered ellipse: the images this project trains on are face-centred
   crops (prepare's layouts: deepfake_faces' 224 px crops, CIPLAB's face regions, the demo's
   painted faces), so the face's position is known to within a few per cent without a
   detector. Its centre, axes and angle are drawn, 25% of the time a small inner-face one
   (eyes, nose, mouth: SBI's 68-point case, and the part edits of CIPLAB's fakes); its
   outline is deformed by low-order radial harmonics and a smooth random field (the elastic
   step), then blurred twice as SBI does, with kernels scaled to the image size.
   dlib landmarks were *not* used: ``face-recognition-models`` ships the 68-point predictor
   in its wheel, but it needs ``dlib`` (a source build, or the unofficial ``dlib-bin``
   wheel) in every Ray data task, and a detector pass per image on crops whose face
   position is already fixed; the ellipse costs no dependency and well under a millisecond.
   A landmark hull would follow the jaw and brows more closely; whether that matters for
   transfer is not measured here.
2. **Source/target transforms** (:func:`source_transform`), applied to the source or the
   target at random (SBI: 50:50): an RGB shift of up to 20 levels (p=0.3), a small HSV shift,
   brightness and contrast within 10%, then either a 2x or 4x nearest downscale with a
   bilinear upscale or a sharpen (alpha 0.2-0.5, lightness 0.5-1). SBI's albumentations
   HSV limits of +/-0.3 are on uint8 values, where they round to nothing; here the hue
   turns by up to 3/256 of a turn, the saturation and value scale by up to 10% and 3%, all
   as one 3x3 colour matrix with the RGB shift, brightness and contrast (one pass over the
   pixels, not two HSV conversions). ``kind`` picks ``sbi`` (all
   of it), ``colour`` (the colour steps only), ``quality`` (the resampling/sharpen step only)
   or ``none``.
3. **Shift** (:func:`shift_scale`): the source is moved by up to 3% across and 1.5% down
   and scaled by 0.95-1/0.95, so that inside the mask the face is slightly misaligned.
4. **Blend**: ``mask * ratio * source + (1 - mask * ratio) * target`` with the ratio drawn
   from ``ratios`` (SBI: 0.25, 0.5, 0.75, 1, 1, 1).

SBI then applies its usual augmentations (colour jitter, JPEG) to both classes; here that
is the stream's :class:`~search.data.stream.Augment`, after the blend, on REAL and FAKE rows
alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from search.config import SBI_BLEND_RATIOS, parse_blend_ratios

#: The masks this module draws (``data.blend_mask``).
MASKS: tuple[str, ...] = ("ellipse",)
#: The source/target transform sets (``data.blend_transform``).
TRANSFORMS: tuple[str, ...] = ("sbi", "colour", "quality", "none")
#: What a synthetic FAKE is (``data.synthetic_kind``): a self-blend, or a cross-face splice.
KINDS: tuple[str, ...] = ("self_blend", "splice", "splice_matched")

_INNER_SHARE = 0.25  # SBI: 25% of its masks leave the forehead out (68 of 81 landmarks)
_REFERENCE = 224.0  # the size SBI's blur kernels are given for (its masks are 192-256 px)
# The mask is drawn and blurred at most this many px a side, then resized (bilinear) to
# the image: it is smooth by construction, and this keeps its cost flat in the image size
# (SBI too blurs its masks at 192-256 px whatever the frame's size).
_MASK_SIDE = 64


@dataclass(frozen=True)
class BlendSpec:
    """How self-blends are drawn: mask, blend-ratio set, source/target transforms."""

    mask: str = "ellipse"
    ratios: tuple[float, ...] = SBI_BLEND_RATIOS
    transform: str = "sbi"
    kind: str = "self_blend"  # or a cross-face splice (search/data/splice.py)

    def __post_init__(self) -> None:
        if self.mask not in MASKS:
            raise ValueError(f"blend mask {self.mask!r}: choose one of {', '.join(MASKS)}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"blend transform {self.transform!r}: choose one of "
                             f"{', '.join(TRANSFORMS)}")
        if self.kind not in KINDS:
            raise ValueError(f"synthetic kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if not self.ratios or not all(0 < r <= 1 for r in self.ratios):
            raise ValueError(f"blend ratios must be in (0, 1], not {self.ratios!r}")

    @classmethod
    def from_config(cls, cfg: object) -> BlendSpec:
        """From a :class:`~search.config.DataConfig` (``blend_mask``, ``blend_ratios``,
        ``blend_transform``, ``synthetic_kind``)."""
        return cls(cfg.blend_mask, parse_blend_ratios(cfg.blend_ratios), cfg.blend_transform,
                   cfg.synthetic_kind)

    @property
    def splices(self) -> bool:
        """True when the synthetic FAKEs are cross-face splices (they need donors)."""
        return self.kind != "self_blend"


# ------------------------------------------------------------------ the mask
def _smooth_noise(h: int, w: int, rng: np.random.Generator, cells: int = 6) -> np.ndarray:
    """A smooth random field in [-1, 1] (coarse uniform noise, bicubic up-sampled)."""
    coarse = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.Resampling.BICUBIC))


def ellipse_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A jittered, elastically deformed ellipse on a face-centred crop: HxW bool."""
    inner = rng.random() < _INNER_SHARE
    cx, cy = rng.uniform(-0.06, 0.06), rng.uniform(0.0, 0.12)  # the face sits a little low
    if inner:  # eyes, nose and mouth
        ax, ay = rng.uniform(0.42, 0.6), rng.uniform(0.5, 0.7)
    else:  # brows to chin
        ax, ay = rng.uniform(0.6, 0.85), rng.uniform(0.72, 0.95)
    angle = rng.uniform(-0.2, 0.2)
    y = ((np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1 - cy)[:, None]
    x = ((np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1 - cx)[None, :]
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u, v = (c * x + s * y) / ax, (-s * x + c * y) / ay
    rho = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    outline = np.ones_like(rho)
    for k in range(2, 6):  # low-order harmonics: a less regular, face-like outline
        outline += rng.uniform(0.0, 0.08) / k * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    rho = rho + 0.06 * _smooth_noise(h, w, rng)  # the elastic wobble of the boundary
    return rho < outline


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    """A Gaussian blur of an HxW uint8 mask (Pillow's, so no float mode: 8-bit levels)."""
    return np.asarray(Image.fromarray(mask, "L").filter(ImageFilter.GaussianBlur(radius)))


def soften(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SBI's two blurs of a binary mask -> HxW float32 in [0, 1]: the first, with everything
    below its maximum zeroed, shrinks it; the second feathers its edge."""
    scale = min(mask.shape) / _REFERENCE
    m = mask.astype(np.uint8) * 255
    first = _blur(m, rng.uniform(1.0, 4.0) * scale)
    m = np.where(first >= 255, 255, 0).astype(np.uint8)
    if not m.any():  # shrunk away (a tiny image): keep the unshrunk mask
        m = mask.astype(np.uint8) * 255
    second = _blur(m, rng.uniform(1.5, 7.0) * scale).astype(np.float32)
    peak = second.max()
    return second / peak if peak > 0 else second


# ------------------------------------------------------------------ the transforms
def _sharpen(img: np.ndarray, alpha: float, lightness: float) -> np.ndarray:
    """albumentations' Sharpen on HxWx3 uint8: ``(1 - alpha) * x + alpha * (kernel * x)``
    with the kernel ``[[-1,-1,-1],[-1,8+lightness,-1],[-1,-1,-1]]``, not renormalised (as
    albumentations'); Pillow's 3x3 convolution, which leaves the one-pixel border as is."""
    effect = np.full(9, -1.0)
    effect[4] = 8 + lightness
    kernel = alpha * effect
    kernel[4] += 1 - alpha
    return np.asarray(Image.fromarray(img).filter(
        ImageFilter.Kernel((3, 3), kernel.tolist(), scale=1)))


def _down_up(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest downscale by ``factor``, bilinear upscale back (SBI's RandomDownScale)."""
    pil = Image.fromarray(img)
    small = pil.resize((max(1, pil.width // factor), max(1, pil.height // factor)),
                       Image.Resampling.NEAREST)
    return np.asarray(small.resize(pil.size, Image.Resampling.BILINEAR))


def _hsv_matrix(rng: np.random.Generator) -> np.ndarray:
    """A 3x3 RGB matrix for a small HSV shift: the hue turned about the grey axis by up to
    3/256 of a turn, the saturation scaled by 1 +/- 0.1 about the grey, the value by
    1 +/- 0.03 (one matrix product instead of two HSV conversions, 10x cheaper)."""
    angle = rng.uniform(-3, 3) / 256 * 2 * np.pi
    axis = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]],
                      [-axis[1], axis[0], 0]])
    hue = (np.cos(angle) * np.eye(3) + np.sin(angle) * cross
           + (1 - np.cos(angle)) * np.outer(axis, axis))
    sat = rng.uniform(0.9, 1.1)
    grey = np.full((3, 3), 1 / 3)
    return rng.uniform(0.97, 1.03) * (sat * np.eye(3) + (1 - sat) * grey) @ hue


def source_transform(img: np.ndarray, rng: np.random.Generator, kind: str = "sbi") -> np.ndarray:
    """SBI's source/target transform of an HxWx3 uint8 image (``kind``: see the module)."""
    if kind in ("sbi", "colour"):
        shift = rng.uniform(-20, 20, 3) if rng.random() < 0.3 else np.zeros(3)
        matrix = _hsv_matrix(rng) * (1 + rng.uniform(-0.1, 0.1))  # contrast
        offset = matrix @ shift + rng.uniform(-0.1, 0.1) * 255  # RGB shift, brightness
        x = img.astype(np.float32) @ matrix.T.astype(np.float32) + offset.astype(np.float32)
        img = np.clip(x, 0, 255).astype(np.uint8)
    if kind in ("sbi", "quality"):
        if rng.random() < 0.5:
            img = _down_up(img, int(rng.choice((2, 4))))
        else:
            img = _sharpen(img, rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.0))
    return img


def shift_scale(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SBI's random affine of the source: shift up to 3% across and 1.5% down, scale
    0.95-1/0.95 about the centre. Returns the image and where it is defined (HxW bool: the
    pixels that came from outside the frame must not be blended in)."""
    h, w = img.shape[:2]
    scale = rng.uniform(0.95, 1 / 0.95)
    tx, ty = rng.uniform(-0.03, 0.03) * w, rng.uniform(-0.015, 0.015) * h
    # Pillow's AFFINE maps output (x, y) to input (a x + b y + c, d x + e y + f).
    cx, cy = w / 2, h / 2
    a = 1 / scale
    coeffs = (a, 0.0, cx - a * (cx + tx), 0.0, a, cy - a * (cy + ty))
    moved = Image.fromarray(img).transform((w, h), Image.Transform.AFFINE, coeffs,
                                           Image.Resampling.BILINEAR)
    # Output pixel centres whose source point lies in the frame (a rectangle).
    xs = a * (np.arange(w) + 0.5) + coeffs[2]
    ys = a * (np.arange(h) + 0.5) + coeffs[5]
    inside = ((ys >= 0) & (ys <= h))[:, None] & ((xs >= 0) & (xs <= w))[None, :]
    return np.asarray(moved), inside


# ------------------------------------------------------------------ one self-blend
def blend_mask(h: int, w: int, rng: np.random.Generator, kind: str = "ellipse") -> np.ndarray:
    """The soft HxW float32 mask of one self-blend (before the blend ratio), drawn at most
    :data:`_MASK_SIDE` px a side and resized to HxW."""
    if kind != "ellipse":
        raise ValueError(f"blend mask {kind!r}: choose one of {', '.join(MASKS)}")
    scale = min(1.0, _MASK_SIDE / max(h, w))
    mh, mw = max(1, round(h * scale)), max(1, round(w * scale))
    mask = soften(ellipse_mask(mh, mw, rng), rng)
    if (mh, mw) != (h, w):
        mask = np.asarray(Image.fromarray(mask, "F").resize((w, h), Image.Resampling.BILINEAR))
    return mask


def self_blend(img: np.ndarray, rng: np.random.Generator,
               spec: BlendSpec = BlendSpec()) -> np.ndarray:
    """A self-blended fake of the HxWx3 uint8 REAL image ``img`` (a new array)."""
    h, w = img.shape[:2]
    target = np.ascontiguousarray(img)
    source = target.copy()
    if spec.transform != "none":
        if rng.random() < 0.5:
            source = source_transform(source, rng, spec.transform)
        else:
            target = source_transform(target, rng, spec.transform)
    source, inside = shift_scale(source, rng)
    mask = blend_mask(h, w, rng, spec.mask) * inside
    mask *= np.float32(spec.ratios[int(rng.integers(len(spec.ratios)))])
    # target + mask * (source - target), rounded: float32 throughout
    out = source.astype(np.float32)
    out -= target
    out *= mask[..., None]
    out += target
    return np.clip(np.rint(out, out=out), 0, 255).astype(np.uint8)


__all__ = ["KINDS", "MASKS", "TRANSFORMS", "BlendSpec", "blend_mask", "ellipse_mask", "self_blend",
           "shift_scale", "soften", "source_transform"]

"""Image decoding and validation shared by prepare, the training stream and predict.

Every image the project touches goes through :func:`load_rgb`, so the three paths agree on
what a valid image is and on how it becomes RGB (grayscale, RGBA, palette, CMYK, 16-bit and
EXIF orientation are all normalised the same way).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Refuse anything bigger than this many pixels: a decompression bomb would exhaust a worker's
# memory long before it could be resized. 64 MP covers every real face crop or photo.
MAX_PIXELS = 64_000_000

# Formats whose bytes we keep verbatim when an image is already at the target size.
_KEEP_FORMATS = {"JPEG", "PNG", "WEBP"}
_LOSSLESS_FORMATS = {"PNG", "BMP", "TIFF", "GIF", "PPM", "TGA"}


class ImageError(ValueError):
    """An image that cannot be used; ``str(err)`` is the reason recorded in ``skipped``."""


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for a shard: encoded bytes plus the size they decode to."""

    data: bytes
    width: int
    height: int
    reencoded: bool


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without surprises."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grey: Pillow's convert clips to 255; scale the range down instead.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite on black rather than dropping alpha, so transparent areas are defined.
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, (0, 0, 0))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_rgb(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, str, bool]:
    """Decode ``data`` fully and return ``(rgb_image, source_format, changed)``.

    ``changed`` is True when the stored pixels are not the decoded pixels as-is (mode
    conversion or EXIF rotation), i.e. when the original bytes cannot be kept.
    Raises :class:`ImageError` with a short reason for anything unusable.
    """
    if not data:
        raise ImageError("zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "UNKNOWN"
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"decompression bomb refused: {w}x{h} = {w * h} pixels > limit {max_pixels}"
                )
            img.load()  # full decode: truncated files fail here
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"decompression bomb refused: {err}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"corrupt or truncated image: {err}") from None
    if w == 0 or h == 0:
        raise ImageError("empty image (0 pixels)")
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    changed = False
    if orientation not in (1, None):
        img = ImageOps.exif_transpose(img)
        changed = True
    if img.mode != "RGB":
        img = _to_rgb(img)
        changed = True
    return img, fmt, changed


def encode(img: Image.Image, fmt: str, *, quality: int = 95) -> bytes:
    """Encode RGB pixels: lossless sources stay lossless (PNG), lossy ones become JPEG."""
    buf = io.BytesIO()
    if fmt.upper() in _LOSSLESS_FORMATS:
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def prepare_image(data: bytes, size: int | None, *, quality: int = 95,
                  max_pixels: int = MAX_PIXELS) -> PreparedImage:
    """Validate and normalise one image for a shard.

    Resizes to ``size`` x ``size`` (the study's square resize) only when the image is not
    already that size, and re-encodes only when something changed: an image already at size
    keeps its original bytes, since recompression adds JPEG artefacts a detector may learn.
    """
    img, fmt, changed = load_rgb(data, max_pixels=max_pixels)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        changed = True
    if not changed and fmt in _KEEP_FORMATS:
        return PreparedImage(data, img.width, img.height, reencoded=False)
    return PreparedImage(encode(img, fmt, quality=quality), img.width, img.height, reencoded=True)


def decode_to_array(data: bytes, size: int) -> np.ndarray:
    """Decode encoded bytes to an HxWx3 uint8 array at ``size`` (fast path for training)."""
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG" and img.size[0] >= 2 * size:
        img.draft("RGB", (size, size))  # let libjpeg downscale by a power of two while decoding
    if img.mode != "RGB":
        img = _to_rgb(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)


def decode_batch(images: Sequence[bytes], size: int) -> np.ndarray:
    """Decode encoded images to one ``(n, size, size, 3)`` uint8 array (NHWC, as decoded).

    Batches stay uint8 and channels-last until they reach the device that trains on them:
    a quarter of the bytes of float32 through Ray's object store and to the GPU, and
    normalisation runs where it is cheap (``search.data.stream.Normalize``). Pillow only:
    torchvision's JPEG decoder is 1.3x faster per image here but importing torch costs
    every decode process 2 s.
    """
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, data in enumerate(images):
        out[i] = decode_to_array(data, size)
    return out


# Truncated files must fail validation, never decode as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False

__all__ = [
    "MAX_PIXELS",
    "ImageError",
    "PreparedImage",
    "decode_batch",
    "decode_to_array",
    "encode",
    "load_rgb",
    "prepare_image",
]

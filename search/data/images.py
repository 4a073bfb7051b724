"""Image decoding and validation shared by prepare, the training stream and predict.

Every image the project touches goes through :func:`load_rgb`, so the three paths agree on
what a valid image is and on how it becomes RGB (grayscale, RGBA, palette, CMYK, 16-bit and
EXIF orientation are all normalised the same way).
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Refuse anything bigger than this many pixels: a decompression bomb would exhaust a worker's
# memory long before it could be resized. 64 MP covers every real face crop or photo.
MAX_PIXELS = 64_000_000
# Refuse files bigger than this before reading them: a symlink to /dev/zero or a huge
# non-image would otherwise be read into memory whole. 256 MiB is above any 64 MP image.
MAX_FILE_BYTES = 256 * 1024 * 1024
# Skip images whose shorter side is below this: a 1x1 or 4x4 "image" upscaled to 224 px
# is a flat colour the model would learn as a face.
MIN_SIDE = 16

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


def safe_name(name: str) -> str:
    """``name`` printable and UTF-8-encodable: bytes that were not UTF-8 in the file system
    (kept by Python as surrogates) become ``\\xNN`` escapes, so one odd file name can be
    shown, written to CSV, JSON or Parquet, and never aborts a whole run."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    """Whether a file-system name is valid UTF-8 (no surrogate-escaped bytes)."""
    return safe_name(name) == name


def read_regular(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing anything else before reading it.

    Opened non-blocking, so a FIFO cannot hang the caller in ``open()``; checked with
    ``fstat`` on the open descriptor (no race with a swapped path), so a device such as
    ``/dev/zero``, a socket or a folder is refused, as is a file above ``max_bytes``.
    Raises :class:`ImageError` with the reason; OSError for a file that cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"not a regular file ({_kind(info.st_mode)}): only image files are read")
        if info.st_size > max_bytes:
            raise ImageError(f"file too large: {info.st_size} bytes > limit {max_bytes}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew while being read
        raise ImageError(f"file too large: more than {max_bytes} bytes")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


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
        raise ImageError(_unidentified(data)) from None
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


# ISO base media ("ftyp") brands of image formats Pillow cannot read: HEIF (HEIC, an iPhone's
# photos) and AVIF (Pillow reads AVIF only when built with libavif; then it never gets here).
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _unidentified(data: bytes) -> str:
    """Why Pillow could not identify ``data``: a format it does not read, named with the
    fix, or not an image at all."""
    if data[4:8] == b"ftyp":
        size = int.from_bytes(data[:4], "big")
        box = data[8:min(max(size, 16), 256)]  # major brand, version, compatible brands
        brands = {box[i:i + 4] for i in range(0, len(box) - 3, 4)}
        if brands & _HEIF_BRANDS and not brands & _AVIF_BRANDS:
            return ("HEIC/HEIF image: not supported: convert it to JPEG or PNG (e.g. "
                    "heif-convert photo.heic photo.jpg, or export as JPEG from the phone)")
        if brands & _AVIF_BRANDS:
            return ("AVIF image: not supported by this Pillow: convert it to JPEG or PNG "
                    "(e.g. avifdec photo.avif photo.png)")
    return "not an image (Pillow cannot identify it)"


def encode(img: Image.Image, fmt: str, *, quality: int = 95) -> bytes:
    """Encode RGB pixels: lossless sources stay lossless (PNG), lossy ones become JPEG."""
    buf = io.BytesIO()
    if fmt.upper() in _LOSSLESS_FORMATS:
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def prepare_image(data: bytes, size: int | None, *, quality: int = 95,
                  max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> PreparedImage:
    """Validate and normalise one image for a shard.

    Resizes to ``size`` x ``size`` (the study's square resize) only when the image is not
    already that size, and re-encodes only when something changed: an image already at size
    keeps its original bytes, since recompression adds JPEG artefacts a detector may learn.
    An image whose shorter side is below ``min_side`` is refused (ImageError), not upscaled.
    """
    img, fmt, changed = load_rgb(data, max_pixels=max_pixels)
    if min(img.size) < min_side:
        raise ImageError(f"image too small: {img.width}x{img.height} px, shorter side below "
                         f"the minimum of {min_side} px")
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


def recompress_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """An HxWx3 uint8 image after one JPEG round trip at ``quality`` (Pillow's defaults
    otherwise: 4:2:0 chroma subsampling, as most re-uploads do): the compression a detector
    meets when a fake is re-shared."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be between 1 and 100, not {quality!r}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def down_up(image: np.ndarray, factor: int = 2) -> np.ndarray:
    """An HxWx3 uint8 image downscaled by ``factor`` and upscaled back to its size, both
    bilinear: the detail a low-resolution copy loses, at the model's input size."""
    if factor < 1:
        raise ValueError(f"factor must be at least 1, not {factor!r}")
    img = Image.fromarray(image)
    small = img.resize((max(1, img.width // factor), max(1, img.height // factor)),
                       Image.Resampling.BILINEAR)
    return np.asarray(small.resize(img.size, Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_batch(images: Sequence[bytes], size: int, *,
                 skipped: list[tuple[int, str]] | None = None) -> np.ndarray:
    """Decode encoded images to one ``(n, size, size, 3)`` uint8 array (NHWC, as decoded).

    With a ``skipped`` list, an image that cannot be decoded (a shard damaged after prepare)
    is left out of the array and ``(index, reason)`` appended, instead of raising: one bad
    row must not end a trial.

    Batches stay uint8 and channels-last until they reach the device that trains on them:
    a quarter of the bytes of float32 through Ray's object store and to the GPU, and
    normalisation runs where it is cheap (``search.data.stream.Normalize``). Pillow only:
    torchvision's JPEG decoder is 1.3x faster per image here but importing torch costs
    every decode process 2 s.
    """
    out = np.empty((len(images), size, size, 3), np.uint8)
    n = 0
    for i, data in enumerate(images):
        if skipped is None:
            out[n] = decode_to_array(data, size)
        else:
            try:
                out[n] = decode_to_array(data, size)
            except Exception as err:  # Pillow raises many types on damaged bytes
                skipped.append((i, f"{type(err).__name__}: {err}"))
                continue
        n += 1
    return out[:n]


# Truncated files must fail validation, never decode as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "ImageError",
    "PreparedImage",
    "decode_batch",
    "decode_to_array",
    "down_up",
    "encode",
    "load_rgb",
    "is_utf8_name",
    "prepare_image",
    "read_regular",
    "recompress_jpeg",
    "safe_name",
]

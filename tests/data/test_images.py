"""Image decoding and validation: EXIF orientation, 16-bit scaling, decompression bombs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from search.data.images import ImageError, load_rgb, prepare_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    """Stored 40x20, left half red, with orientation 6 (display rotated 90 degrees clockwise):
    the decoded image is 20x40 with red on top."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())
    img, fmt, changed = load_rgb(data)
    assert (fmt, img.size, changed) == ("JPEG", (20, 40), True)
    px = np.asarray(img).astype(int)
    assert px[5, 10, 0] > 200 and px[5, 10, 2] < 60  # top: red
    assert px[35, 10, 2] > 200 and px[35, 10, 0] < 60  # bottom: blue
    kept = prepare_image(data, None)
    assert kept.reencoded and (kept.width, kept.height) == (20, 40)  # rotated pixels stored


def test_16_bit_grey_is_scaled_not_clipped():
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    img16 = Image.new("I;16", (3, 1))
    img16.frombytes(arr.astype("<u2").tobytes())
    data = _encode(img16, "PNG")
    img, _, changed = load_rgb(data)
    assert changed and img.mode == "RGB"
    assert np.asarray(img)[0, :, 0].tolist() == [0, 128, 255]


def test_decompression_bombs_are_refused(monkeypatch):
    data = _encode(Image.new("RGB", (40, 40)), "PNG")
    with pytest.raises(ImageError, match="decompression bomb refused: 40x40 = 1600 pixels"):
        load_rgb(data, max_pixels=1000)  # our own limit, checked before any decoding
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow's own guard (2x = error)
    with pytest.raises(ImageError, match="decompression bomb refused"):
        load_rgb(data, max_pixels=10**9)


@pytest.mark.parametrize("data, reason", [
    (b"", "zero-byte file"),
    (b"GIF89a not really", "not an image"),
])
def test_unusable_bytes_have_reasons(data, reason):
    with pytest.raises(ImageError, match=reason):
        load_rgb(data)


def test_only_regular_files_are_read(tmp_path):
    """A FIFO would block open() forever, /dev/zero would fill memory: both are refused
    before a byte is read, as is a file over the size cap."""
    import os

    from search.data.images import read_regular

    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file \\(a FIFO\\)"):
        read_regular(fifo)
    with pytest.raises(ImageError, match="character device"):
        read_regular("/dev/zero")
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 101)
    with pytest.raises(ImageError, match="file too large: 101 bytes > limit 100"):
        read_regular(big, max_bytes=100)
    assert read_regular(big, max_bytes=101) == b"x" * 101


def test_tiny_images_are_refused_not_upscaled():
    data = _encode(Image.new("RGB", (1, 1)), "PNG")
    with pytest.raises(ImageError, match="image too small: 1x1 px"):
        prepare_image(data, 224)
    assert prepare_image(_encode(Image.new("RGB", (16, 20)), "PNG"), 32).width == 32


def test_undecodable_rows_are_dropped_from_a_batch():
    from search.data.images import decode_batch

    good = _encode(Image.new("RGB", (20, 20), (9, 9, 9)), "PNG")
    skipped: list[tuple[int, str]] = []
    out = decode_batch([good, good[:30], good], 8, skipped=skipped)
    assert out.shape == (2, 8, 8, 3) and [i for i, _ in skipped] == [1]
    with pytest.raises(OSError):
        decode_batch([good[:30]], 8)  # without the list: strict, as the tests compare pixels

import io

import numpy as np
import pytest
from PIL import Image

from pneumo.data.imaging import ImageDecodeError, decode_gray, header_size, resize_array
from tests.conftest import image_bytes


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_a_wide_image_gives_a_square_uint8() -> None:
    out = decode_gray(image_bytes(size=(80, 40)), 32)
    assert out.shape == (32, 32) and out.dtype == np.uint8


def test_squashing_adds_no_borders() -> None:
    white = _png(np.full((20, 40), 255, np.uint8))
    assert decode_gray(white, 40).min() == 255


def test_draft_decoding_matches_a_full_decode() -> None:
    y, x = np.mgrid[0:800, 0:800]
    big = ((np.sin(x / 40) + np.cos(y / 55)) * 60 + 128).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="JPEG", quality=95)
    fast = decode_gray(buf.getvalue(), 64).astype(float)
    slow = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L").resize((64, 64), Image.BILINEAR), float)
    assert np.abs(fast - slow).mean() < 3


def test_16_bit_png_uses_the_full_range() -> None:
    arr = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = decode_gray(_png(arr), 64)
    assert out.min() == 0 and out.max() == 255


def test_rgba_transparent_becomes_black() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = 255  # white but fully transparent
    assert decode_gray(_png(rgba, "RGBA"), 10).max() == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello, not an image", "not an image"),
        (image_bytes()[:200], "truncated"),
        (b"", r"empty \(0 bytes\)"),
    ],
)
def test_bad_bytes_raise_a_readable_error(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        decode_gray(data, 32)


def test_header_size_and_resize_array() -> None:
    assert header_size(image_bytes(size=(50, 20))) == (50, 20)
    stack = np.random.default_rng(0).integers(0, 255, (3, 28, 28), dtype=np.uint8)
    assert resize_array(stack, 64).shape == (3, 64, 64)
    assert resize_array(stack, 28) is stack

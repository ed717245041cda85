"""Decoding image files into the square uint8 grayscale arrays every model and chart uses.

One place decides how an X-ray becomes an array, so the cache, the charts and (later) the
Predict page all see the same pixels.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

# A chest film is at most a few thousand pixels a side; anything far bigger is a bomb.
Image.MAX_IMAGE_PIXELS = 60_000_000
EMPTY = "the file is empty (0 bytes)"  # said as such: a decoder calls it "not an image"


class ImageDecodeError(ValueError):
    """A file that is not a readable image; the message says why, for the UI."""


def decode_gray(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes to a ``size`` x ``size`` uint8 grayscale array, squashed to square.

    Squashed, not cropped or padded: it keeps the whole chest in view (a centre crop can cut
    off the costophrenic angles, where pneumonia often sits), it is what Keras'
    ``flow_from_directory`` and the staged 224 px copy of the Kermany data did, and padding
    adds borders whose width encodes the original aspect ratio, a shortcut a model may learn.

    JPEG ``draft`` lets libjpeg decode at a reduced scale (1/2, 1/4, 1/8), which is several
    times faster for large films than decoding full size and shrinking afterwards.
    """
    if not data:
        raise ImageDecodeError(EMPTY)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("L", (size, size))
            img = ImageOps.exif_transpose(img)
            gray = to_gray(img)
            return np.asarray(gray.resize((size, size), Image.BILINEAR, reducing_gap=2.0), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as exc:
        raise ImageDecodeError(decode_reason(exc)) from exc


def header_size(data: bytes) -> tuple[int, int]:
    """Width and height from the file header, without decoding the pixels."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a stack of square uint8 images (N, S, S) to (N, size, size)."""
    if images.shape[1:] == (size, size):
        return images
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    return out


def to_gray(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit grey: 16/32-bit stretched over its own range, alpha flattened on black."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("L")


def decode_reason(exc: Exception) -> str:
    """A decoder's exception in words for the user."""
    text = str(exc) or type(exc).__name__
    if "cannot identify image file" in text:
        return "not an image file (or an unsupported format)"
    if any(word in text.lower() for word in ("truncated", "broken data stream", "premature end")):
        return "truncated or corrupt image data"
    return text[:300]


def outline(gray: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (0, 220, 0)) -> np.ndarray:
    """The film with the border of a mask drawn on it: (H, W, 3) uint8."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb[mask & ~inner] = colour
    return rgb

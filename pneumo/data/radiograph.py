"""Reading one uploaded X-ray (JPEG, PNG or DICOM) into a grayscale array, or a clear refusal.

The Predict page and the upload fuzzer both come through ``read``, so every malformed file
meets the same checks. The bytes stay in memory: nothing is written to disk, let alone to a
path built from the upload's name.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from pneumo.data.imaging import EMPTY, ImageDecodeError, decode_reason, to_gray

if TYPE_CHECKING:
    import pydicom

logging.getLogger("pydicom").setLevel(logging.ERROR)  # its warnings are warnings too: see _read_dicom

MAX_BYTES = 50 * 1024 * 1024  # a film; model files have their own, larger limit (explain.predictor)
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # one place: imaging's decompression-bomb limit
MAX_SIDE = 16_384
# The smallest films of any supported data set are PneumoniaMNIST's 28 px; anything smaller
# carries no chest to speak of (a 1 x 1 PNG was once scored 99.9 % pneumonia).
MIN_SIDE = 28
EXTENSIONS = (".jpg", ".jpeg", ".png", ".dcm", ".dicom")
# Kermany's films run from square to about 3:1 (chest_xray_hires), RSNA's are square: a film much
# longer than that, squashed to a model's input, shows no chest any model has seen.
MAX_ASPECT = 4

_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
_EXPECTED = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".dcm": "DICOM", ".dicom": "DICOM"}


@dataclass
class Radiograph:
    """A film: uint8 grayscale pixels at full size, how they were read, and what is known about it."""

    pixels: np.ndarray  # (H, W) uint8
    kind: str  # JPEG, PNG or DICOM; or the data set it comes from
    notes: list[str] = field(default_factory=list)  # what reading it did (window applied, inverted, ...)
    name: str = ""
    label: int | None = None  # 1 = pneumonia; known for films from a data set, not for uploads
    lesion: np.ndarray | None = None  # (H, W) bool; known for synthetic films and boxed RSNA films
    header: dict[str, str] = field(default_factory=dict)  # DICOM: view, sex, age (those it states)

    @property
    def odd_shape(self) -> str | None:
        """Why the film's shape makes any model's answer meaningless, or None: said for every model,
        also one from elsewhere that brings no record of its training films to compare with."""
        height, width = self.pixels.shape
        ratio = max(height, width) / min(height, width)
        if ratio <= MAX_ASPECT:
            return None
        return (f"This image is {height} x {width} pixels ({ratio:.0f}:1), while chest films are at most about 3:1: "
                "squashed to the model's input it shows no chest, so its probability means nothing.")


def read(data: bytes, name: str = "") -> Radiograph:
    """Decode an upload by its content (not its name); ImageDecodeError says why it cannot be."""
    if not data:
        raise ImageDecodeError(EMPTY)
    if len(data) > MAX_BYTES:
        raise ImageDecodeError(f"the file is {len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB")
    kind = sniff(data)
    if kind is None:
        raise ImageDecodeError("not a JPEG, PNG or DICOM file (its content matches none of them)")
    notes = []
    suffix = PurePath(name).suffix.lower()
    if name and _EXPECTED.get(suffix) != kind:
        notes.append(f"named {suffix or 'without an extension'} but the content is {kind}: read as {kind}")
    header: dict[str, str] = {}
    image = _read_dicom(data, notes, header) if kind == "DICOM" else _read_pil(data, notes)
    return Radiograph(image, kind, notes, name, header=header)


def sniff(data: bytes) -> str | None:
    """The format the bytes say they are: JPEG, PNG, DICOM or None."""
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return kind
    if data[128:132] == b"DICM":
        return "DICOM"
    return None


def _read_pil(data: bytes, notes: list[str]) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_size(*img.size)
            if img.mode not in ("L", "RGB"):
                notes.append(_MODE_NOTES.get(img.mode, f"{img.mode} pixels converted to grey"))
            oriented = ImageOps.exif_transpose(img)
            if oriented.size != img.size or _has_rotation(img):
                notes.append("EXIF orientation applied")
            return np.asarray(to_gray(oriented), dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # PIL's own check, met before ours: say ours
        raise ImageDecodeError(f"the image declares more than {MAX_PIXELS:,} pixels, the limit (a decompression "
                               "bomb?)") from exc
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, TypeError, Image.UnidentifiedImageError) as exc:
        raise ImageDecodeError(decode_reason(exc)) from exc


_MODE_NOTES = {
    "I;16": "16-bit grey scaled to 8 bits (its own minimum to maximum)",
    "I;16B": "16-bit grey scaled to 8 bits (its own minimum to maximum)",
    "I": "32-bit grey scaled to 8 bits (its own minimum to maximum)",
    "RGBA": "transparency flattened onto black, colour converted to grey",
    "LA": "transparency flattened onto black",
    "P": "palette colours converted to grey",
    "PA": "palette colours converted to grey",
}


def _has_rotation(img: Image.Image) -> bool:
    return img.getexif().get(0x0112, 1) != 1


def _read_dicom(data: bytes, notes: list[str], header: dict[str, str]) -> np.ndarray:
    """pydicom warns about every oddity it forgives; what matters reaches the user as notes or errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _decode_dicom(data, notes, header)


# Header fields worth showing a class: AP films are taken of sicker patients lying in bed, a
# shortcut a model can learn; sex and age say who the set is about.
HEADER_FIELDS = {"view": "ViewPosition", "sex": "PatientSex", "age": "PatientAge"}


def _header(ds: pydicom.Dataset) -> dict[str, str]:
    """The HEADER_FIELDS the file states, as text (an unreadable field is left out, never fatal)."""
    found = {}
    for name, keyword in HEADER_FIELDS.items():
        try:
            value = str(ds.get(keyword, "") or "").strip()
        except (*_format_errors(), *_PIXEL_ERRORS):
            continue
        if value and value.isprintable():
            found[name] = value[:16]
    if re.fullmatch(r"0*\d+Y?", found.get("age", "")):  # DICOM's "051Y" and RSNA's "51" alike: years
        found["age"] = str(int(found["age"].rstrip("Y")))
    return found


def _decode_dicom(data: bytes, notes: list[str], header: dict[str, str]) -> np.ndarray:
    """pydicom parses each element when it is first read, so every access to ``ds`` sits in the try."""
    import pydicom  # here, not above: 0.25 s that every page importing this module would pay

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        header.update(_header(ds))
        rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        if not rows or not cols or not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise ImageDecodeError("the DICOM file holds no image: no pixel data (or the file was cut short, "
                                  "as an interrupted copy or download leaves it)")
        _check_size(cols, rows)
        pixels = ds.pixel_array
    except ImageDecodeError:
        raise
    except _format_errors() as exc:
        raise ImageDecodeError(f"not a readable DICOM file ({decode_reason(exc)})") from exc
    except _PIXEL_ERRORS as exc:
        raise ImageDecodeError(f"the DICOM pixel data cannot be decoded ({decode_reason(exc)})") from exc
    try:
        pixels = _grey(ds, pixels, notes)
    except (*_format_errors(), *_PIXEL_ERRORS) as exc:
        raise ImageDecodeError(f"the DICOM display settings cannot be applied ({decode_reason(exc)})") from exc
    lo, hi = float(pixels.min()), float(pixels.max())
    if not np.isfinite([lo, hi]).all():
        raise ImageDecodeError("the DICOM pixel values are not finite numbers")
    if pixels.dtype in (np.uint8, np.uint16):  # a table of every stored value: same result, 2.4x faster
        levels = np.arange(int(hi) + 1, dtype=np.float64)
        return _stretch(levels, lo, hi)[pixels]
    return _stretch(pixels, lo, hi)


def _stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``lo``..``hi`` spread over 0..255 (values below ``lo`` only occur in a lookup table's unused head)."""
    scaled = (values - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(values)
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


@functools.cache
def _format_errors() -> tuple[type[Exception], ...]:
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return InvalidDicomError, BytesLengthException, struct.error, AttributeError, KeyError, IndexError


_PIXEL_ERRORS = (OSError, ValueError, TypeError, RuntimeError, NotImplementedError, EOFError, ArithmeticError)


def _grey(ds: pydicom.Dataset, pixels: np.ndarray, notes: list[str]) -> np.ndarray:
    """The stored values as a radiologist's viewer shows them: first frame, modality and VOI LUTs,
    MONOCHROME1 turned so that dense is bright."""
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
        notes.append("multi-frame DICOM: first frame used")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3:
        pixels = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        notes.append(f"{photometric} colour converted to grey")
    else:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut

        pixels = apply_modality_lut(pixels, ds)
        if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
            notes.append("modality rescale applied")
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            pixels = apply_voi_lut(pixels, ds)
            notes.append("VOI LUT / window applied")
    if pixels.dtype not in (np.uint8, np.uint16):  # stored values as they are read stay integers
        pixels = np.asarray(pixels, dtype=np.float64)
    if photometric == "MONOCHROME1":
        pixels = pixels.max() - pixels
        notes.append("MONOCHROME1 inverted (bright = dense)")
    return pixels


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageDecodeError(f"the image declares an empty size ({width} x {height})")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageDecodeError(f"the image declares {width:,} x {height:,} pixels; the limit is "
                               f"{MAX_PIXELS:,} pixels and {MAX_SIDE:,} a side (a decompression bomb?)")
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError(f"the image is {width} x {height} pixels: too small to show a chest (the smallest "
                               f"films pneumo reads are {MIN_SIDE} x {MIN_SIDE}, PneumoniaMNIST's)")


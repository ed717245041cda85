"""Model files from anywhere, checked before Keras opens them, then loaded with ``safe_mode``.

An uploaded file is untrusted: it may carry code (refused by Keras' safe_mode), be too big, or
be a zip or HDF5 "bomb" that declares far more than it stores. The checks read only sizes,
the zip's directory and the HDF5 headers, so a refusal comes in milliseconds, with a reason.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import h5py
import keras

# Model files. The upload limit (.streamlit/config.toml's server.maxUploadSize is the largest of
# this and radiograph.MAX_BYTES, a test keeps them equal): this project's ResNet50 runs save 93 MB,
# published chest X-ray models 80-250 MB. A .keras file is a zip: Keras stores its members
# uncompressed (1:1), so one that inflates far beyond its stored size is a decompression bomb
# (a 3.6 MB file inflating to 3.5 GB took 8 GB of memory and 55 s before this check).
MAX_MODEL_BYTES = 500 * 2**20
MAX_UNPACKED_BYTES = 4 * MAX_MODEL_BYTES  # what a model file may hold once inflated
MAX_RATIO = 200  # inflated : stored, for a member (or HDF5 data) over RATIO_FLOOR
RATIO_FLOOR = 8 * 2**20  # small members may compress as well as they like
MAX_MEMBERS = 1_000  # a Keras zip holds 3 files, plus its assets
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"

class ModelLoadError(ValueError):
    """A model file pneumo cannot use; the message says why, for the user."""


def _megabytes(n: int) -> str:
    if n < 2**20:
        return f"{n / 2**10:,.1f} KB"
    return f"{n / 2**20:,.1f} MB" if n < 10 * 2**20 else f"{n / 2**20:,.0f} MB"


def _too_many(members: int) -> None:
    if members > MAX_MEMBERS:
        raise ModelLoadError(f"the zip archive holds {members:,} files; a Keras model holds a few "
                             f"(pneumo opens at most {MAX_MEMBERS:,})")


def check_file(path: Path) -> None:
    """Refuse, before Keras opens it, a model file too big or one that would inflate too far.

    Reads only the file's size, a .keras zip's central directory (what each member declares it
    holds: Python's zipfile, which Keras reads through, never inflates a member past that) and an
    .h5 file's dataset headers, so it answers in milliseconds whatever the file claims.
    """
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"the file is {_megabytes(size)}; a model file may be at most "
                             f"{_megabytes(MAX_MODEL_BYTES)}")
    with open(path, "rb") as file:
        head = file.read(8)
        if head.startswith(_ZIP_SIGNATURE):
            _check_zip(file, size)
        elif head == _HDF5_SIGNATURE:
            _check_h5(path, size)


def _check_zip(file, size: int) -> None:
    # The member count from the end record, before zipfile parses one entry per member (a
    # 500 MB directory of empty members would take minutes and gigabytes).
    file.seek(max(0, size - 22 - 65_535))
    tail = file.read()
    end = tail.rfind(b"PK\x05\x06")
    if end >= 0 and len(tail) - end >= 22:
        _too_many(int.from_bytes(tail[end + 10:end + 12], "little"))  # 0xFFFF: ZIP64, more than any model
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ModelLoadError(f"not a loadable Keras model (a damaged zip archive: {exc})") from exc
    _too_many(len(members))  # what zipfile found, should the end record have said otherwise
    total = sum(member.file_size for member in members)
    if total > MAX_UNPACKED_BYTES:
        raise ModelLoadError(f"the {_megabytes(size)} file would inflate to {_megabytes(total)}; pneumo opens "
                             f"at most {_megabytes(MAX_UNPACKED_BYTES)} (a decompression bomb?)")
    for member in members:
        if member.file_size > RATIO_FLOOR and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise ModelLoadError(
                f"{member.filename} inflates from {_megabytes(member.compress_size)} to "
                f"{_megabytes(member.file_size)} ({member.file_size / max(member.compress_size, 1):,.0f}:1); "
                f"Keras stores a model's files uncompressed, and more than {MAX_RATIO}:1 is a decompression bomb")


def _check_h5(path: Path, size: int) -> None:
    """HDF5 may declare data it does not store (a fill value, or compressed chunks): sum what the
    datasets declare, as the .keras check does with a zip's members."""
    declared = 0
    objects = 0

    def visit(_name: str, item) -> bool | None:
        nonlocal declared, objects
        objects += 1
        if isinstance(item, h5py.Dataset):
            declared += item.size * item.dtype.itemsize
        return True if objects > 100 * MAX_MEMBERS else None  # True stops the walk

    try:
        with h5py.File(path, "r") as file:
            file.visititems(visit)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"not a loadable Keras model (a damaged HDF5 file: {str(exc)[:200]})") from exc
    if objects > 100 * MAX_MEMBERS:
        raise ModelLoadError(f"the HDF5 file holds more than {100 * MAX_MEMBERS:,} objects; a Keras model "
                             "holds a few per layer")
    if declared > MAX_UNPACKED_BYTES or (declared > RATIO_FLOOR and declared > MAX_RATIO * size):
        raise ModelLoadError(f"the {_megabytes(size)} file declares {_megabytes(declared)} of weights; pneumo "
                             f"opens at most {_megabytes(MAX_UNPACKED_BYTES)}, and at most {MAX_RATIO}:1 of "
                             "what is stored (a decompression bomb?)")


def load_file(path: Path | str) -> keras.Model:
    """Load a .keras or .h5 model with ``safe_mode=True``: code hidden in a file is refused.
    The file is checked first (``check_file``): too big, or inflating too far, is refused unopened."""
    path = Path(path)
    try:
        check_file(path)
    except ModelLoadError:
        raise
    except Exception as exc:  # an unreadable file, or a check tripped by a damaged one: a message all the same
        raise ModelLoadError(f"the file cannot be checked ({type(exc).__name__}: {str(exc)[:300]})") from exc
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text or "arbitrary code" in text:
            raise ModelLoadError("the model contains code (a Lambda layer or a custom function), which pneumo does "
                                 "not run from an uploaded file (Keras safe_mode). Rebuild it with built-in layers."
                                 ) from exc
        if "Unknown layer" in text or "Could not locate" in text:
            raise ModelLoadError(f"the model uses a layer Keras does not know ({text.splitlines()[0][:200]}); "
                                 "custom layers cannot be loaded here") from exc
        raise ModelLoadError(f"not a loadable Keras model ({type(exc).__name__}: {text[:300]})") from exc


def load_bytes(data: bytes) -> keras.Model:
    """Load uploaded model bytes. They go to a private temporary folder under a fixed name
    chosen by their content (a .keras file is a zip, .h5 is HDF5), never the upload's name."""
    if len(data) > MAX_MODEL_BYTES:
        raise ModelLoadError(f"the file is {_megabytes(len(data))}; a model file may be at most "
                             f"{_megabytes(MAX_MODEL_BYTES)}")
    if data.startswith(_ZIP_SIGNATURE):
        suffix = ".keras"
    elif data.startswith(_HDF5_SIGNATURE):
        suffix = ".h5"
    else:
        raise ModelLoadError("not a Keras model file: a .keras file is a zip archive and an .h5 file is HDF5, "
                             "and this is neither")
    with tempfile.TemporaryDirectory(prefix="pneumo-upload-") as folder:
        path = Path(folder) / f"model{suffix}"
        path.write_bytes(data)
        return load_file(path)

"""Upload files of every kind the Predict page meets, generated: good ones and broken ones."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid


def gradient(height: int = 60, width: int = 80) -> np.ndarray:
    """A left-to-right ramp 0..255 with a bright square at the top left: orientation is visible."""
    ramp = np.tile(np.linspace(0, 255, width), (height, 1))
    ramp[: height // 4, : width // 4] = 255
    return ramp.astype(np.uint8)


def pil_file(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(arr: np.ndarray | None = None, **options) -> bytes:
    return pil_file(Image.fromarray(gradient() if arr is None else arr), "JPEG", quality=95, **options)


def png(arr: np.ndarray | None = None) -> bytes:
    return pil_file(Image.fromarray(gradient() if arr is None else arr), "PNG")


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG of a uint16 array."""
    return pil_file(Image.fromarray(arr.astype(np.uint16)), "PNG")


def jpeg_rotated_by_exif() -> bytes:
    """A JPEG stored sideways with EXIF orientation 6 (rotate 90° clockwise to view)."""
    stored = Image.fromarray(gradient()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return pil_file(stored, "JPEG", quality=95, exif=exif.tobytes())


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge size (with a tiny, wrong body): a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def dicom(arr: np.ndarray, photometric: str = "MONOCHROME2", window: tuple[float, float] | None = None,
          slope: float = 1.0, intercept: float = 0.0, pixels: bool = True) -> bytes:
    """A DICOM (CR) file of a uint16 array, with optional window and rescale."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if pixels:
        ds.PixelData = arr.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def dicom_jpeg(arr: np.ndarray, view: str = "PA", sex: str = "F", age: str = "051Y") -> bytes:
    """An 8-bit DICOM as the RSNA challenge ships them: JPEG Baseline pixel data, view/sex/age set."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture, as RSNA's
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition, ds.PatientSex, ds.PatientAge = "CR", view, sex, age
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([jpeg(arr.astype(np.uint8))])
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def dicom_odd_columns() -> bytes:
    """A DICOM whose Columns (an unsigned short) holds three bytes: pydicom fails only on reading it."""
    data = dicom(gradient().astype(np.uint16))
    tag = b"\x28\x00\x11\x00US\x02\x00"
    at = data.index(tag) + len(tag)
    return data[:at - 2] + b"\x03\x00" + data[at:at + 2] + b"\x00" + data[at + 2:]


def good_files() -> dict[str, bytes]:
    """One readable file of each kind, by a name that says what it is."""
    ramp16 = (gradient().astype(np.uint16) * 16)
    rgba = np.dstack([gradient()] * 3 + [np.full(gradient().shape, 255, np.uint8)])
    return {
        "grey.jpg": jpeg(),
        "rgb.jpeg": pil_file(Image.fromarray(gradient()).convert("RGB"), "JPEG"),
        "grey.png": png(),
        "sixteen.png": png16(ramp16),
        "rgba.png": pil_file(Image.fromarray(rgba, "RGBA"), "PNG"),
        "palette.png": pil_file(Image.fromarray(gradient()).convert("P"), "PNG"),
        "exif.jpg": jpeg_rotated_by_exif(),
        "mono2.dcm": dicom(ramp16),
        "mono1.dcm": dicom(ramp16, "MONOCHROME1"),
    }


RSNA_HEADER = "patientId,x,y,width,height,Target\n"


def noisy_film(seed: int, side: int = 128) -> np.ndarray:
    """A grey ramp with seeded noise, so films differ."""
    rng = np.random.default_rng(seed)
    return np.clip(gradient(side, side) + rng.normal(0, 10, (side, side)), 0, 255).astype(np.uint8)


def rsna_layout(root: Path, labels: str, films: dict[str, bytes]) -> Path:
    """An RSNA challenge folder: these label lines (after the header) and these patients' DICOMs."""
    (root / "stage_2_train_images").mkdir(parents=True)
    (root / "stage_2_train_labels.csv").write_text(RSNA_HEADER + labels)
    for patient, data in films.items():
        (root / "stage_2_train_images" / f"{patient}.dcm").write_bytes(data)
    return root


def rsna_folder(root: Path) -> Path:
    """Ten patients: p0..p3 pneumonia (p0 with two boxes), p4..p9 not; p9's image is missing,
    p5 is MONOCHROME1 (16 bits), and one image (stray) has no label."""
    labels = "p0,10,20,30,40,1\np0,60,20,30,40,1\n" + "".join(f"p{i},8,8,32,32,1\n" for i in (1, 2, 3))
    labels += "".join(f"p{i},,,,,0\n" for i in range(4, 10))
    films = {f"p{i}": dicom_jpeg(noisy_film(i), view="AP" if i < 3 else "PA", sex="MF"[i % 2])
             for i in range(9) if i != 5}
    films["p5"] = dicom((noisy_film(5).astype(np.uint16) * 16), photometric="MONOCHROME1")
    films["stray"] = dicom_jpeg(noisy_film(99))
    return rsna_layout(root, labels, films)

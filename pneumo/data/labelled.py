"""Data sets that come as image files plus a table of labels, instead of one folder per class.

- **RSNA Pneumonia Detection Challenge**: ``stage_2_train_images/<patientId>.dcm`` (or
  ``stage_1_…``) and ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``: one row
  per radiologist box for a positive patient, one row without a box for a negative one), and
  optionally ``stage_2_detailed_class_info.csv``. Found by itself when such a folder is picked.
- **Any labelled CSV** (NIH ChestX-ray14, CheXpert, hospital exports): a CSV naming each file's
  path (relative to the CSV's folder) and label, with optional split and patient columns.

Both are read by the same DICOM/JPEG/PNG reader as uploads (``radiograph.read``), decoded in
parallel into an array the cache provides (on disk, so a 26,684-film set is never all in memory).
Sets without an official split get a seeded, patient-grouped, stratified one (``splits.carve``).
Radiologist boxes become lesion masks, as the synthetic set's drawn lesions are.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pandas as pd
from PIL import Image

from pneumo.data import radiograph, splits
from pneumo.data.imaging import ImageDecodeError
from pneumo.data.sources import (
    CLASSES,
    RECORD_COLUMNS,
    DatasetError,
    ImageSet,
    ProgressCallback,
    Source,
    _digest,
    _fingerprint,
    _stat,
    in_parallel,
)

Box = tuple[float, float, float, float]  # x, y, width, height in the film's own pixels
HEADER_COLUMNS = list(radiograph.HEADER_FIELDS)  # view, sex, age: extra record columns
Allocate = Callable[[int, int, type], np.ndarray]  # (images, size, dtype) -> a writable (N, size, size) array

RSNA_LABELS = ("stage_2_train_labels.csv", "stage_1_train_labels.csv")
RSNA_IMAGES = ("stage_2_train_images", "stage_1_train_images")
RSNA_CLASSES = ("stage_2_detailed_class_info.csv", "stage_1_detailed_class_info.csv")
RSNA_HEADER = ["patientId", "x", "y", "width", "height", "Target"]
SHOWN_PROBLEMS = 50  # unlabelled images listed by name; the rest are counted


@dataclass
class Labelled:
    """One labelled image file, before decoding."""

    path: Path
    rel: str
    label: int
    patient: str
    split: str = ""  # "" when the set has no split of its own
    subtype: str = ""
    boxes: list[Box] = field(default_factory=list)


def _numpy_allocate(n: int, size: int, dtype: type = np.uint8) -> np.ndarray:
    return np.zeros((n, size, size), dtype)


class LabelledSource(Source):
    """What RSNA and CSV sets share: decode a list of labelled files, carve a split if there is none."""

    split_seed = 0

    def entries(self) -> tuple[list[Labelled], list[str]]:
        """The labelled files found, and notes on what was not (for the Dataset page)."""
        raise NotImplementedError

    def fingerprint(self, size: int) -> str:
        entries, _ = self.entries()
        return _fingerprint(type(self).__name__, self.spec, [(e.rel, e.label, e.split, e.boxes, *_stat(e.path))
                                                             for e in entries], size, self.split_seed)

    def build(self, size: int, progress: ProgressCallback | None = None,
              allocate: Allocate = _numpy_allocate) -> ImageSet:
        entries, notes = self.entries()
        if not entries:
            raise DatasetError(f"{self.name}: no labelled image found. " + " ".join(notes))
        images = allocate(len(entries), size, np.uint8)
        results: list[tuple[int, int, str, dict[str, str]] | str] = [""] * len(entries)

        def work(i: int) -> None:
            try:
                data = entries[i].path.read_bytes()
                film = radiograph.read(data, entries[i].path.name)
                images[i] = np.asarray(Image.fromarray(film.pixels).resize((size, size), Image.BILINEAR,
                                                                           reducing_gap=2.0))
                height, width = film.pixels.shape
                results[i] = (width, height, _digest(data), film.header)
            except (ImageDecodeError, OSError) as exc:
                results[i] = str(exc)

        in_parallel(work, len(entries), progress)
        return self._assemble(entries, results, images, notes, size, allocate)

    def _assemble(self, entries: list[Labelled], results: list, images: np.ndarray, notes: list[str], size: int,
                  allocate: Allocate) -> ImageSet:
        kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
        skipped = [(entries[i].rel, results[i]) for i, r in enumerate(results) if isinstance(r, str)]
        if not kept:
            raise DatasetError(f"{self.name}: none of its {len(entries):,} images could be read "
                               f"(first: {skipped[0][0]}: {skipped[0][1]}).")
        if len(kept) < len(entries):  # closed up into a new array, a chunk at a time (it may be on disk)
            packed = allocate(len(kept), size, np.uint8)
            for start in range(0, len(kept), 1024):
                packed[start:start + 1024] = images[kept[start:start + 1024]]
            images = packed
        masks = allocate(len(kept), size, np.bool_)
        rows = []
        for n, i in enumerate(kept):
            entry, (width, height, digest, header) = entries[i], results[i]
            for x, y, w, h in entry.boxes:
                x0, y0 = int(x * size / width), int(y * size / height)
                x1, y1 = int(np.ceil((x + w) * size / width)), int(np.ceil((y + h) * size / height))
                masks[n, max(0, y0):min(size, y1), max(0, x0):min(size, x1)] = True
            rows.append((entry.rel, entry.split, entry.label, CLASSES[entry.label], entry.patient, entry.subtype,
                         width, height, digest, len(entry.boxes), *(header.get(c, "") for c in HEADER_COLUMNS)))
        records = pd.DataFrame(rows, columns=[*RECORD_COLUMNS, "boxes", *HEADER_COLUMNS])
        split_note = ""
        if (records["split"] == "").any():
            records["split"] = splits.carve(records, seed=self.split_seed)
            split_note = splits.carve_note(self.split_seed)
        has_boxes = bool(records["boxes"].any())
        return ImageSet(name=self.name, synthetic=False, records=records, images=images,
                        masks=masks if has_boxes else None, skipped=skipped, notes=notes, split_note=split_note)


# ---------------------------------------------------------------------------------------
# RSNA Pneumonia Detection Challenge


def rsna_files(root: Path) -> tuple[Path, Path] | None:
    """(labels CSV, images folder) when ``root`` is in the RSNA layout, else None."""
    for labels, images in zip(RSNA_LABELS, RSNA_IMAGES, strict=True):
        if (root / labels).is_file():
            folder = next((root / name for name in (images, *RSNA_IMAGES) if (root / name).is_dir()), root / images)
            return root / labels, folder
    return None


def read_rsna_labels(path: Path) -> dict[str, tuple[int, list[Box]]]:
    """patientId -> (Target, boxes), from the official labels file; DatasetError names the line
    that is wrong (a malformed file is refused whole: a half-read label file would mislabel)."""
    patients: dict[str, tuple[int, list[Box]]] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path.name} cannot be read: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != RSNA_HEADER:
        raise DatasetError(f"{path.name} line 1: expected the header {','.join(RSNA_HEADER)}, found "
                           f"{','.join(header or [])!r}")
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        try:
            patient, label, box = _rsna_row(row)
        except ValueError as exc:
            raise DatasetError(f"{path.name} line {line}: {exc}: {','.join(row)[:120]!r}") from exc
        known_label, boxes = patients.setdefault(patient, (label, []))
        if known_label != label:
            raise DatasetError(f"{path.name} line {line}: patient {patient} is Target {label} here and "
                               f"{known_label} on an earlier line")
        if box:
            boxes.append(box)
    return patients


def _rsna_row(row: list[str]) -> tuple[str, int, Box | None]:
    if len(row) != len(RSNA_HEADER):
        raise ValueError(f"{len(row)} fields, expected {len(RSNA_HEADER)}")
    patient, *box_text, target = (cell.strip() for cell in row)
    if not patient or "/" in patient or patient.startswith("."):
        raise ValueError("no usable patientId")
    if target not in ("0", "1"):
        raise ValueError(f"Target must be 0 or 1, not {target!r}")
    if not any(box_text):
        if target == "1":
            raise ValueError("Target 1 needs a box (x, y, width, height)")
        return patient, 0, None
    if target == "0":
        raise ValueError("Target 0 with a box")
    try:
        x, y, w, h = (float(v) for v in box_text)
    except ValueError:
        raise ValueError("x, y, width and height must all be numbers") from None
    if not all(np.isfinite([x, y, w, h])) or min(x, y) < 0 or min(w, h) <= 0:
        raise ValueError("a box needs x, y >= 0 and a positive width and height")
    return patient, 1, (x, y, w, h)


def _rsna_classes(root: Path) -> dict[str, str]:
    """patientId -> detailed class (Normal / No Lung Opacity / Not Normal / Lung Opacity), if given;
    optional, so an unreadable file is ignored rather than fatal."""
    for name in RSNA_CLASSES:
        try:
            with open(root / name, encoding="utf-8-sig", newline="") as f:
                return {row["patientId"]: row["class"] for row in csv.DictReader(f) if row.get("patientId")}
        except (OSError, KeyError, UnicodeDecodeError, csv.Error):
            continue
    return {}


class RsnaSource(LabelledSource):
    """A folder in the RSNA challenge layout; a partial download is normal and reported."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spec = str(root)
        self.name = f"RSNA Pneumonia {root}"

    @property
    def location(self) -> Path:
        return self.root

    def entries(self) -> tuple[list[Labelled], list[str]]:
        files = rsna_files(self.root)
        if files is None:
            raise DatasetError(f"No RSNA labels file ({' or '.join(RSNA_LABELS)}) in {self.root}")
        labels_file, folder = files
        patients = read_rsna_labels(labels_file)
        classes = _rsna_classes(self.root)
        try:
            found = {Path(e.name).stem: Path(e.path) for e in os.scandir(folder)
                     if e.name.lower().endswith(".dcm") and e.is_file()}
        except OSError:
            found = {}
        entries = [Labelled(found[p], f"{folder.name}/{found[p].name}", label, p, subtype=classes.get(p, ""),
                            boxes=boxes) for p, (label, boxes) in sorted(patients.items()) if p in found]
        notes = []
        missing = len(patients) - len(entries)
        if missing:
            notes.append(f"{missing:,} of the {len(patients):,} labelled patients have no image in {folder.name}/ "
                         "(a partial download is normal: the rest are used).")
        unlabelled = sorted(set(found) - set(patients))
        if unlabelled:
            listed = ", ".join(f"{p}.dcm" for p in unlabelled[:SHOWN_PROBLEMS])
            more = f" and {len(unlabelled) - SHOWN_PROBLEMS:,} more" if len(unlabelled) > SHOWN_PROBLEMS else ""
            notes.append(f"{len(unlabelled):,} image(s) have no label and are left out: {listed}{more}.")
        return entries, notes


# ---------------------------------------------------------------------------------------
# Any labelled CSV

COLUMN_GUESSES = {
    "path": ("path", "file", "filename", "file_name", "image", "image index", "image_path", "dicom"),
    "label": ("label", "target", "pneumonia", "finding labels", "class", "diagnosis"),
    "split": ("split", "fold", "set", "subset"),
    "patient": ("patient", "patientid", "patient id", "patient_id", "subject", "subject_id"),
}
POSITIVE = {"1", "1.0", "true", "yes", "pneumonia", "positive"}
NEGATIVE = {"0", "0.0", "false", "no", "normal", "negative", "no finding"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


def guess_columns(columns: list[str]) -> dict[str, str]:
    """A sensible first guess of which column holds what (the sidebar lets the user change it)."""
    lowered = {c.strip().lower(): c for c in columns}
    guess = {}
    for role, names in COLUMN_GUESSES.items():
        hit = next((lowered[n] for n in names if n in lowered), None)
        if hit is not None and hit not in guess.values():
            guess[role] = hit
    return guess


def csv_columns(path: Path) -> list[str]:
    """The header of a CSV, for the sidebar's column pickers; DatasetError when it cannot be read."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path.name} cannot be read as a CSV: {exc}") from exc


def label_value(text: str) -> int | None:
    """1 for pneumonia, 0 for not, None when unknown (blank, CheXpert's -1 "uncertain"). A
    multi-label cell (NIH's ``Effusion|Pneumonia``) is pneumonia when any finding is."""
    value = text.strip().lower()
    if "|" in value:
        return int("pneumonia" in (part.strip() for part in value.split("|")))
    if value in POSITIVE:
        return 1
    if value in NEGATIVE:
        return 0
    return None


def csv_spec(path: Path | str, columns: dict[str, str]) -> str:
    """The data set spec of a CSV with its column choices: ``labels.csv?path=File&label=Target``."""
    return f"{path}?{urlencode(columns)}" if columns else str(path)


class CsvSource(LabelledSource):
    """Images named by a CSV; paths are relative to the CSV's folder and must stay inside it."""

    def __init__(self, path: Path, columns: dict[str, str] | None = None) -> None:
        self.path = path
        self.columns = dict(columns or {})
        self.spec = csv_spec(path, self.columns)
        self.name = f"CSV {path.name}"

    @classmethod
    def from_spec(cls, spec: str) -> CsvSource:
        path, _, query = spec.partition("?")
        columns = dict(parse_qsl(query))
        unknown = set(columns) - set(COLUMN_GUESSES)
        if unknown:
            raise DatasetError(f"unknown column role(s) {', '.join(sorted(unknown))}: use "
                               f"{', '.join(COLUMN_GUESSES)}")
        return cls(Path(path).expanduser(), columns)

    @property
    def location(self) -> Path:
        return self.path

    def entries(self) -> tuple[list[Labelled], list[str]]:
        if not self.path.is_file():
            raise DatasetError(f"File not found: {self.path}")
        header = csv_columns(self.path)
        columns = {**guess_columns(header), **self.columns}
        for role in ("path", "label"):
            if columns.get(role) not in header:
                raise DatasetError(f"{self.path.name}: choose the column holding each image's {role} "
                                   f"(columns: {', '.join(header)[:300]})")
        base = self.path.parent.resolve()
        entries, notes, unknown, outside, missing = [], [], 0, 0, 0
        with open(self.path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            try:
                for row in reader:
                    label = label_value(row.get(columns["label"]) or "")
                    rel = (row.get(columns["path"]) or "").strip()
                    file = (base / rel).resolve()
                    if label is None:
                        unknown += 1
                    elif not rel or not file.is_relative_to(base):
                        outside += 1
                    elif not file.is_file():
                        missing += 1
                    else:
                        split = SPLIT_NAMES.get((row.get(columns.get("split", "")) or "").strip().lower(), "")
                        patient = (row.get(columns.get("patient", "")) or "").strip() or rel
                        entries.append(Labelled(file, rel, label, patient, split))
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DatasetError(f"{self.path.name} line {reader.line_num}: {exc}") from exc
        for count, what in ((unknown, "have a label that is neither pneumonia nor normal (blank, uncertain)"),
                            (outside, "name no file, or a file outside the CSV's folder"),
                            (missing, "name a file that is not there")):
            if count:
                notes.append(f"{count:,} row(s) {what}: left out.")
        return entries, notes

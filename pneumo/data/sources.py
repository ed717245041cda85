"""One data set interface over three sources: a Kaggle/Mendeley folder, PneumoniaMNIST, synthetic.

A source knows how to list and decode its images. ``pneumo.data.cache.load`` turns a source
into an ``ImageSet``: every image decoded once at one square size, with a table of records
(split, label, patient, subtype, ...) whose row i describes image i.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo.data import mnist, synthetic
from pneumo.data.imaging import ImageDecodeError, decode_gray, header_size, resize_array
from pneumo.data.naming import NORMAL, UNKNOWN, parse_name

SPLITS = ("train", "val", "test")
MAX_SYNTHETIC_SEED = 999  # each seed is a new cache entry (133 MB at 224 px): a thousand variants are plenty
CLASSES = ("NORMAL", "PNEUMONIA")  # label 0, label 1
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png"})
RECORD_COLUMNS = ["id", "split", "label", "cls", "patient", "subtype", "width", "height", "digest"]

ProgressCallback = Callable[[int, int], None]  # (images done, images in all)


class DatasetError(ValueError):
    """A data set that cannot be used at all; the message is meant for the user, and ``link`` is an
    address it names that the user needs whole (to copy or open)."""

    def __init__(self, message: str, link: str | None = None) -> None:
        super().__init__(message)
        self.link = link


@dataclass
class ImageSet:
    """A data set decoded at one square size."""

    name: str
    synthetic: bool
    records: pd.DataFrame
    images: np.ndarray  # (N, size, size) uint8
    masks: np.ndarray | None = None  # (N, size, size) bool lesion masks, synthetic only
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) unreadable files
    ignored: list[str] = field(default_factory=list)  # files that are not images
    missing_splits: list[str] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)  # class folders with no image, or none at all
    has_patients: bool = True
    notes: list[str] = field(default_factory=list)  # what of the source was left out, and why (labelled sets)
    split_note: str = ""  # how the split was made when the set has none of its own
    key: str = ""  # the cache entry it came from: changes whenever the pixels would

    @property
    def size(self) -> int:
        return int(self.images.shape[1])


class Source(ABC):
    """Where images come from. ``fingerprint`` changes whenever the decoded result would."""

    spec: str
    name: str
    synthetic = False

    @property
    def location(self) -> Path | None:
        """The server file or folder it reads, if any: what a classroom server's data roots restrict."""
        return None

    @abstractmethod
    def fingerprint(self, size: int) -> str: ...

    @abstractmethod
    def build(self, size: int, progress: ProgressCallback | None = None) -> ImageSet: ...


def parse_spec(spec: str) -> Source:
    """``synthetic``, ``synthetic:SEED``, ``pneumoniamnist:SIZE``, a .npz path, a labelled CSV
    (``labels.csv?path=COL&label=COL``), an RSNA challenge folder or a Kaggle-layout folder."""
    spec = spec.strip()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        seed = spec.partition(":")[2] or "0"
        if not (seed.isascii() and seed.isdigit() and len(seed) <= 3):
            raise DatasetError(f"A synthetic seed is a whole number from 0 to {MAX_SYNTHETIC_SEED}, "
                               f"not {seed[:20]!r}{'…' if len(seed) > 20 else ''}.")
        return SyntheticSource(int(seed))
    if spec.lower().startswith("pneumoniamnist:"):
        size = spec.partition(":")[2]
        if not size.isdigit() or int(size) not in mnist.SIZES:
            raise DatasetError(f"PneumoniaMNIST sizes are {', '.join(map(str, mnist.SIZES))}; got {size!r}")
        return NpzSource(None, int(size))
    if not spec:
        raise DatasetError("No data set given: choose a folder, PneumoniaMNIST or synthetic.")
    from pneumo.data import labelled  # it builds on this module

    path = Path(spec).expanduser()
    if path.suffix.lower() == ".npz":
        return NpzSource(path)
    if Path(spec.partition("?")[0]).suffix.lower() == ".csv":
        return labelled.CsvSource.from_spec(spec)
    if labelled.rsna_files(path) is not None:
        return labelled.RsnaSource(path)
    return FolderSource(path)


def spec_kind(spec: str) -> str:
    """What a spec names, from its text alone (no disk access): synthetic, pneumoniamnist (a
    download or a local .npz), csv or folder."""
    spec = spec.strip()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return "synthetic"
    suffix = Path(spec.partition("?")[0]).suffix.lower()
    if spec.lower().startswith("pneumoniamnist:") or suffix == ".npz":
        return "pneumoniamnist"
    return "csv" if suffix == ".csv" else "folder"


def short_name(spec: str) -> str:
    """A data set in a few words for tables, pickers and legends: no disk access, and no server
    path (a folder is named by its last part)."""
    spec, kind = spec.strip(), spec_kind(spec)
    path = Path(spec.partition("?")[0])
    if kind == "synthetic":
        seed = spec.partition(":")[2]
        return "synthetic" + (f" seed {seed}" if seed not in ("", "0") else "")
    if kind == "pneumoniamnist" and path.suffix.lower() == ".npz":
        return f"PneumoniaMNIST {path.name}"
    if kind == "pneumoniamnist":
        return f"PneumoniaMNIST {spec.partition(':')[2]} px"
    return f"CSV {path.name}" if kind == "csv" else f"folder {path.name or spec}"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _fingerprint(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# Kaggle / Mendeley folder: ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*


@dataclass
class _FolderListing:
    files: list[tuple[str, str, int, Path]]  # (split, class, label, path)
    ignored: list[str]
    missing_splits: list[str]
    empty_folders: list[str]
    not_files: list[tuple[str, str]]  # image names that are folders, broken links, pipes: (path, why)


class FolderSource(Source):
    """A folder in the Kaggle layout; ``ROOT/chest_xray/`` is accepted too, any letter case."""

    def __init__(self, root: Path) -> None:
        self.spec = str(root)
        self.root = root
        self.name = f"Folder {root}"

    @property
    def location(self) -> Path:
        return self.root

    def resolve_root(self) -> Path:
        if self.root.is_file():
            raise DatasetError(f"{self.root} is a file, not a folder: give the folder holding train/ val/ test/ "
                               "(or a .npz or .csv file by its own source in the sidebar)")
        if not self.root.is_dir():
            raise DatasetError(f"Folder not found: {self.root}")
        root = self.root
        for _ in range(2):  # the Kaggle zip nests chest_xray/ inside chest_xray/
            nested = _child(root, "chest_xray")
            if nested is None or any(_child(root, s) for s in SPLITS):
                break
            root = nested
        return root

    def listing(self) -> _FolderListing:
        root = self.resolve_root()
        files: list[tuple[str, str, int, Path]] = []
        ignored: list[str] = []
        missing: list[str] = []
        empty: list[str] = []
        not_files: list[tuple[str, str]] = []
        for split in SPLITS:
            split_dir = _child(root, split)
            if split_dir is None:
                missing.append(split)
                continue
            for label, cls in enumerate(CLASSES):
                cls_dir = _child(split_dir, cls)
                if cls_dir is None:
                    empty.append(f"{split}/{cls} (no folder)")
                    continue
                found = len(files)
                for entry in sorted(os.scandir(cls_dir), key=lambda e: e.name):
                    rel = str(Path(entry.path).relative_to(root))
                    is_image = Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS
                    if entry.name.startswith("."):
                        continue
                    if not entry.is_file():
                        if is_image:  # named like an image, but a folder, a broken link or a pipe
                            not_files.append((rel, "not a regular file (a folder, a broken link or a pipe)"))
                        continue
                    if is_image:
                        files.append((split, cls, label, Path(entry.path)))
                    else:
                        ignored.append(rel)
                if len(files) == found:
                    empty.append(f"{split}/{cls}")
        if not files:
            raise DatasetError(
                f"No images found in {root}: expected {{train,val,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg "
                "(the Kaggle chest-xray-pneumonia layout)."
            )
        return _FolderListing(files, ignored, missing, empty, not_files)

    def fingerprint(self, size: int) -> str:
        listing = self.listing()
        stats = [(str(p), *_stat(p)) for _, _, _, p in listing.files]
        return _fingerprint("folder", stats, size)

    def build(self, size: int, progress: ProgressCallback | None = None) -> ImageSet:
        listing = self.listing()
        root = self.resolve_root()
        total = len(listing.files)
        results: list[tuple[np.ndarray, int, int, str] | str] = [""] * total

        def work(i: int) -> None:
            path = listing.files[i][3]
            try:
                data = path.read_bytes()
                array = decode_gray(data, size)  # first: it turns any bad file into a clear reason
                results[i] = (array, *header_size(data), _digest(data))
            except ImageDecodeError as exc:
                results[i] = str(exc)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, never fatal
                results[i] = f"unreadable: {exc}"

        in_parallel(work, total, progress)
        rows, images, skipped = [], [], list(listing.not_files)
        for (split, cls, label, path), result in zip(listing.files, results, strict=True):
            rel = str(path.relative_to(root))
            if isinstance(result, str):
                skipped.append((rel, result))
                continue
            array, width, height, digest = result
            patient, subtype = parse_name(path.name, label)
            rows.append((rel, split, label, cls, patient, subtype, width, height, digest))
            images.append(array)
        return ImageSet(
            name=self.name,
            synthetic=False,
            records=pd.DataFrame(rows, columns=RECORD_COLUMNS),
            images=np.stack(images) if images else np.zeros((0, size, size), np.uint8),
            skipped=skipped,
            ignored=listing.ignored,
            missing_splits=listing.missing_splits,
            empty_folders=listing.empty_folders,
        )


def in_parallel(work: Callable[[int], None], total: int, progress: ProgressCallback | None) -> None:
    """``work(i)`` for every image i on a thread pool (decoders release the GIL), reporting
    progress every 64 images."""
    done = 0
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        for _ in pool.map(work, range(total)):
            done += 1
            if progress and (done % 64 == 0 or done == total):
                progress(done, total)


def _child(parent: Path, name: str) -> Path | None:
    """The sub-folder of ``parent`` called ``name`` in any letter case, or None."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return None
    for entry in entries:
        if entry.is_dir() and entry.name.lower() == name.lower():
            return Path(entry.path)
    return None


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------
# PneumoniaMNIST .npz (downloaded or local)


class NpzSource(Source):
    """MedMNIST npz: keys ``{split}_images`` and ``{split}_labels``; label 1 = pneumonia."""

    def __init__(self, path: Path | None, size: int | None = None) -> None:
        self.path = path
        self.mnist_size = size
        self.spec = f"pneumoniamnist:{size}" if path is None else str(path)
        self.name = f"PneumoniaMNIST {size} px" if path is None else f"PneumoniaMNIST file {path.name}"

    @property
    def location(self) -> Path | None:
        return self.path

    def file(self) -> Path:
        if self.path is None:
            size = self.mnist_size or 28
            try:
                return mnist.fetch(size)
            except mnist.DownloadError as exc:
                raise DatasetError(str(exc), link=mnist.url(size)) from exc
        if not self.path.is_file():
            raise DatasetError(f"File not found: {self.path}")
        return self.path

    def fingerprint(self, size: int) -> str:
        path = self.file()
        return _fingerprint("npz", str(path), *_stat(path), size)

    def build(self, size: int, progress: ProgressCallback | None = None) -> ImageSet:
        path = self.file()
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path.name} is not a readable .npz file ({exc})") from exc
        rows, stacks, missing = [], [], []
        with archive:
            for split in SPLITS:
                if f"{split}_images" not in archive.files:
                    missing.append(split)
                    continue
                images = np.asarray(archive[f"{split}_images"])
                labels = np.asarray(archive[f"{split}_labels"]).reshape(-1).astype(int)
                if images.ndim == 4:  # colour MedMNIST variants; PneumoniaMNIST is grey
                    images = images.mean(axis=-1).astype(np.uint8)
                if images.ndim != 3 or len(images) != len(labels) or not set(labels) <= {0, 1}:
                    raise DatasetError(f"{path.name}: {split} arrays are not PneumoniaMNIST-shaped")
                stacks.append(resize_array(images.astype(np.uint8), size))
                for i, (img, label) in enumerate(zip(images, labels, strict=True)):
                    item = f"{split}/{i:05d}"
                    subtype = NORMAL if label == 0 else UNKNOWN
                    rows.append((item, split, label, CLASSES[label], item, subtype,
                                 img.shape[1], img.shape[0], _digest(img.tobytes())))
        if not stacks:
            raise DatasetError(f"{path.name} has no train_images, val_images or test_images arrays")
        if progress:
            progress(len(rows), len(rows))
        return ImageSet(
            name=self.name,
            synthetic=False,
            records=pd.DataFrame(rows, columns=RECORD_COLUMNS),
            images=np.concatenate(stacks),
            missing_splits=missing,
            has_patients=False,
        )


# ---------------------------------------------------------------------------------------
# Synthetic: always available offline


class SyntheticSource(Source):
    """Procedurally drawn radiograph-like images with known lesion masks (``pneumo.synthetic``)."""

    synthetic = True
    VERSION = 1  # bump when the drawing changes, so caches are rebuilt

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.spec = "synthetic" if seed == 0 else f"synthetic:{seed}"
        self.name = "Synthetic (drawn, not real X-rays)" + ("" if seed == 0 else f", seed {seed}")

    def fingerprint(self, size: int) -> str:
        return _fingerprint("synthetic", self.VERSION, self.seed, size)

    def build(self, size: int, progress: ProgressCallback | None = None) -> ImageSet:
        cases = synthetic.cases(self.seed)
        images = np.empty((len(cases), size, size), np.uint8)
        masks = np.empty((len(cases), size, size), bool)
        rows = []
        for i, case in enumerate(cases):
            images[i], masks[i] = synthetic.draw(case, size, self.seed)
            rows.append((f"{case.split}/{case.index:05d}", case.split, case.label, CLASSES[case.label],
                         case.patient, case.subtype, size, size, _digest(images[i].tobytes())))
            if progress and (i % 64 == 0 or i == len(cases) - 1):
                progress(i + 1, len(cases))
        return ImageSet(
            name=self.name,
            synthetic=True,
            records=pd.DataFrame(rows, columns=RECORD_COLUMNS),
            images=images,
            masks=masks,
        )

"""Decode a data set once, keep the arrays on disk, reload them in a blink.

An entry is named by its key: the source's fingerprint (its file list with sizes and mtimes)
and the image size, so a changed folder is rebuilt and an unchanged one never is. Computing a
folder's key lists the folder, so a caller that needs the key more than once (is it cached?
then load it) computes it once with ``entry_key`` and passes it on. Entries are written to a
temporary folder and renamed into place, so a killed build leaves no half entry behind.

The cache has a size cap (``PNEUMO_CACHE_MAX_GB``, default 20): after an entry is written, the
least recently used others are removed until the rest fit. Use is the entry's ``used`` file's
time, touched on every load (access times are not reliable: disks are often mounted noatime).
A process still reading a removed entry keeps its open memory map; the next load rebuilds it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo.data.labelled import HEADER_COLUMNS, LabelledSource
from pneumo.data.sources import ImageSet, ProgressCallback, Source
from pneumo.paths import cache_dir

FORMAT = 1
DEFAULT_MAX_GB = 20.0


def max_bytes() -> int:
    """The cache's size cap in bytes (``PNEUMO_CACHE_MAX_GB``; an unreadable value keeps the default)."""
    try:
        gb = float(os.environ.get("PNEUMO_CACHE_MAX_GB") or DEFAULT_MAX_GB)
    except ValueError:
        gb = DEFAULT_MAX_GB
    return int(max(gb, 0.0) * 1024**3)


def entry_key(source: Source, size: int) -> str:
    """The name of the entry holding ``source`` decoded at ``size`` (a folder source lists its folder)."""
    return f"v{FORMAT}-{source.fingerprint(size)}-{size}"


def entry_dir(key: str) -> Path:
    return cache_dir() / "images" / key


def is_cached(key: str) -> bool:
    return (entry_dir(key) / "meta.json").exists()


def load(source: Source, size: int, progress: ProgressCallback | None = None, key: str | None = None) -> ImageSet:
    """The decoded data set, from the cache when it is there, else built and cached.

    ``key``: ``entry_key(source, size)`` when the caller has it already, which saves a listing.
    """
    key = key or entry_key(source, size)
    folder = entry_dir(key)
    if (folder / "meta.json").exists():
        try:
            image_set = _read(folder, key)
            _touch(folder)
            return image_set
        except (OSError, ValueError, KeyError):
            shutil.rmtree(folder, ignore_errors=True)  # a damaged entry is rebuilt, not trusted
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".building-"))
    try:
        if isinstance(source, LabelledSource):  # large sets: decoded straight into files, not memory
            image_set = source.build(size, progress, allocate=_on_disk(tmp))
        else:
            image_set = source.build(size, progress)
        _write(tmp, image_set)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same entry first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    evict(max_bytes(), keep=folder)
    return _read(folder, key)


def _on_disk(tmp: Path) -> Callable[[int, int, type], np.ndarray]:
    """An allocator of arrays backed by .npy files in the entry being built (``labelled.Allocate``)."""
    parts = itertools.count()

    def allocate(n: int, size: int, dtype: type) -> np.ndarray:
        return np.lib.format.open_memmap(tmp / f"part-{next(parts)}.npy", mode="w+", dtype=dtype, shape=(n, size, size))

    return allocate


def _save(array: np.ndarray, path: Path) -> None:
    """``array`` as ``path``: renamed when it already is a file of the entry being built, else written."""
    if isinstance(array, np.memmap) and array.filename and Path(array.filename).parent == path.parent:
        array.flush()
        Path(array.filename).rename(path)
    else:
        np.save(path, array)


def _touch(folder: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache still serves; it just cannot keep its use order
        (folder / "used").touch()


def _entry_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def evict(limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used entries until the cache holds at most ``limit`` bytes
    (``keep``, the entry just written, is never removed); return what was removed."""
    root = cache_dir() / "images"
    try:
        entries = [p for p in root.iterdir() if p.is_dir() and (p / "meta.json").exists()]
        sizes = {p: _entry_bytes(p) for p in entries}
        used = {p: (p / "used").stat().st_mtime if (p / "used").exists() else (p / "meta.json").stat().st_mtime
                for p in entries}
    except OSError:  # another process removed an entry meanwhile: try again on the next write
        return []
    total, removed = sum(sizes.values()), []
    for entry in sorted(entries, key=used.get):
        if total <= limit:
            break
        if entry == keep:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= sizes[entry]
        removed.append(entry)
    return removed


def _write(tmp: Path, image_set: ImageSet) -> None:
    """The entry's files, in the temporary folder ``tmp`` that is then renamed into place."""
    _save(image_set.images, tmp / "images.npy")
    if image_set.masks is not None:
        _save(image_set.masks, tmp / "masks.npy")
    for part in tmp.glob("part-*.npy"):  # arrays allocated but not kept (before closing up, unused masks)
        part.unlink()
    image_set.records.to_csv(tmp / "records.csv", index=False)
    meta = {
        "name": image_set.name,
        "synthetic": image_set.synthetic,
        "skipped": image_set.skipped,
        "ignored": image_set.ignored,
        "missing_splits": image_set.missing_splits,
        "empty_folders": image_set.empty_folders,
        "has_patients": image_set.has_patients,
        "notes": image_set.notes,
        "split_note": image_set.split_note,
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    (tmp / "used").touch()


def _read(folder: Path, key: str) -> ImageSet:
    meta = json.loads((folder / "meta.json").read_text())
    text_columns = ["id", "patient", "subtype", "digest", *HEADER_COLUMNS]
    records = pd.read_csv(folder / "records.csv", keep_default_na=False, dtype=dict.fromkeys(text_columns, str))
    images = np.load(folder / "images.npy", mmap_mode="r")
    masks_file = folder / "masks.npy"
    masks = np.load(masks_file, mmap_mode="r") if masks_file.exists() else None
    if len(images) != len(records):
        raise ValueError("cache entry is inconsistent")
    return ImageSet(
        name=meta["name"],
        synthetic=meta["synthetic"],
        records=records,
        images=images,
        masks=masks,
        skipped=[tuple(s) for s in meta["skipped"]],
        ignored=meta["ignored"],
        missing_splits=meta["missing_splits"],
        empty_folders=meta.get("empty_folders", []),
        has_patients=meta["has_patients"],
        notes=meta.get("notes", []),
        split_note=meta.get("split_note", ""),
        key=key,
    )

import os
from pathlib import Path

import numpy as np
import pytest

from pneumo.data import cache
from pneumo.data.imaging import decode_gray
from pneumo.data.sources import FolderSource
from tests.conftest import image_bytes, make_tree

LAYOUT = {"train": {"NORMAL": ["IM-0001-0001.jpeg", "IM-0002-0001.jpeg"], "PNEUMONIA": ["person1_virus_1.png"]},
          "test": {"NORMAL": ["IM-0003-0001.jpeg"], "PNEUMONIA": ["person2_bacteria_2.jpeg"]}}


def test_cache_equals_a_fresh_decode(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", LAYOUT)
    source = FolderSource(root)
    built = cache.load(source, 24)
    warm = cache.load(source, 24)
    assert warm.key == built.key
    for i, rel in enumerate(warm.records["id"]):
        np.testing.assert_array_equal(warm.images[i], decode_gray((root / rel).read_bytes(), 24))
    assert warm.records.equals(built.records)


def test_warm_load_does_not_decode_and_changes_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "d", LAYOUT)
    source = FolderSource(root)
    cache.load(source, 24)
    calls = []
    original = FolderSource.build
    monkeypatch.setattr(FolderSource, "build", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    cache.load(source, 24)
    assert calls == []
    (root / "train" / "NORMAL" / "IM-0009-0001.jpeg").write_bytes(image_bytes(value=3))
    assert len(cache.load(source, 24).records) == 6 and calls == [1]
    cache.load(source, 32)  # another size is another entry
    assert calls == [1, 1]


def test_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    source = FolderSource(make_tree(tmp_path / "d", LAYOUT))
    cache.load(source, 24)
    entry = cache.entry_dir(cache.entry_key(source, 24))
    (entry / "images.npy").write_bytes(b"broken")
    assert cache.load(source, 24).images.shape == (5, 24, 24)
    assert not list(entry.parent.glob(".building-*"))


def test_a_known_key_saves_the_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = FolderSource(make_tree(tmp_path / "d", LAYOUT))
    calls = []
    original = FolderSource.listing
    monkeypatch.setattr(FolderSource, "listing", lambda self: calls.append(1) or original(self))
    key = cache.entry_key(source, 24)
    assert calls == [1] and not cache.is_cached(key)
    built = cache.load(source, 24, key=key)  # building lists the files it decodes, once
    assert calls == [1, 1] and cache.is_cached(key) and built.key == key
    assert cache.load(source, 24, key=key).key == key and calls == [1, 1]  # a warm load lists nothing


def test_the_cache_keeps_under_its_cap_by_dropping_the_least_recently_used(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Three trees of one size each; the cap holds two entries: writing the third drops the one
    used longest ago (the first, loaded again after the second, survives)."""
    sources = [FolderSource(make_tree(tmp_path / name, LAYOUT)) for name in "abc"]
    first = cache.load(sources[0], 24)
    entry = cache.entry_dir(first.key)
    per_entry = sum(f.stat().st_size for f in entry.iterdir())
    monkeypatch.setenv("PNEUMO_CACHE_MAX_GB", str(2.5 * per_entry / 1024**3))
    second = cache.load(sources[1], 24)
    os.utime(cache.entry_dir(second.key) / "used", (1, 1))  # the second was last used long ago
    cache.load(sources[0], 24)  # a warm load marks the first as just used
    third = cache.load(sources[2], 24)
    kept = {p.name for p in (cache.cache_dir() / "images").iterdir()}
    assert kept == {first.key, third.key}
    assert not cache.is_cached(second.key) and len(cache.load(sources[1], 24).records) == 5  # rebuilt when asked


def test_a_cap_below_one_entry_keeps_the_entry_just_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_CACHE_MAX_GB", "0")
    image_set = cache.load(FolderSource(make_tree(tmp_path / "d", LAYOUT)), 24)
    assert cache.is_cached(image_set.key) and image_set.images.shape == (5, 24, 24)

"""The input pipeline: every film once an epoch with its own label, read from the cache's memory map
without loading the data set into memory; the class weights the loss uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from pneumo.training import pipeline
from tests import memory


def test_training_class_weights_are_balanced_and_unrounded() -> None:
    """The weights the loss uses (and the Dataset page shows, rounded): n / (2 * count), exactly."""
    labels = np.array([0] * 7 + [1] * 13)
    weights = pipeline.class_weights(labels)
    assert weights == {0: 20 / (2 * 7), 1: 20 / (2 * 13)}
    assert weights[0] != round(weights[0], 3) and weights[1] != round(weights[1], 3)
    balanced = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    assert [weights[0], weights[1]] == pytest.approx(balanced.tolist(), rel=1e-12)  # scikit-learn's rule
    assert pipeline.class_weights(np.array([1, 1])) == {}


def _numbered_films(path: Path, count: int, side: int) -> np.memmap:
    """Films whose every pixel is their row number (mod 256), on disk like the cache's."""
    films = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, side, side))
    films[:] = (np.arange(count) % 256).astype(np.uint8)[:, None, None]
    films.flush()
    return np.load(path, mmap_mode="r")


def test_each_row_comes_once_an_epoch_with_its_label(tmp_path: Path) -> None:
    films = _numbered_films(tmp_path / "films.npy", 200, 8)
    rows = np.array([5, 150, 7, 42, 199, 0, 63])  # any order: predictions follow it
    labels = np.arange(len(rows), dtype=np.float32)

    in_order = [(x.numpy(), y.numpy()) for x, y in pipeline.batches(films, rows, labels, 3, shuffle=False)]
    assert np.concatenate([x[:, 0, 0, 0] for x, _ in in_order]).tolist() == rows.tolist()
    assert np.concatenate([y for _, y in in_order]).tolist() == labels.tolist()
    x, _ = in_order[0]
    assert x.shape == (3, 8, 8, 1) and x.dtype == np.float32

    epochs = pipeline.batches(films, rows, labels, 3, shuffle=True, seed=1).repeat(2)
    seen = [(int(x[0, 0, 0]), float(y)) for xs, ys in epochs for x, y in zip(xs.numpy(), ys.numpy(), strict=True)]
    assert sorted(seen) == sorted(2 * list(zip(rows.tolist(), labels.tolist(), strict=True)))
    assert seen[:7] != seen[7:]  # reshuffled each epoch


@pytest.mark.skipif(not memory.STATUS.exists(), reason="reads Linux's /proc")
def test_an_epoch_over_a_large_set_does_not_load_it(tmp_path: Path) -> None:
    small = _numbered_films(tmp_path / "small.npy", 64, 256)
    for _ in pipeline.batches(small, np.arange(64), np.zeros(64), 32, shuffle=True):
        pass  # TensorFlow's own start-up memory is not the data set's
    films = _numbered_films(tmp_path / "films.npy", 6000, 256)  # 393 MB on disk
    before = memory.anonymous_bytes()
    rows = np.arange(len(films))
    count = sum(len(y) for _, y in pipeline.batches(films, rows, np.zeros(len(rows)), 32, shuffle=True))
    assert count == len(films)
    # Prefetched batches and allocator arenas take some (up to 100 MB seen); the films would take all.
    assert memory.anonymous_bytes() - before < films.nbytes / 2

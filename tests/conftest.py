"""Shared fixtures: an isolated cache and run store per test, and generated Kaggle-style trees."""

from __future__ import annotations

import fcntl
import functools
import io
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.components.v2 import manifest_scanner
from streamlit.testing.v1 import AppTest

from pneumo.access import LOCAL, User
from pneumo.files import write_json
from pneumo.runs.store import Run, RunStore
from pneumo.training.config import TrainConfig

if TYPE_CHECKING:
    import keras

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
REAL_CHEST_XRAY = SHARED_DATA / "chest_xray"


# Every new AppTest scans every installed package's metadata for Streamlit components (0.4 to 0.7 s
# here, a hundred times a suite); a server does it once at start, and no test installs a package.
manifest_scanner.scan_component_manifests = functools.cache(manifest_scanner.scan_component_manifests)

# Fixtures that really train a model: every test using one is slow.
_TRAINING_FIXTURES = {"trained_cnn", "trained_run"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache and run store, so none sees another's files."""
    monkeypatch.setenv("PNEUMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PNEUMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("PNEUMO_DATA", raising=False)


def page_app(page: str, **state) -> AppTest:
    """A page run from its own script, not yet run: ``page`` names app_pages/<page>.py. The sidebar's
    working size starts at 64 px (fast to draw); ``state`` sets more session state."""
    at = AppTest.from_file(str(ROOT / "app_pages" / f"{page}.py"), default_timeout=240)
    at.session_state["ds_size"] = 64
    for key, value in state.items():
        at.session_state[key] = value
    return at


def as_read(markdown: str) -> str:
    """Markdown made by ``ui.common.plain`` as a person reads it: escapes and word joiners gone."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (40, 30), value: int = 128, mode: str = "L") -> bytes:
    """A small real image file; ``value`` sets its content so files differ."""
    rng = np.random.default_rng(value)
    arr = np.clip(rng.normal(value, 20, (size[1], size[0])), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, mode="L").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_tree(root: Path, layout: dict[str, dict[str, list[str]]]) -> Path:
    """Write ``{split_dir: {class_dir: [file names]}}`` under root with real image bytes."""
    n = 0
    for split, classes in layout.items():
        for cls, names in classes.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                n += 1
                fmt = "PNG" if name.lower().endswith(".png") else "JPEG"
                (folder / name).write_bytes(image_bytes(fmt, value=n * 7 % 250))
    return root


@contextmanager
def _once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """The path ``name`` in a folder both xdist workers share, held under a lock while the caller
    makes what belongs there: the first worker makes it, the other waits and finds it made."""
    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session = session.parent  # the workers' folders sit in the session's
    with open(session / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield session / name


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the synthetic set at the app's first size and at the tests' 64 px, drawn
    once per test session: drawing takes ~20 s, which every test server would otherwise pay on
    its first page."""
    from pneumo.data import cache
    from pneumo.data.sources import parse_spec

    with _once_per_session(tmp_path_factory, "synthetic-cache") as folder, pytest.MonkeyPatch.context() as patch:
        patch.setenv("PNEUMO_CACHE", str(folder))
        for size in (TrainConfig().image_size, 64):
            cache.load(parse_spec("synthetic"), size)  # found in the cache when the other worker drew it
    return folder


def cache_copy(synthetic_cache: Path, folder: Path) -> Path:
    """``folder`` as a cache of its own that starts with ``synthetic_cache``'s entries (hard links:
    entries are replaced whole, never written in place)."""
    shutil.copytree(synthetic_cache, folder, copy_function=os.link)
    return folder


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small learnable data set in the MedMNIST npz format: synthetic films at 64 px."""
    from pneumo.data import synthetic

    cases = synthetic.cases(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    arrays = {}
    for split, n in (("train", 600), ("val", 150), ("test", 150)):
        chosen = [c for c in cases if c.split == ("test" if split == "test" else "train")]
        chosen = chosen[:n] if split != "val" else chosen[-n:]
        arrays[f"{split}_images"] = np.stack([synthetic.draw(c, 64)[0] for c in chosen])
        arrays[f"{split}_labels"] = np.array([[c.label] for c in chosen], np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def tinier_npz(tiny_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tenth film of ``tiny_npz`` (60 train, 15 val, 15 test): for tests of what a run does,
    not of what it learns."""
    path = tmp_path_factory.mktemp("tinier") / "tinier.npz"
    with np.load(tiny_npz) as full:
        np.savez(path, **{key: full[key][::10] for key in full.files})
    return path


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN really trained on synthetic films at 64 px, saved as .keras: what Predict explains."""
    with _once_per_session(tmp_path_factory, "trained-cnn.keras") as path:
        if not path.exists():  # trained once per test session (a minute), not once per worker
            part = path.with_name(f"part-{path.name}")
            _train_cnn().save(part)
            part.replace(path)  # whole or not there
    return path


def _train_cnn() -> keras.Model:
    import keras

    from pneumo.data import synthetic
    from pneumo.training import models
    from pneumo.training.augment import PRESETS

    keras.utils.set_random_seed(0)
    cases = [c for c in synthetic.cases(0) if c.split == "train"][:900]
    x = np.stack([synthetic.draw(c, 64)[0] for c in cases])[..., None]
    y = np.array([c.label for c in cases], np.float32)
    # The pooled first block: the faithfulness figures in tests/explain were measured on it. The
    # strided default trained this way calls nearly every film pneumonia with or without its
    # pixels, so deletion/insertion barely move for any map (+0.001 against a random map's -0.000).
    model = models.build_cnn(TrainConfig(image_size=64, cnn_blocks=4, cnn_strided_stem=False,
                                         augmentation=PRESETS["none"]))
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def synthetic_test_films() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic test films at 64 px: images, labels, lesion masks."""
    from pneumo.data import synthetic

    cases = [c for c in synthetic.cases(0) if c.split == "test"][:160]
    drawn = [synthetic.draw(c, 64) for c in cases]
    return (np.stack([d[0] for d in drawn]), np.array([c.label for c in cases]), np.stack([d[1] for d in drawn]))


def finished_run(name: str = "", dataset: str = "synthetic", seed: int = 0, test: tuple[int, int] = (300, 180),
                 noise: float = 0.15, owner: User = LOCAL, **settings) -> Run:
    """A finished run in the test's run store whose predictions.csv is written here (the pages must
    not care how it was made): ``test`` is (films, of which pneumonia); val has 200 films."""
    run = RunStore().create(TrainConfig(name=name, dataset=dataset, seed=seed, **settings), owner=owner)
    write_json(run.file("status.json"), {**run.status(), "state": "finished", "started": 100.0, "ended": 160.0,
                                         "device": "CPU"})
    rng = np.random.default_rng(seed + 17 * len(name))
    frames = []
    for split, (n, positives) in (("val", (200, 120)), ("test", test)):
        labels = (np.arange(n) < positives).astype(int)
        probs = np.clip(0.3 + 0.4 * labels + rng.normal(0, noise, n), 0, 1)
        frames.append(pd.DataFrame({"split": split, "id": [f"{split}/{i:05d}" for i in range(n)], "label": labels,
                                    "prob": probs, "patient": [f"p{i}" for i in range(n)]}))
    pd.concat(frames).to_csv(run.file("predictions.csv"), index=False)
    return run

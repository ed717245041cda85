"""Model files checked before Keras opens them: code refused, broken files and bombs refused fast, with a reason."""

import time
import zipfile
from pathlib import Path

import h5py
import keras
import pytest

from pneumo.explain import model_file
from pneumo.explain.model_file import ModelLoadError, load_bytes, load_file


def _save(model: keras.Model, path: Path) -> bytes:
    model.save(path)
    return path.read_bytes()


def _small_model() -> keras.Model:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def test_code_in_a_model_file_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    with pytest.raises(ModelLoadError, match="contains code"):
        load_bytes(_save(model, tmp_path / "lambda.keras"))


@pytest.mark.parametrize(("data", "reason"), [
    (b"not a model at all", "neither"),
    (b"PK\x03\x04" + b"\0" * 100, "not a loadable Keras model"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "not a loadable Keras model"),
], ids=["text", "broken-zip", "broken-h5"])
def test_broken_model_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ModelLoadError, match=reason):
        load_bytes(data)


def _never_opened_by_keras(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("Keras was asked to open a file the check should have refused")
    monkeypatch.setattr(keras.saving, "load_model", refuse)


def _refused_fast(load, source, match: str) -> str:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=match) as refused:
        load(source)
    assert time.perf_counter() - start < 5  # measured: a few milliseconds
    return str(refused.value)


def _zip(path: Path, members: dict[str, int]) -> Path:
    """A zip of members of zeros (name -> bytes), deflated: each shrinks about 1000 times."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, size in members.items():
            archive.writestr(name, bytes(size))
    return path


def test_a_zip_inflating_past_the_limit_is_refused_before_keras(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    _never_opened_by_keras(monkeypatch)
    monkeypatch.setattr(model_file, "MAX_UNPACKED_BYTES", 4 * 2**20)  # as 2,000 MB, without writing it
    bomb = _zip(tmp_path / "bomb.keras", {"config.json": 100, "model.weights.h5": 6 * 2**20})
    assert bomb.stat().st_size < 20_000
    message = _refused_fast(load_file, bomb, "would inflate")
    assert "would inflate to 6.0 MB; pneumo opens at most 4.0 MB (a decompression bomb?)" in message
    _refused_fast(load_bytes, bomb.read_bytes(), "would inflate to 6.0 MB")  # an upload: the same check


def test_a_zip_member_inflating_too_far_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _never_opened_by_keras(monkeypatch)
    monkeypatch.setattr(model_file, "RATIO_FLOOR", 2**20)  # as 8 MB, without writing it
    bomb = _zip(tmp_path / "bomb.keras", {"config.json": 100, "model.weights.h5": 2 * 2**20})
    message = _refused_fast(load_file, bomb, "model.weights.h5 inflates from")
    assert "to 2.0 MB (" in message and "more than 200:1 is a decompression bomb" in message


def test_a_zip_of_many_members_is_refused_before_reading_them(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    _never_opened_by_keras(monkeypatch)
    monkeypatch.setattr(model_file, "MAX_MEMBERS", 10)
    many = _zip(tmp_path / "many.keras", {f"assets/{i}": 0 for i in range(11)})
    assert "the zip archive holds 11 files" in _refused_fast(load_file, many, "holds 11 files")


def test_an_h5_over_the_size_limit_is_refused_before_keras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = _save(_small_model(), tmp_path / "m.h5")
    _never_opened_by_keras(monkeypatch)
    monkeypatch.setattr(model_file, "MAX_MODEL_BYTES", len(data) - 1)
    assert "a model file may be at most" in _refused_fast(load_file, tmp_path / "m.h5", "the file is")
    _refused_fast(load_bytes, data, "a model file may be at most")


def test_an_h5_declaring_more_than_it_stores_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HDF5 keeps a dataset never written as a fill value: 2,400 MB declared in a file of a few KB."""
    _never_opened_by_keras(monkeypatch)
    with h5py.File(tmp_path / "bomb.h5", "w") as file:
        file.create_dataset("model_weights/dense/kernel", shape=(600 * 2**20,), dtype="float32")
    assert (tmp_path / "bomb.h5").stat().st_size < 20_000
    message = _refused_fast(load_file, tmp_path / "bomb.h5", "declares 2,400 MB of weights")
    assert "pneumo opens at most 2,000 MB" in message

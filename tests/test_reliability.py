"""Proof under faults: fuzzed uploads, corrupt run folders, broken data folders, concurrent use.

Killed training processes are in test_jobs.py (real subprocesses), the full journey and two
browser sessions at once in test_browser.py.
"""

import shutil
import threading
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from pneumo.data import cache, radiograph
from pneumo.data.imaging import ImageDecodeError
from pneumo.data.sources import FolderSource
from pneumo.explain.model_file import load_file
from pneumo.explain.predictor import Predictor
from pneumo.files import write_json
from pneumo.runs.store import Run, RunStore, append_row
from pneumo.training.config import TrainConfig
from tests import films
from tests.conftest import as_read, image_bytes, make_tree, page_app

SEEDS = {**films.good_files(), "window.dcm": films.dicom(films.gradient().astype(np.uint16) * 16, window=(2000, 800))}


# --- Fuzzed uploads --------------------------------------------------------------------------


@st.composite
def malformed(draw) -> tuple[str, bytes]:
    """A good file of some kind, mutated: bit flips, cuts, splices, zeroed or inflated header fields,
    or plain random bytes; under a name whose extension may lie."""
    name, data = draw(st.sampled_from(sorted(SEEDS.items())))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "splice", "zero", "huge", "random"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            data = data[:at]
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "zero":
            data[at:at + 8] = bytes(min(8, len(data) - at))
        elif kind == "huge":
            data[at:at + 4] = b"\xff\xff\xff\x7f"[: len(data[at:at + 4])]
        else:
            data = bytearray(draw(st.binary(max_size=512)))
    extension = draw(st.sampled_from([Path(name).suffix, ".png", ".jpg", ".dcm", ".txt", ""]))
    return f"upload{extension}", bytes(data)


@pytest.fixture(scope="module")
def tiny_predictor() -> Predictor:
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    return Predictor(keras.Model(inputs, outputs))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_fuzzed_uploads_never_escape_as_crashes(tiny_predictor: Predictor, upload: tuple[str, bytes]) -> None:
    """The Predict page's path: read the upload, then the model's input and probability."""
    name, data = upload
    try:
        film = radiograph.read(data, name)
    except ImageDecodeError as exc:
        assert len(str(exc)) > 10 and "Traceback" not in str(exc)
        return
    assert film.pixels.dtype == np.uint8 and film.pixels.ndim == 2 and min(film.pixels.shape) >= 1
    assert 0 <= tiny_predictor.probability(film.pixels) <= 1


# --- Corrupt run folders ---------------------------------------------------------------------


def _finished(store: RunStore, name: str, model: Path | None) -> Run:
    """A finished run with history and predictions (written as the engine writes them)."""
    run = store.create(TrainConfig(name=name, dataset="/not/on/this/machine", image_size=64, cnn_blocks=4))
    write_json(run.file("status.json"), {**run.status(), "state": "finished", "started": 1.0, "ended": 2.0})
    for epoch in (1, 2, 3):
        append_row(run.file("history.csv"), {"epoch": epoch, "phase": 1, "loss": 0.6 / epoch, "val_loss": 0.7 / epoch,
                                             "accuracy": 0.7, "val_accuracy": 0.7, "auc": 0.8, "val_auc": 0.8,
                                             "learning_rate": 0.001},
                   ["epoch", "phase", "loss", "val_loss", "accuracy", "val_accuracy", "auc", "val_auc",
                    "learning_rate"])
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 2
    pd.DataFrame({"split": ["val"] * 100 + ["test"] * 100, "id": [f"x{i}" for i in range(200)], "label": labels,
                  "prob": np.clip(labels * 0.4 + rng.random(200) * 0.6, 0, 1), "patient": "p"}
                 ).to_csv(run.file("predictions.csv"), index=False)
    if model is not None:
        shutil.copy(model, run.file("best.keras"))
    return run


@pytest.fixture
def damaged_store(trained_cnn: Path) -> dict[str, Run]:
    store = RunStore()
    runs = {"good": _finished(store, "good", trained_cnn)}
    runs["broken json"] = _finished(store, "broken json", trained_cnn)
    runs["broken json"].file("status.json").write_text('{"state": "fini')
    runs["cut history"] = _finished(store, "cut history", trained_cnn)
    header, first, second, third = runs["cut history"].file("history.csv").read_text().splitlines()
    runs["cut history"].file("history.csv").write_text(  # a garbled line, then a cut one
        f"{header}\n{first}\n\x00garbage,,,,,,,,,,,,\n{second}\n{third[:12]}")
    runs["no model"] = _finished(store, "no model", None)
    runs["corrupt model"] = _finished(store, "corrupt model", None)
    runs["corrupt model"].file("best.keras").write_bytes(b"\x00 not a zip at all")
    runs["hollow model"] = _finished(store, "hollow model", None)
    with zipfile.ZipFile(runs["hollow model"].file("best.keras"), "w") as z:
        z.writestr("readme.txt", "a zip, but not a Keras model")
    runs["bad predictions"] = _finished(store, "bad predictions", trained_cnn)
    runs["bad predictions"].file("predictions.csv").write_text("what,is,this\n1,2,3\nnot,numbers,here\n")
    return runs


def _page(page: str, **state) -> AppTest:
    return page_app(page, **state).run()


def test_damaged_runs_are_listed_with_reasons_and_crash_no_page(damaged_store: dict[str, Run]) -> None:
    at = _page("train", train_view="Runs")
    assert not at.exception
    table = at.dataframe[0].value
    rows = {name: table[table["name"].isin([name, run.id])].iloc[0] for name, run in damaged_store.items()}
    problems = {name: str(row["problem"]) for name, row in rows.items()}
    statuses = {name: row["status"] for name, row in rows.items()}
    assert statuses["good"] == "finished" and statuses["cut history"] == "finished"
    assert "status.json is unreadable" in problems["broken json"]
    assert "model file (best.keras) is missing" in problems["no model"]
    assert "best.keras is corrupt" in problems["corrupt model"]
    assert {statuses[n] for n in ("broken json", "no model", "corrupt model")} == {"damaged"}

    for run in damaged_store.values():  # the Watch view of every run
        at = _page("train", train_view="Watch", watch_run=run.id)
        assert not at.exception, run.name

    at = _page("evaluate")
    assert not at.exception
    options = [option.split(" (")[0] for option in at.multiselect[0].options]  # "good (folder machine)"
    assert "bad predictions" not in options and "broken json" not in options and "good" in options
    at.multiselect[0].set_value([damaged_store["good"].id, damaged_store["no model"].id]).run()
    assert not at.exception  # a run without its model still has predictions to evaluate

    at = _page("predict")
    assert not at.exception
    offered = [option.split(" (")[0] for option in at.selectbox(key="pr_run").options]
    assert "good" in offered and not {"no model", "corrupt model", "broken json"} & set(offered)
    at = at.selectbox(key="pr_run").set_value(damaged_store["hollow model"].id).run()
    assert not at.exception and "cannot be loaded" in at.error[0].value


def test_history_of_a_cut_file_keeps_its_whole_rows(damaged_store: dict[str, Run]) -> None:
    history = damaged_store["cut history"].history()
    assert history["epoch"].tolist() == [1, 2] and history["loss"].tolist() == pytest.approx([0.6, 0.3])


# --- Broken data folders ---------------------------------------------------------------------


def test_data_folder_faults_are_skipped_and_listed(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {
        "train": {"NORMAL": ["IM-0001-0001.jpeg", "IM-0002-0001.jpeg"], "PNEUMONIA": ["person1_virus_1.jpeg"]},
        "test": {"NORMAL": ["IM-0003-0001.jpeg"], "PNEUMONIA": ["person2_bacteria_2.jpeg"]},
    })
    pneumonia = root / "train" / "PNEUMONIA"
    (pneumonia / "person3_virus_3.jpeg").write_bytes(image_bytes()[:200])  # truncated
    (pneumonia / "person4_virus_4.jpeg").write_bytes(b"")  # empty
    (pneumonia / "person5_virus_5.png").write_bytes(b"<html>not a png</html>")
    (pneumonia / "person6_virus_6.jpeg").mkdir()  # a folder named like an image
    (pneumonia / "person7_virus_7.jpeg").symlink_to(tmp_path / "gone.jpeg")  # a broken link
    (root / "val" / "NORMAL").mkdir(parents=True)  # empty class folder; val/PNEUMONIA missing
    image_set = cache.load(FolderSource(root), 32)
    assert len(image_set.records) == 5
    skipped = dict(image_set.skipped)
    assert set(skipped) == {f"train/PNEUMONIA/person{i}_virus_{i}.{'png' if i == 5 else 'jpeg'}"
                            for i in range(3, 8)}
    assert all(len(reason) > 10 for reason in skipped.values())
    assert "truncated" in skipped["train/PNEUMONIA/person3_virus_3.jpeg"]
    assert "not a regular file" in skipped["train/PNEUMONIA/person6_virus_6.jpeg"]
    assert image_set.empty_folders == ["val/NORMAL", "val/PNEUMONIA (no folder)"]

    at = _page("dataset", ds_kind="Folder", ds_folder=str(root), ds_size=32)
    assert not at.exception
    assert any("val/NORMAL, val/PNEUMONIA (no folder)" in as_read(w.value) for w in at.warning)
    assert any("5 unreadable file(s) skipped" in e.label for e in at.expander)


# --- Concurrent Predict sessions ---------------------------------------------------------------


def test_concurrent_predictions_on_a_shared_model_stay_separate(trained_cnn: Path, synthetic_test_films) -> None:
    """Browser sessions share one cached Predictor; each must get the answer for its own film."""
    from pneumo.explain.saliency import saliency

    shared = Predictor(load_file(trained_cnn))
    images = synthetic_test_films[0][:8]
    expected = [shared.probability(img) for img in images]
    expected_maps = [saliency(shared, img, "Grad-CAM") for img in images[:4]]
    results: dict[tuple[int, int], float] = {}
    maps: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def session(k: int) -> None:
        try:
            start.wait()
            for repeat in range(3):
                i = (k + repeat) % len(images)
                results[(k, repeat)] = shared.configured("none").probability(images[i])
            if k < 4:
                maps[k] = saliency(shared, images[k], "Grad-CAM")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for (k, repeat), probability in results.items():
        assert probability == pytest.approx(expected[(k + repeat) % len(images)], abs=1e-6)
    assert len(results) == 24
    for k, saliency_map in maps.items():
        np.testing.assert_allclose(saliency_map, expected_maps[k], atol=1e-5)

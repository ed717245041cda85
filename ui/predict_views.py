"""Predict page pieces: choosing a model and a film, cached so reruns stay fast.

Loaded models are cached per server (``cache_resource``) and shared by every browser session;
each session gets its own ``Predictor.configured`` view with its own choices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from pneumo.data import radiograph
from pneumo.data.imaging import ImageDecodeError
from pneumo.data.sources import ImageSet
from pneumo.explain.predictor import PREPROCESSING, ModelLoadError, Predictor, load_bytes, load_file
from pneumo.explain.saliency import saliency
from pneumo.runs.store import Run, RunStore
from ui.common import current_choice, load_image_set, run_image_set

EXAMPLES_PER_CLASS = 4


@dataclass
class ModelChoice:
    predictor: Predictor
    key: str  # identifies model and options, for caching maps
    threshold: float
    threshold_note: str
    dataset: ImageSet | None  # where the examples come from


@dataclass
class Film:
    gray: np.ndarray  # full-size uint8 grey
    key: str
    title: str
    notes: list[str]
    label: int | None = None  # known for dataset examples
    mask: np.ndarray | None = None  # lesion mask, synthetic examples only


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _run_predictor(model_path: str, modified: float) -> Predictor:
    return Predictor(load_file(model_path))


@st.cache_resource(show_spinner="Loading the uploaded model…", max_entries=4)
def _uploaded_predictor(digest: str, _data: bytes) -> Predictor:
    return Predictor(load_bytes(_data))


def choose_model() -> ModelChoice | None:
    """The model picker: a finished run, or an uploaded .keras/.h5 file with its options."""
    source = st.segmented_control("Model", ["A training run", "Upload a model file"], default="A training run",
                                  key="pr_source") or "A training run"
    if source == "A training run":
        return _choose_run()
    return _choose_upload()


def _choose_run() -> ModelChoice | None:
    runs = [r for r in RunStore().runs()
            if r.damage is None and r.model_file() is not None and r.model_problem is None]
    if not runs:
        st.info("No run has a saved model yet: train one on the Train page, or upload a model file.")
        return None
    names = {r.id: r.name for r in runs}
    run = RunStore().get(st.selectbox("Run", list(names), format_func=names.get, key="pr_run"))
    path = run.model_file()
    try:
        predictor = _run_predictor(str(path), path.stat().st_mtime)
    except (ModelLoadError, OSError) as exc:
        st.error(f"The model of run **{run.name}** cannot be loaded: {exc}")
        return None
    chosen = st.session_state.get("thresholds", {}).get(run.id)
    note = ("chosen on the Evaluate page" if chosen is not None else
            "the default: no threshold was chosen for this run on the Evaluate page")
    return ModelChoice(predictor, f"run:{run.id}:{path.stat().st_mtime}", 0.5 if chosen is None else chosen, note,
                       _run_dataset(run))


def _run_dataset(run: Run) -> ImageSet | None:
    config = run.config()
    return run_image_set(config.dataset, config.image_size)


def _choose_upload() -> ModelChoice | None:
    upload = st.file_uploader("Keras model (.keras or .h5)", type=["keras", "h5"], key="pr_model_upload",
                              help="Loaded with Keras safe_mode: a model that carries code (Lambda layers) is refused.")
    if upload is None:
        st.info("Upload a model trained anywhere: one sigmoid output or two softmax outputs, any input size, "
                "grey or RGB. Or pick a training run above.")
        return None
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        shared = _uploaded_predictor(digest, data)
    except ModelLoadError as exc:
        st.error(f"**{upload.name}** cannot be used: {exc}")
        return None
    detected = shared.detected
    st.markdown("**Detected**\n" + "\n".join(f"- {line}" for line in detected.describe()))
    c1, c2 = st.columns(2)
    options = list(PREPROCESSING)
    preprocessing = c1.selectbox("Pixel scaling before the model", options, format_func=PREPROCESSING.get,
                                 index=options.index(detected.suggested_preprocessing), key=f"pr_pre_{digest}",
                                 help="Guessed from the model; pick what it was trained with.")
    index = 1
    if detected.outputs == 2:
        index = c2.radio("Which output is pneumonia?", [0, 1], index=1, horizontal=True, key=f"pr_index_{digest}",
                         help="Guessed 1: Keras' flow_from_directory and image_dataset_from_directory sort class "
                              "folders by name, NORMAL before PNEUMONIA.")
    predictor = shared.configured(preprocessing, index)
    dataset = load_image_set(current_choice())
    return ModelChoice(predictor, f"upload:{digest}:{preprocessing}:{index}", 0.5,
                       "the default for an uploaded model", dataset)


def choose_film(dataset: ImageSet | None) -> Film | None:
    """An example from the data set's test split, or an uploaded JPEG/PNG/DICOM."""
    source = st.segmented_control("Image", ["Example from the data set", "Upload an image"],
                                  default="Example from the data set", key="pr_image_source")
    if source == "Upload an image":
        return _uploaded_film()
    if dataset is None:
        st.info("The data set this run was trained on is not available here: upload an image instead.")
        return None
    records = examples(dataset.records)
    if records.empty:
        st.info("This data set has no test images: upload an image instead.")
        return None
    labels = {row.id: f"{row.id} · {row.cls}" + (f" ({row.subtype})" if row.subtype not in ("", "unknown", "normal")
                                                  else "") for row in records.itertuples()}
    chosen = st.selectbox("Example (test split)", list(labels), format_func=labels.get, key="pr_example")
    i = int(records.index[records["id"] == chosen][0])
    mask = dataset.masks[i] if dataset.masks is not None else None
    return Film(dataset.images[i], f"{dataset.key}:{i}", labels[chosen], [], int(records.at[i, "label"]), mask)


def examples(records: pd.DataFrame) -> pd.DataFrame:
    """A few test films of each class, the same ones every time."""
    test = records[records["split"] == "test"]
    return test.groupby("label", group_keys=False).head(EXAMPLES_PER_CLASS).sort_values(["label", "id"])


def _uploaded_film() -> Film | None:
    upload = st.file_uploader("Chest X-ray (JPEG, PNG or DICOM)", key="pr_image_upload",
                              type=[ext.lstrip(".") for ext in radiograph.EXTENSIONS])
    if upload is None:
        return None
    data = upload.getvalue()
    try:
        film = radiograph.read(data, upload.name)
    except ImageDecodeError as exc:
        st.error(f"**{upload.name}** cannot be read: {exc}. Try a JPEG, PNG or DICOM chest film.")
        return None
    return Film(film.pixels, hashlib.sha256(data).hexdigest(), f"{upload.name} ({film.kind})", film.notes)


@st.cache_data(show_spinner=False, max_entries=64)
def saliency_map(model_key: str, film_key: str, method: str, layer: str, _predictor: Predictor,
                 _gray: np.ndarray) -> np.ndarray:
    """One map, cached: moving the opacity or colormap does not recompute it."""
    return saliency(_predictor, _gray, method, layer)

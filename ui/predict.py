"""Predict page sections: choosing a model and a film, the prediction, the saliency maps.

Loaded models are cached per server (``cache_resource``: an upload by its sha256 digest, a run's
model by path and modification time) and shared by every browser session; refusals are cached
too, so a rerun never loads or checks a file again. Each session gets its own
``Predictor.configured`` view with its own choices. Maps are cached per model, film, method and
layer, so moving the opacity or the colours recomputes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st

from pneumo.data import radiograph, stats
from pneumo.data.imaging import ImageDecodeError, outline
from pneumo.data.radiograph import Radiograph
from pneumo.data.sources import ImageSet
from pneumo.explain import faithfulness, familiarity
from pneumo.explain.familiarity import Familiarity
from pneumo.explain.model_file import MAX_MODEL_BYTES, ModelLoadError, load_bytes, load_file
from pneumo.explain.predictor import PREPROCESSING, RESIZE, Predictor
from pneumo.explain.saliency import (
    CAM_METHODS,
    COLORMAPS,
    METHOD_HELP,
    METHODS,
    empty_map_message,
    overlay,
    png_bytes,
    pointing,
    saliency,
)
from pneumo.runs.store import DEFAULT_THRESHOLD, Run, RunStore
from ui.common import (
    current_choice,
    file_stamp,
    kept,
    load_image_set,
    plain,
    run_image_set,
    run_labels,
    side_by_side,
    synthetic_banner,
)


@dataclass
class ModelChoice:
    predictor: Predictor
    key: str  # identifies model and options, for caching maps
    threshold: float
    threshold_note: str
    image_set: ImageSet | None  # where the examples come from
    trained_on: str = "unknown: the model was uploaded"  # the run's data set, in words
    synthetic: bool = False  # trained on the drawn set: its output on a real film means nothing
    familiarity: Familiarity | None = None  # where the run's training films lie in its features


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _run_predictor(model_path: str, modified: float) -> Predictor | str:
    """The run's model, or why it cannot be used."""
    return _loaded(load_file, model_path)


@st.cache_resource(show_spinner="Checking and loading the uploaded model…", max_entries=4)
def _uploaded_predictor(digest: str, _data: bytes) -> Predictor | str:
    """The uploaded model, or why it cannot be used, once per file content."""
    return _loaded(load_bytes, _data)


def _loaded(load, source) -> Predictor | str:
    """A Predictor, or the refusal's message: a refused file is cached as such, so a rerun does
    not open it again (a decompression bomb took 55 s on every rerun before it was refused).
    The message only, not the exception, whose traceback would keep the upload's bytes alive."""
    try:
        return Predictor(load(source))
    except ModelLoadError as exc:
        return str(exc)


def choose_model() -> ModelChoice | None:
    """The model picker: a finished run, or an uploaded .keras/.h5 file with its options."""
    source = kept("pr_source", "A training run", partial(
        st.segmented_control, "Model", ["A training run", "Upload a model file"], key="pr_source")) or "A training run"
    if source == "A training run":
        return _choose_run()
    return _choose_upload()


def _choose_run() -> ModelChoice | None:
    runs = [r for r in RunStore().runs()
            if r.damage is None and r.model_file() is not None and r.model_problem is None]
    if not runs:
        st.info("No run has a saved model yet: train one on the Train page, or upload a model file.")
        return None
    names = run_labels(runs)
    run = RunStore().get(kept("pr_run", next(iter(names)), partial(
        st.selectbox, "Run", list(names), format_func=names.get, key="pr_run"), options=names))
    path = run.model_file()
    try:
        predictor = _run_predictor(str(path), path.stat().st_mtime)
    except OSError as exc:
        predictor = f"the file cannot be read ({exc})"
    if isinstance(predictor, str):
        st.error(f"The model of run **{plain(run.name)}** cannot be loaded: {plain(predictor)}")
        return None
    threshold, note = _threshold(run)
    image_set = _run_image_set(run)
    spec = run.config().dataset
    return ModelChoice(predictor, f"run:{run.id}:{path.stat().st_mtime}", threshold, note,
                       image_set, image_set.name if image_set is not None else spec, spec.startswith("synthetic"),
                       _familiarity(str(run.file(familiarity.FILE)), file_stamp(run.file(familiarity.FILE))))


def _threshold(run: Run) -> tuple[float, str]:
    """The threshold this browser decides with, and where it comes from: one tried on the Evaluate
    page and not saved holds here only, which the note says (other browsers decide otherwise)."""
    tried, saved = st.session_state.get("thresholds", {}).get(run.id), run.threshold()
    if saved is not None and tried in (None, saved["value"]):
        return saved["value"], f"saved with the run on the Evaluate page: {saved['rule']}"
    if tried is None:
        return DEFAULT_THRESHOLD, "the default: no threshold was chosen for this run on the Evaluate page"
    others = f"{saved['value']:.3f}, the one saved with the run" if saved else f"the default {DEFAULT_THRESHOLD}"
    return tried, f"tried on the Evaluate page in this browser, not saved: other browsers decide with {others}"


def _run_image_set(run: Run) -> ImageSet | None:
    config = run.config()
    return run_image_set(config.dataset, config.image_size)


@st.cache_resource(show_spinner=False, max_entries=8)
def _familiarity(path: str, stamp: tuple[int, int] | None) -> Familiarity | None:
    """The run's stored feature summary; None for runs trained before pneumo stored one."""
    try:
        return Familiarity.load(Path(path)) if stamp is not None else None
    except (OSError, ValueError, KeyError):
        return None


_MODEL_MB = MAX_MODEL_BYTES // 2**20
_IMAGE_MB = radiograph.MAX_BYTES // 2**20


def _choose_upload() -> ModelChoice | None:
    upload = st.file_uploader(f"Keras model (.keras or .h5, up to {_MODEL_MB} MB)", type=["keras", "h5"],
                              key="pr_model_upload", max_upload_size=_MODEL_MB,
                              help=f"Model files up to {_MODEL_MB} MB (images up to {_IMAGE_MB} MB); a larger file "
                                   "is refused by the browser before it is sent. Loaded with Keras safe_mode: a model "
                                   "that carries code (Lambda layers) is refused.")
    if upload is None:
        st.info(f"Upload a model trained anywhere, up to {_MODEL_MB} MB: one sigmoid or logit output, or two "
                "(softmax or logits), any input size, grey or RGB. Or pick a training run above.")
        return None
    digest = _digest(upload)
    shared = _uploaded_predictor(digest, upload.getvalue())
    if isinstance(shared, str):
        st.error(f"**{plain(upload.name)}** cannot be used: {plain(shared)}")
        return None
    detected = shared.detected
    st.markdown("**Detected**\n" + "\n".join(f"- {line}" for line in detected.describe()))
    c1, c2 = st.columns(2)
    options = list(PREPROCESSING)
    preprocessing = c1.selectbox("Pixel scaling before the model", options, format_func=PREPROCESSING.get,
                                 index=options.index(detected.suggested_preprocessing), key=f"pr_pre_{digest}",
                                 help="Guessed from the model (see Detected); pick what it was trained with.")
    resize = c2.selectbox("Resize filter", list(RESIZE), format_func=RESIZE.get, key=f"pr_resize_{digest}",
                          help="How the film is shrunk to the model's input size: use what the model was trained "
                               "with. Keras' ImageDataGenerator.flow_from_directory uses nearest; pneumo's runs "
                               "use bilinear. On real films the probability moved by up to 0.3 between the two.")
    index = 1
    if detected.outputs == 2:
        index = c1.radio("Which output is pneumonia?", [0, 1], index=1, horizontal=True, key=f"pr_index_{digest}",
                         help="Guessed 1: Keras' flow_from_directory and image_dataset_from_directory sort class "
                              "folders by name, NORMAL before PNEUMONIA.")
    predictor = shared.configured(preprocessing, index, resize)
    image_set = load_image_set(current_choice())
    return ModelChoice(predictor, f"upload:{digest}:{preprocessing}:{index}:{resize}", DEFAULT_THRESHOLD,
                       "the default for an uploaded model", image_set)


def _digest(upload) -> str:
    """The upload's sha256, computed once per upload (0.5 to 1.3 s for 500 MB on this project's
    machine), not on every rerun: kept in session state with the upload's id. (Streamlit itself
    still deep-copies an uploaded file's bytes on every rerun: 0.11 s for 82 MB, measured.)"""
    known = st.session_state.get("pr_model_digest")
    if known is None or known[0] != upload.file_id:
        known = (upload.file_id, hashlib.sha256(upload.getvalue()).hexdigest())
        st.session_state["pr_model_digest"] = known
    return known[1]


_LAST_UPLOAD = "pr_last_upload"


def choose_film(image_set: ImageSet | None) -> Radiograph | None:
    """An example from the image set's test split, or an uploaded JPEG/PNG/DICOM."""
    source = kept("pr_image_source", "Example", partial(
        st.segmented_control, "Image", ["Example", "Upload an image"], key="pr_image_source",
        help="An example from the test split of the run's data set, or your own film."))
    if source == "Upload an image":
        return _uploaded_film()
    if image_set is None:
        st.info("The data set this run was trained on is not available here: upload an image instead.")
        return None
    records = stats.examples(image_set.records)
    if records.empty:
        st.info("This data set has no test images: upload an image instead.")
        return None
    titles = {row.id: f"{row.id} · {row.cls}" + (f" ({row.subtype})" if row.subtype not in ("", "unknown", "normal")
                                                  else "") for row in records.itertuples()}
    chosen = kept("pr_example", next(iter(titles)), partial(
        st.selectbox, "Example (test split)", list(titles), format_func=titles.get, key="pr_example"), options=titles)
    i = int(records.index[records["id"] == chosen][0])
    lesion = np.asarray(image_set.masks[i]) if image_set.masks is not None else None
    return Radiograph(np.asarray(image_set.images[i]), image_set.name, [], titles[chosen],
                      int(records.at[i, "label"]), lesion)


def _uploaded_film() -> Radiograph | None:
    """The film uploaded last in this browser. A file uploader comes back empty after another page
    or the examples, so the decoded film is kept in the session (never on disk) until another is
    uploaded or the file is removed from the uploader."""
    upload = st.file_uploader("Chest X-ray (JPEG, PNG or DICOM)", key="pr_image_upload",
                              type=[ext.lstrip(".") for ext in radiograph.EXTENSIONS], max_upload_size=_IMAGE_MB,
                              on_change=lambda: st.session_state.pop(_LAST_UPLOAD, None),
                              help=f"Up to {_IMAGE_MB} MB and {radiograph.MAX_PIXELS:,} pixels, at least "
                                   f"{radiograph.MIN_SIDE} pixels a side. Read by its content, never saved.")
    if upload is None:
        film = st.session_state.get(_LAST_UPLOAD)
        if film is not None:
            st.caption(f"Your last upload, {plain(film.name)}: upload another film to replace it.")
        return film
    try:
        film = radiograph.read(upload.getvalue(), upload.name)
    except ImageDecodeError as exc:
        st.error(f"**{plain(upload.name)}** cannot be read: {plain(str(exc))}. Try a JPEG, PNG or DICOM chest film.")
        return None
    film.name = f"{upload.name} ({film.kind})"
    st.session_state[_LAST_UPLOAD] = film
    return film


def prediction(choice: ModelChoice, film: Radiograph) -> float:
    """The film as the model sees it, its known lesion, the probability and the decision.
    Stops the page when the model fails on the film."""
    predictor = choice.predictor
    try:
        probability = predictor.probability(film.pixels)
    except Exception as exc:  # noqa: BLE001 - a model from elsewhere may fail in any way; say so, keep the page
        st.error(f"The model failed on this film ({type(exc).__name__}: {plain(str(exc)[:300])}).")
        st.stop()
    decision = "PNEUMONIA" if probability >= choice.threshold else "NORMAL"
    if film.odd_shape:  # above the probability: read before the number it discredits
        st.warning(film.odd_shape, icon=":material/warning:")
    left, middle, right = st.columns([1, 1, 2])
    h, w = predictor.size
    left.image(predictor.as_seen(film.pixels), width="stretch",
               caption=f"{plain(film.name)}, as the model sees it: {h} x {w}, squashed from {film.pixels.shape[0]} x "
                       f"{film.pixels.shape[1]}")
    lesion = _lesion(predictor, film)
    if lesion is not None:
        middle.image(outline(predictor.as_seen(film.pixels), lesion), width="stretch",
                     caption=f"Known lesion: {_lesion_source(choice)}")
    with right:
        st.metric("Probability of pneumonia", f"{probability:.1%}")
        st.markdown(f"Decision: **{decision}** at threshold {choice.threshold:.3f} ({choice.threshold_note}).")
        if film.label is not None:
            truth = "PNEUMONIA" if film.label else "NORMAL"
            st.markdown(f"Ground truth: **{truth}**: the decision is {'correct' if truth == decision else 'wrong'}.")
        st.markdown(f"Model trained on: **{plain(choice.trained_on)}**.")
        _familiarity_check(choice, film)
        for note in film.notes:
            st.caption(f"Read: {plain(note)}.")
    return probability


def _familiarity_check(choice: ModelChoice, film: Radiograph) -> None:
    """How far the film lies from the run's training films, in the model's own features."""
    if choice.familiarity is None:
        st.caption("No check of how familiar this film is to the model: that needs a run trained by this version "
                   "of pneumo (an uploaded model brings no record of its training films).")
        return
    distance = _distance(choice.key, _film_key(film), _familiarity=choice.familiarity, _predictor=choice.predictor,
                         _pixels=film.pixels)
    text = familiarity.sentence(distance, choice.familiarity, choice.trained_on)
    (st.warning if choice.familiarity.unfamiliar(distance) else st.caption)(text)


@st.cache_data(show_spinner=False, max_entries=64)
def _distance(model_key: str, film_key: str, _familiarity: Familiarity, _predictor: Predictor,
              _pixels: np.ndarray) -> float:
    """Once per model and film: moving a slider does not send the film through the model again."""
    return float(_familiarity.distance(_predictor.features([_pixels]))[0])


def _film_key(film: Radiograph) -> str:
    """What identifies a film's pixels, for the caches of its maps and scores."""
    return hashlib.blake2b(film.pixels.tobytes(), digest_size=12).hexdigest()


def _lesion(predictor: Predictor, film: Radiograph) -> np.ndarray | None:
    """The known lesion at the model's input size, or None."""
    if film.lesion is None or not film.lesion.any():
        return None
    return predictor.as_seen(film.lesion.astype(np.uint8) * 255) > 127


@st.cache_data(show_spinner=False, max_entries=64)
def _saliency_map(model_key: str, film_key: str, method: str, layer: str, _predictor: Predictor,
                  _pixels: np.ndarray) -> np.ndarray:
    return saliency(_predictor, _pixels, method, layer)


@st.cache_data(show_spinner=False, max_entries=64)
def _faithfulness(model_key: str, film_key: str, method: str, layer: str, _predictor: Predictor, _seen: np.ndarray,
                  _map: np.ndarray) -> faithfulness.Faithfulness:
    """Deletion/insertion of one map; the random maps' curves, the same for every method on this film
    and model, are computed with the first map and reused by the others."""
    randoms = st.session_state.setdefault("pr_random_curves", {})
    result = faithfulness.faithfulness(_predictor.probabilities, _seen, _map,
                                       faithfulness.budget_for(_predictor.model.count_params()),
                                       randoms.get((model_key, film_key)))
    randoms[(model_key, film_key)] = result.randoms
    return result


def saliency_maps(choice: ModelChoice, film: Radiograph, probability: float) -> None:
    """The chosen methods side by side over the film, each scored against a known lesion."""
    st.subheader("Saliency")
    predictor = choice.predictor
    detected = predictor.detected
    methods = kept("pr_methods", ["Grad-CAM" if detected.targets else "SmoothGrad"], partial(
        st.pills, "Methods (several are shown side by side)", METHODS, selection_mode="multi", key="pr_methods",
        help=" ".join(f"**{m}**: {METHOD_HELP[m]}" for m in METHODS)))
    opacity_column, colour_column, layer_column = st.columns([2, 1, 3])
    opacity = kept("pr_opacity", 0.5, partial(opacity_column.slider, "Opacity", 0.0, 1.0, step=0.05, key="pr_opacity"))
    colormap = kept("pr_colormap", COLORMAPS[0], partial(colour_column.selectbox, "Colours", COLORMAPS,
                                                          key="pr_colormap"))
    target = detected.default_target
    if detected.targets:
        auto = f"auto: {predictor.layer_title(target)}"
        layers = [auto, *reversed(detected.targets)]
        layer = kept("pr_layer", auto, partial(
            layer_column.selectbox, "Target layer (CAM methods)", layers, key="pr_layer",
            format_func=lambda name: name if name == auto else predictor.layer_title(name),
            help="The feature maps Grad-CAM, Grad-CAM++ and ScoreCAM explain. Auto takes the last one "
                 "before global pooling: the finest map the decision still depends on."), options=layers)
        target = target if layer == auto else layer
    if not methods:
        st.info("Pick one or more saliency methods.")
        return
    seen, lesion = predictor.as_seen(film.pixels), _lesion(predictor, film)
    film_key = _film_key(film)
    # Side by side as room allows (four fixed columns left each map 140 px wide at 1024 px); at
    # least two places, so one map need not fill the page.
    columns = side_by_side("saliency", max(len(methods), 2), pictures=True)
    shown = {}
    for method, column in zip(methods, columns, strict=False):
        if method in CAM_METHODS and not target:
            column.info(f"{method} weighs a layer's feature maps, and this model has none (no layer with a height x "
                        "width x channels output): SmoothGrad explains it.")
            continue
        with column, st.spinner(f"{method}…"):
            try:
                saliency_map = _saliency_map(choice.key, film_key, method, target, _predictor=predictor,
                                             _pixels=film.pixels)
            except Exception as exc:  # noqa: BLE001 - e.g. a target layer the output does not depend on
                st.error(f"{method} failed on layer {predictor.layer_title(target)}: {type(exc).__name__}: "
                         f"{plain(str(exc)[:200])}. Try another target layer.")
                continue
            shown[method] = saliency_map
            image = overlay(seen, saliency_map, opacity, colormap)
            st.image(image, caption=method, width="stretch")
            if not saliency_map.any():
                st.caption(empty_map_message(probability, choice.threshold))
            else:
                st.caption(_faithfulness(choice.key, film_key, method, target, _predictor=predictor, _seen=seen,
                                         _map=saliency_map).sentence())
            if lesion is not None:
                score = pointing(saliency_map, lesion)
                st.caption(f"Known lesion ({_lesion_source(choice)}): {score['share']:.1%} of the map lies on it, "
                           f"which covers {score['chance']:.1%} of the image (a random map's share); peak on it: "
                           f"{'yes' if score['hit'] else 'no'}.")
            st.download_button("Download overlay (PNG)", partial(png_bytes, image),  # encoded when clicked
                               file_name=f"pneumo-{method.lower()}.png", mime="image/png", key=f"pr_download_{method}")
    for a, b, rho in faithfulness.agreement(shown):
        st.caption(faithfulness.agreement_sentence(a, b, rho))


def _lesion_source(choice: ModelChoice) -> str:
    """Where a film's known lesion comes from, in words."""
    synthetic = choice.image_set is None or choice.image_set.synthetic
    return "drawn with the film" if synthetic else "the radiologists' boxes"


def banner(choice: ModelChoice, film: Radiograph) -> None:
    """The synthetic-data warnings: the film shown is drawn, or the model learnt from drawn films."""
    if choice.image_set is not None and film.label is not None:
        synthetic_banner(choice.image_set)
    elif choice.synthetic:
        st.warning("**This model was trained on synthetic data**: films drawn by a program, not real radiographs. "
                   "What it says about a real film means nothing for a patient.", icon=":material/science:")

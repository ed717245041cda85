"""Predict page: one film, a probability, and saliency maps that show what the model looked at."""

import numpy as np
import streamlit as st

from pneumo import device
from pneumo.explain.saliency import COLORMAPS, METHOD_HELP, METHODS, empty_map_message, outline, overlay, png_bytes, pointing
from ui.common import synthetic_banner
from ui.predict_views import choose_film, choose_model, saliency_map

st.title("Predict")
st.caption(f"Runs on {device.describe()}.")
model_column, film_column = st.columns(2)
with model_column:
    choice = choose_model()
if choice is None:
    st.stop()
with film_column:
    film = choose_film(choice.dataset)
if film is None:
    st.stop()
if choice.dataset is not None and choice.dataset.synthetic and film.label is not None:
    synthetic_banner(choice.dataset)

predictor = choice.predictor
seen = predictor.as_seen(film.gray)
try:
    probability = predictor.probability(film.gray)
except Exception as exc:  # noqa: BLE001 - a model from elsewhere may fail in any way; say so, keep the page
    st.error(f"The model failed on this film ({type(exc).__name__}: {str(exc)[:300]}).")
    st.stop()
decision = "PNEUMONIA" if probability >= choice.threshold else "NORMAL"
lesion = None
if film.mask is not None and film.mask.any():
    lesion = predictor.as_seen(film.mask.astype(np.uint8) * 255) > 127
left, middle, right = st.columns([1, 1, 2])
with left:
    h, w = predictor.size
    st.image(seen, caption=f"{film.title}, as the model sees it: {h} x {w}, squashed from {film.gray.shape[0]} x "
                           f"{film.gray.shape[1]}", width="stretch")
if lesion is not None:
    middle.image(outline(seen, lesion), caption="The lesion, known because the film is drawn", width="stretch")
with right:
    st.metric("Probability of pneumonia", f"{probability:.1%}")
    st.markdown(f"Decision: **{decision}** at threshold {choice.threshold:.2f} ({choice.threshold_note}).")
    if film.label is not None:
        truth = "PNEUMONIA" if film.label else "NORMAL"
        verdict = "correct" if truth == decision else "wrong"
        st.markdown(f"Ground truth: **{truth}**: the decision is {verdict}.")
    for note in film.notes:
        st.caption(f"Read: {note}.")

st.subheader("Saliency")
methods = st.pills("Methods (several are shown side by side)", METHODS, selection_mode="multi",
                   default=["Grad-CAM"], key="pr_methods", help=" ".join(f"**{m}**: {METHOD_HELP[m]}" for m in METHODS))
opacity_column, colour_column, layer_column = st.columns([2, 1, 3])
opacity = opacity_column.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="pr_opacity")
colormap = colour_column.selectbox("Colours", COLORMAPS, key="pr_colormap")
detected = predictor.detected
auto = f"auto: {predictor.layer_title(detected.default_target)}"
layer = layer_column.selectbox(
    "Target layer (CAM methods)", [auto, *reversed(detected.targets)], key="pr_layer",
    format_func=lambda name: name if name == auto else predictor.layer_title(name),
    help="The feature maps Grad-CAM, Grad-CAM++ and ScoreCAM explain. Auto takes the last one "
         "before global pooling: the finest map the decision still depends on.")
target = detected.default_target if layer == auto else layer
if not methods:
    st.info("Pick one or more saliency methods.")
    st.stop()
columns = st.columns(max(len(methods), 3))  # one map need not fill the page
for method, column in zip(methods, columns, strict=False):
    with column, st.spinner(f"{method}…"):
        try:
            saliency = saliency_map(choice.key, film.key, method, target, _predictor=predictor, _gray=film.gray)
        except Exception as exc:  # noqa: BLE001 - e.g. a target layer the output does not depend on
            st.error(f"{method} failed on layer {predictor.layer_title(target)}: {type(exc).__name__}: {str(exc)[:200]}. "
                     "Try another target layer.")
            continue
        image = overlay(seen, saliency, opacity, colormap)
        st.image(image, caption=method, width="stretch")
        if not saliency.any():
            st.caption(empty_map_message(probability, choice.threshold))
        if lesion is not None:
            score = pointing(saliency, lesion)
            st.caption(f"Lesion (known: synthetic): {score['share']:.1%} of the map lies on it, which covers "
                       f"{score['chance']:.1%} of the image (a random map's share); peak on the lesion: "
                       f"{'yes' if score['hit'] else 'no'}.")
        st.download_button("Download overlay (PNG)", png_bytes(image), file_name=f"pneumo-{method.lower()}.png",
                           mime="image/png", key=f"pr_download_{method}")

"""Predict page: one film, a probability, and saliency maps that show what the model looked at."""

import streamlit as st

from pneumo import device
from ui import predict

st.title("Predict")
st.caption(f"Runs on {device.describe()}.")
model_column, film_column = st.columns(2)
with model_column:
    choice = predict.choose_model()
if choice is None:
    st.stop()
with film_column:
    film = predict.choose_film(choice.image_set)
if film is None:
    st.stop()

predict.banner(choice, film)
probability = predict.prediction(choice, film)  # stops the page when the model fails on the film
predict.saliency_maps(choice, film, probability)

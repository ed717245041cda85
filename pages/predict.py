"""Predict page: not built yet."""

import streamlit as st

st.title("Predict")
st.info("Coming next: upload one chest X-ray and get the probability of pneumonia with saliency overlays.")

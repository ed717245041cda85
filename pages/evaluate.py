"""Evaluate page: not built yet."""

import streamlit as st

st.title("Evaluate")
st.info("Coming next: confusion matrix, ROC and PR curves, and the threshold trade-off for any trained run.")

"""Train page: not built yet."""

import streamlit as st

st.title("Train")
st.info("Coming next: start CNN or ResNet50 training runs, watch their live curves, stop and compare them.")

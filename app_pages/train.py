"""Train page: set up a run, start it, watch it learn, stop it, compare runs."""

import streamlit as st

from ui.common import current_choice, load_image_set, synthetic_banner
from ui.train import new_run, runs_table, watch

VIEWS = ["New run", "Watch", "Runs"]

st.title("Train")
choice = current_choice()
st.session_state.setdefault("train_view", "New run")
if "train_view_next" in st.session_state:
    st.session_state["train_view"] = st.session_state.pop("train_view_next")
view = st.segmented_control("View", VIEWS, key="train_view", label_visibility="collapsed") or "New run"

if view == "New run":
    image_set = load_image_set(choice)
    synthetic_banner(image_set)
    new_run(choice, image_set)
elif view == "Watch":
    watch()
else:
    runs_table()

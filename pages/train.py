"""Train page: set up a run, start it, watch it learn, stop it, compare runs."""

import streamlit as st

from ui import train_views
from ui.common import current_choice, load_dataset, synthetic_banner

VIEWS = ["New run", "Watch", "Runs"]

st.title("Train")
choice = current_choice()
st.session_state.setdefault("train_view", "New run")
if "train_view_next" in st.session_state:
    st.session_state["train_view"] = st.session_state.pop("train_view_next")
view = st.segmented_control("View", VIEWS, key="train_view", label_visibility="collapsed") or "New run"

if view == "New run":
    image_set = load_dataset(choice)
    synthetic_banner(image_set)
    train_views.new_run(choice, image_set)
elif view == "Watch":
    train_views.watch()
else:
    train_views.runs_table()

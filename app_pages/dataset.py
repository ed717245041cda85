"""Dataset page: what is in the data set before anything is trained on it.

Only the chosen section is computed and drawn (tabs would draw all of them on every rerun): the
first screen of a fresh server needs the class balance, nothing else.
"""

import streamlit as st

from ui import dataset
from ui.common import current_choice, load_image_set, synthetic_banner

st.title("Dataset")
choice = current_choice()
image_set = load_image_set(choice)  # stops the page with the reason when the data set cannot be used
synthetic_banner(image_set)
dataset.overview(image_set)
if image_set.records.empty:
    st.error("No readable images in this data set.")
    st.stop()

split = dataset.split_picker(image_set, choice)
dataset.headline(image_set)

sections = {
    "Class balance": lambda: dataset.class_balance(image_set.records, split),
    "Patients": lambda: dataset.patients(image_set, split),
    "Images": lambda: dataset.images(image_set),
    "Leakage": lambda: dataset.leakage(image_set, split),
    "Gallery": lambda: dataset.gallery(image_set, split),
}
if dataset.has_radiology(image_set):
    sections["Radiology"] = lambda: dataset.radiology(image_set)
if st.session_state.get("ds_section") not in sections:  # e.g. Radiology, then a set without it
    st.session_state["ds_section"] = "Class balance"
chosen = st.segmented_control("Section", list(sections), key="ds_section", label_visibility="collapsed")
sections[chosen or "Class balance"]()

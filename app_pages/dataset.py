"""Dataset page: what is in the data set before anything is trained on it."""

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

split = dataset.split_picker(image_set.records, choice)
dataset.headline(image_set)

names = ["Class balance", "Patients", "Images", "Leakage", "Gallery"]
radiology = dataset.has_radiology(image_set)
tabs = st.tabs([*names, "Radiology"] if radiology else names)
balance, patients, images, leakage, gallery = tabs[:5]
if radiology:
    with tabs[5]:
        dataset.radiology(image_set)
with balance:
    dataset.class_balance(image_set.records, split)
with patients:
    dataset.patients(image_set, split)
with images:
    dataset.images(image_set)
with leakage:
    dataset.leakage(image_set, split)
with gallery:
    dataset.gallery(image_set, split)

"""Dataset page: what is in the data set before anything is trained on it."""

import numpy as np
import streamlit as st

from pneumo import charts
from pneumo.data import splits, stats
from pneumo.data.sources import CLASSES, SPLITS
from ui.common import current_choice, image_statistics, load_dataset, synthetic_banner

GALLERY_SIZE = 24

st.title("Dataset")
choice = current_choice()
image_set = load_dataset(choice)
records = image_set.records
synthetic_banner(image_set)
st.caption(f"**{image_set.name}** · {len(records):,} images decoded at {image_set.size} px "
           "(squashed to square: keeps the whole chest in view).")

if image_set.missing_splits:
    st.warning(f"Missing split folder(s): {', '.join(image_set.missing_splits)}. The rest is usable.")
if image_set.empty_folders:
    st.warning(f"Class folder(s) without any image: {', '.join(image_set.empty_folders)}. The rest is usable.")
if image_set.skipped or image_set.ignored:
    with st.expander(f":material/warning: {len(image_set.skipped)} unreadable file(s) skipped, "
                     f"{len(image_set.ignored)} non-image file(s) ignored"):
        if image_set.skipped:
            st.dataframe({"file": [f for f, _ in image_set.skipped], "reason": [r for _, r in image_set.skipped]},
                         hide_index=True, width="stretch")
        if image_set.ignored:
            st.write("Not images (ignored):", ", ".join(image_set.ignored[:50]))
if records.empty:
    st.error("No readable images in this data set.")
    st.stop()

view = st.radio("Split", ["Official", f"Working (val = {choice.val_fraction:.0%} of train, patient-grouped)"],
                horizontal=True,
                help="Training and evaluation use the working split; the official Kaggle val split has 16 images.")
split = records["split"] if view == "Official" else splits.assign_splits(records, choice.val_fraction, choice.seed)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Images", f"{len(records):,}")
c2.metric("Patients", f"{records['patient'].nunique():,}" if image_set.has_patients else "n/a")
c3.metric("Pneumonia", f"{(records['label'] == 1).mean():.1%}")
c4.metric("Skipped files", len(image_set.skipped))

balance, patients, images, leaks, gallery = st.tabs(["Class balance", "Patients", "Images", "Leakage", "Gallery"])

with balance:
    counts = stats.class_counts(records, split)
    st.plotly_chart(charts.class_bars(counts, "Images per split and class"), width="stretch")
    st.dataframe(counts, width="stretch")
    weights = stats.class_weights(records.loc[split == "train", "label"].to_numpy())
    if weights:
        st.markdown("**Class weights** implied by the train split (scikit-learn 'balanced', used by "
                    "training when class weighting is on): "
                    + ", ".join(f"{cls} × {w}" for cls, w in weights.items()))

with patients:
    if not image_set.has_patients:
        st.info("This source has no patient ids: each image counts as its own patient.")
    else:
        table = stats.patient_counts(records, split)
        st.plotly_chart(charts.class_bars(table, "Patients per split and class", "patients"), width="stretch")
        st.dataframe(table, width="stretch")
    subtypes = stats.subtype_counts(records, split)
    if not subtypes.empty:
        st.plotly_chart(charts.subtype_bars(subtypes), width="stretch")

with images:
    figures = image_statistics(image_set.key, _image_set=image_set)
    left, right = st.columns(2)
    sizes = records[["width", "height"]].drop_duplicates()
    if len(sizes) == 1:
        left.info(f"Every image is {sizes.iloc[0, 0]} × {sizes.iloc[0, 1]} pixels in the source.")
    else:
        left.plotly_chart(charts.size_scatter(records), width="stretch")
    right.plotly_chart(charts.intensity_lines(figures["histograms"]), width="stretch")
    st.plotly_chart(charts.mean_image_panel(figures["means"]), width="stretch")

with leaks:
    report = splits.leakage(records, split)
    if report.patients.empty:
        st.success("No patient appears in two splits.")
    else:
        st.warning(f"{len(report.patients)} patient id(s) (read from file names) appear in more than one split: "
                   "a model tested on them may have seen the same patient in training, so scores on those "
                   "splits can be optimistic.")
        st.dataframe(report.patients, hide_index=True, width="stretch")
    if report.duplicates.empty:
        st.success("No identical image (same bytes) appears in two splits.")
    else:
        st.warning(f"{len(report.duplicates)} identical image(s) (same bytes) appear in more than one split.")
        st.dataframe(report.duplicates, hide_index=True, width="stretch")

with gallery:
    f1, f2, f3 = st.columns(3)
    pick_split = f1.selectbox("Split", [s for s in SPLITS if (split == s).any()], key="gallery_split")
    pick_class = f2.selectbox("Class", ["any", *CLASSES], key="gallery_class")
    subtypes_here = sorted(records["subtype"].unique())
    pick_subtype = f3.selectbox("Subtype", ["any", *subtypes_here], key="gallery_subtype")
    mask = (split == pick_split).to_numpy()
    if pick_class != "any":
        mask = mask & (records["cls"] == pick_class).to_numpy()
    if pick_subtype != "any":
        mask = mask & (records["subtype"] == pick_subtype).to_numpy()
    idx = np.flatnonzero(mask)
    if st.button("Another sample", icon=":material/shuffle:"):
        st.session_state["gallery_seed"] = st.session_state.get("gallery_seed", 0) + 1
    rng = np.random.default_rng(st.session_state.get("gallery_seed", 0))
    shown = np.sort(rng.choice(idx, min(GALLERY_SIZE, len(idx)), replace=False)) if len(idx) else idx
    st.caption(f"{len(shown)} of {len(idx):,} matching images")
    cols = st.columns(6)
    for n, i in enumerate(shown):
        row = records.iloc[i]
        cols[n % 6].image(np.asarray(image_set.images[i]), caption=f"{row['cls']} · {row['patient']}",
                          width="stretch")

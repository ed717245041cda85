"""The Dataset page's sections: what it shows of a decoded image set, one function per section.

The page (``app_pages/dataset.py``) calls them in order; the numbers come from ``pneumo.data``.
The sections with charts import Plotly (``pneumo.charts``) when drawn: the first screen, the class
balance, has none, and a fresh server's first page would wait 0.1 to 0.2 s for the import.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import streamlit as st

from pneumo.data import splits, stats
from pneumo.data.imaging import outline
from pneumo.data.naming import NORMAL, UNKNOWN
from pneumo.data.sources import CLASSES, SPLITS, ImageSet
from pneumo.training.pipeline import class_weights
from ui.common import DatasetChoice, plain, side_by_side

GALLERY_SIZE = 24
GALLERY_COLUMNS = 6
BALANCE_BAR = "#7aa6d8"  # the class balance table's bars: a lighter blue than NORMAL's, under black digits


def overview(image_set: ImageSet) -> None:
    """What was decoded, and what of the source could not be used."""
    st.caption(f"**{plain(image_set.name)}** · {len(image_set.records):,} images decoded at {image_set.size} px "
               "(squashed to square: keeps the whole chest in view).")
    if image_set.missing_splits:
        st.warning(f"Missing split folder(s): {plain(', '.join(image_set.missing_splits))}. The rest is usable.")
    if image_set.empty_folders:
        st.warning(f"Class folder(s) without any image: {plain(', '.join(image_set.empty_folders))}. "
                   "The rest is usable.")
    for note in image_set.notes:
        st.info(plain(note), icon=":material/info:")
    if image_set.split_note:
        st.info(plain(image_set.split_note), icon=":material/call_split:")
    if image_set.skipped or image_set.ignored:
        with st.expander(f":material/warning: {len(image_set.skipped)} unreadable file(s) skipped, "
                         f"{len(image_set.ignored)} non-image file(s) ignored"):
            if image_set.skipped:
                st.dataframe({"file": [f for f, _ in image_set.skipped],
                              "reason": [r for _, r in image_set.skipped]}, hide_index=True, width="stretch")
            if image_set.ignored:
                st.write("Not images (ignored):", ", ".join(image_set.ignored[:50]))


def split_picker(image_set: ImageSet, choice: DatasetChoice) -> pd.Series:
    """The split each image is in: the data set's own (official, or assigned when it has none: its
    ``split_note`` says how), or the working one training uses."""
    own = "Assigned (no official split)" if image_set.split_note else "Official"
    view = st.radio("Split", [own, f"Working (val = {choice.val_fraction:.0%} of train, patient-grouped)"],
                    horizontal=True,
                    help="Training and evaluation use the working split; the official Kaggle val split has 16 images.")
    records = image_set.records
    return records["split"] if view == own else splits.assign_splits(records, choice.val_fraction, choice.seed)


def headline(image_set: ImageSet) -> None:
    """Four figures: images, patients, share of pneumonia, skipped files."""
    records = image_set.records
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Images", f"{len(records):,}")
    c2.metric("Patients", f"{records['patient'].nunique():,}" if image_set.has_patients else "n/a")
    c3.metric("Pneumonia", f"{(records['label'] == 1).mean():.1%}")
    c4.metric("Skipped files", len(image_set.skipped))


def class_balance(records: pd.DataFrame, split: pd.Series) -> None:
    """Images per split and class, and the class weights training would use."""
    counts = stats.class_counts(records, split)
    st.markdown("**Images per split and class**")
    st.markdown(_balance_table(counts), unsafe_allow_html=True)
    weights = class_weights(records.loc[split == "train", "label"].to_numpy())
    if weights:
        st.markdown("**Class weights** implied by the train split (scikit-learn 'balanced', used by "
                    "training when class weighting is on): "
                    + ", ".join(f"{CLASSES[label]} × {round(w, 3)}" for label, w in weights.items()))


def _balance_table(counts: pd.DataFrame) -> str:
    """``stats.class_counts`` as a plain HTML table, each class count with a bar in its cell.

    This is the app's first screen: a data grid's JavaScript takes the browser 0.6 s to load and
    Plotly's 2 s, and pandas' Styler 0.14 s of the server's imports (README, Opening the app).
    Only numbers and pneumo's own split, class and column names go into the HTML."""
    top = max(1, int(counts[list(CLASSES)].to_numpy().max()))
    formats = {"pneumonia : normal": "{:.2f}", "% pneumonia": "{:.1f}"}

    def cell(column: str, value: float) -> str:
        text = "–" if pd.isna(value) else formats.get(column, "{:,.0f}").format(value)
        bar = (f"background:linear-gradient(90deg,{BALANCE_BAR} {100 * value / top:.1f}%,transparent 0);"
               if column in CLASSES else "")
        return f'<td style="text-align:right;{bar}">{text}</td>'

    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in counts.columns)
    rows = "".join(f"<tr><th>{html.escape(str(split))}</th>{''.join(cell(c, v) for c, v in row.items())}</tr>"
                   for split, row in counts.iterrows())
    return f'<table style="width:100%"><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table>'


def patients(image_set: ImageSet, split: pd.Series) -> None:
    """Patients per split and class, and pneumonia subtypes."""
    from pneumo import charts

    records = image_set.records
    if not image_set.has_patients:
        st.info("This source has no patient ids: each image counts as its own patient.")
    else:
        table = stats.patient_counts(records, split)
        st.plotly_chart(charts.class_bars(table, "Patients per split and class", "patients"), width="stretch")
        st.dataframe(table, width="stretch")
    subtypes = stats.subtype_counts(records, split)
    if not subtypes.empty and not has_radiology(image_set):  # RSNA's detailed classes: the Radiology tab
        st.plotly_chart(charts.subtype_bars(subtypes), width="stretch")


def has_radiology(image_set: ImageSet) -> bool:
    """Whether the set has radiologist boxes or DICOM headers to show (RSNA, DICOM CSVs)."""
    return "boxes" in image_set.records.columns


def radiology(image_set: ImageSet) -> None:
    """What the radiologists and the DICOM headers say: boxes, detailed classes, view, sex, age.

    AP films are taken of sicker patients lying in bed; a model can learn the view instead of
    the lungs, so the view per class is worth a look before training."""
    from pneumo import charts

    records = image_set.records
    left, right = side_by_side("boxes", 2)
    if image_set.masks is not None and records["boxes"].any():
        boxes = stats.by_class(records, "boxes")
        left.plotly_chart(charts.class_bars(boxes, "Radiologist boxes per film"), width="stretch")
        shares = stats.box_shares(image_set.masks, records)
        right.plotly_chart(charts.box_share_histogram(shares), width="stretch")
        st.caption(f"{int(records['boxes'].sum()):,} boxes on {len(shares):,} films; they cover a median "
                   f"{shares['share'].median():.1%} of the film (the lungs take roughly half a chest film).")
    if records["subtype"].astype(bool).any():
        st.dataframe(stats.by_class(records, "subtype"), width="stretch")
    left, right = side_by_side("view_sex", 2)
    for column, title, place in (("view", "View position per class", left),
                                 ("sex", "Sex per class", right)):
        if records[column].astype(bool).any():
            place.plotly_chart(charts.class_bars(stats.by_class(records, column), title), width="stretch")
    if records["view"].astype(bool).any():
        st.caption("AP films are taken of sicker patients lying in bed, PA films standing: a model can learn the "
                   "view instead of the lungs.")
    if records["age"].astype(bool).any():
        st.plotly_chart(charts.age_by_class(records), width="stretch")


@st.cache_data(show_spinner="Computing statistics…", max_entries=8)
def _pixel_statistics(key: str, _image_set: ImageSet) -> dict:
    """Histograms and mean images: the only statistics that read every pixel, so cached (by ``key``)."""
    return {"histograms": stats.intensity_histograms(_image_set), "means": stats.mean_images(_image_set)}


def images(image_set: ImageSet) -> None:
    """Source image sizes, grey-level histograms and the mean image per class."""
    from pneumo import charts

    figures = _pixel_statistics(image_set.key, _image_set=image_set)
    left, right = side_by_side("pixels", 2)
    size = stats.common_size(image_set.records)
    if size:
        left.info(f"Every image is {size[0]} × {size[1]} pixels in the source.")
    else:
        left.plotly_chart(charts.size_scatter(image_set.records), width="stretch")
    right.plotly_chart(charts.intensity_lines(figures["histograms"]), width="stretch")
    st.plotly_chart(charts.mean_image_panel(figures["means"]), width="stretch")


def leakage(image_set: ImageSet, split: pd.Series) -> None:
    """Patients and identical images found in more than one split."""
    report = splits.leakage(image_set.records, split)
    if not image_set.has_patients:
        st.info("This source has no patient ids: leakage of a patient between splits cannot be checked.")
    elif report.patients.empty:
        st.success("No patient appears in two splits.")
    else:
        st.warning(f"{len(report.patients)} patient id(s) appear in more than one split: "
                   "a model tested on them may have seen the same patient in training, so scores on those "
                   "splits can be optimistic.")
        st.dataframe(report.patients, hide_index=True, width="stretch")
    if report.duplicates.empty:
        st.success("No identical image (same bytes) appears in two splits.")
    else:
        st.warning(f"{len(report.duplicates)} identical image(s) (same bytes) appear in more than one split.")
        st.dataframe(report.duplicates, hide_index=True, width="stretch")


def gallery(image_set: ImageSet, split: pd.Series) -> None:
    """A random sample of images, filtered by split, class and subtype; reshuffled on demand."""
    records = image_set.records
    f1, f2, f3 = st.columns(3)
    pick_split = f1.selectbox("Split", [s for s in SPLITS if (split == s).any()], key="gallery_split")
    pick_class = f2.selectbox("Class", ["any", *CLASSES], key="gallery_class")
    subtypes = sorted(set(records["subtype"]) - {""})
    known = set(subtypes) - {NORMAL, UNKNOWN}  # PneumoniaMNIST knows none: no filter to offer
    pick_subtype = f3.selectbox("Subtype", ["any", *subtypes], key="gallery_subtype") if known else "any"
    if st.button("Another sample", icon=":material/shuffle:"):
        st.session_state["gallery_seed"] = st.session_state.get("gallery_seed", 0) + 1
    shown, matching = stats.sample(records, split, pick_split, GALLERY_SIZE, st.session_state.get("gallery_seed", 0),
                                   cls=None if pick_class == "any" else pick_class,
                                   subtype=None if pick_subtype == "any" else pick_subtype)
    st.caption(f"{len(shown)} of {matching:,} matching images")
    for n, i in enumerate(shown):
        if n % GALLERY_COLUMNS == 0:  # a row of its own: captions of different lengths do not shift the next
            cols = st.columns(GALLERY_COLUMNS)
        row = records.iloc[i]
        picture = np.asarray(image_set.images[i])
        if image_set.masks is not None and np.asarray(image_set.masks[i]).any():  # a known lesion, outlined
            picture = outline(picture, np.asarray(image_set.masks[i]))
        who = f" · {row['patient']}" if image_set.has_patients else ""
        cols[n % GALLERY_COLUMNS].image(picture, caption=plain(f"{row['cls']}{who}"), width="stretch")
    if image_set.masks is not None:
        st.caption("Outlined in green: " + ("the drawn lesion." if image_set.synthetic else
                                            "the radiologists' boxes."))

"""Statistics of a decoded data set, as plain tables and arrays for the Dataset page."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pneumo.data.sources import CLASSES, SPLITS, ImageSet

_IMAGES_PER_CLASS = 400  # images sampled per class for histograms: plenty for a smooth curve


def class_counts(records: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Images per split x class, with the pneumonia : normal ratio and the share of pneumonia."""
    table = pd.crosstab(split, records["cls"]).reindex(index=list(SPLITS), columns=list(CLASSES), fill_value=0)
    table = table[table.sum(axis=1) > 0]
    table["total"] = table[list(CLASSES)].sum(axis=1)
    normal = table["NORMAL"].replace(0, np.nan)
    table["pneumonia : normal"] = (table["PNEUMONIA"] / normal).round(2)
    table["% pneumonia"] = (100 * table["PNEUMONIA"] / table["total"]).round(1)
    table.index.name = "split"
    return table


def patient_counts(records: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Distinct patients per split x class."""
    table = records.assign(split=split).pivot_table(index="split", columns="cls", values="patient",
                                                    aggfunc="nunique", fill_value=0)
    return table.reindex(index=[s for s in SPLITS if s in table.index], columns=list(CLASSES), fill_value=0)


def by_class(records: pd.DataFrame, column: str) -> pd.DataFrame:
    """Images per value of ``column`` (a DICOM header field, the number of boxes) and class; blank
    values counted as "not stated"."""
    values = records[column].astype(str).replace("", "not stated")
    return pd.crosstab(values.rename(column), records["cls"]).reindex(columns=list(CLASSES), fill_value=0)


def box_shares(masks: np.ndarray, records: pd.DataFrame) -> pd.DataFrame:
    """Per film with boxes: the share of the film its radiologist boxes cover (their union)."""
    boxed = np.flatnonzero(records["boxes"].to_numpy() > 0)
    shares = [float(np.asarray(masks[i]).mean()) for i in boxed]
    return pd.DataFrame({"id": records["id"].to_numpy()[boxed], "boxes": records["boxes"].to_numpy()[boxed],
                         "share": shares})


def subtype_counts(records: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Bacterial vs viral (vs unknown) pneumonia images per split."""
    pneumonia = records["label"] == 1
    table = pd.crosstab(split[pneumonia], records.loc[pneumonia, "subtype"])
    return table.reindex(index=[s for s in SPLITS if s in table.index])


def common_size(records: pd.DataFrame) -> tuple[int, int] | None:
    """The (width, height) every image had in the source, or None when sizes differ."""
    sizes = records[["width", "height"]].drop_duplicates()
    return (int(sizes.iloc[0, 0]), int(sizes.iloc[0, 1])) if len(sizes) == 1 else None


def sample(records: pd.DataFrame, split: pd.Series, in_split: str, n: int, seed: int = 0,
           cls: str | None = None, subtype: str | None = None) -> tuple[np.ndarray, int]:
    """Up to ``n`` random rows of the split ``in_split``, of class ``cls`` and subtype ``subtype``
    (None: any), in random order (rows are stored class by class: in order, "any" would show all
    the normal films first), and how many rows match."""
    mask = (split == in_split).to_numpy()
    for column, value in (("cls", cls), ("subtype", subtype)):
        if value is not None:
            mask = mask & (records[column] == value).to_numpy()
    idx = np.flatnonzero(mask)
    rng = np.random.default_rng(seed)
    return (rng.choice(idx, min(n, len(idx)), replace=False) if len(idx) else idx), len(idx)


def examples(records: pd.DataFrame, per_class: int = 4) -> pd.DataFrame:
    """A few test films of each class, the same ones every time: the Predict page's examples."""
    test = records[records["split"] == "test"]
    return test.groupby("label", group_keys=False).head(per_class).sort_values(["label", "id"])


def intensity_histograms(image_set: ImageSet, seed: int = 0) -> dict[str, np.ndarray]:
    """Share of pixels at each grey level 0..255, per class (a sample of images per class)."""
    rng = np.random.default_rng(seed)
    out = {}
    for label, cls in enumerate(CLASSES):
        idx = np.flatnonzero(image_set.records["label"].to_numpy() == label)
        if len(idx) == 0:
            continue
        idx = np.sort(rng.choice(idx, min(len(idx), _IMAGES_PER_CLASS), replace=False))
        counts = np.bincount(np.asarray(image_set.images[idx]).reshape(-1), minlength=256)
        out[cls] = counts / counts.sum()
    return out


def mean_images(image_set: ImageSet) -> dict[str, np.ndarray]:
    """The average image of each class, as float arrays 0..255."""
    labels = image_set.records["label"].to_numpy()
    out = {}
    for label, cls in enumerate(CLASSES):
        idx = np.flatnonzero(labels == label)
        if len(idx):
            total = np.zeros(image_set.images.shape[1:], np.float64)
            for start in range(0, len(idx), 512):  # chunks keep memory flat on big sets
                total += np.asarray(image_set.images[idx[start:start + 512]], np.float64).sum(axis=0)
            out[cls] = total / len(idx)
    return out

"""Train/val/test assignment without patient leakage, and the leakage report for any split.

The official Kaggle val split has 16 images, too few to pick a threshold or stop early on.
The working validation split is carved from train instead: stratified by class, seeded,
grouped by patient so no patient lands in two splits.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_VAL_FRACTION = 0.1


def assign_splits(records: pd.DataFrame, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> pd.Series:
    """The working split of each record.

    ``val_fraction`` > 0: official train and val are pooled and ``val_fraction`` of the
    patients (stratified by class) become val; test is never touched. ``val_fraction`` = 0
    keeps the official split as it is.
    """
    split = records["split"].copy()
    if val_fraction <= 0:
        return split
    if not 0 < val_fraction <= 0.5:
        raise ValueError(f"val fraction must be between 0 and 0.5, got {val_fraction}")
    pool = np.flatnonzero(split.isin(["train", "val"]).to_numpy())
    labels = records["label"].to_numpy()[pool]
    groups = records["patient"].to_numpy()[pool]
    n_splits = min(round(1 / val_fraction), len(set(groups)), np.bincount(labels, minlength=2).max())
    if n_splits < 2:  # too few patients to carve anything: keep the official split
        return split
    val_idx = _one_fold(labels, groups, n_splits, seed)
    split.iloc[pool] = "train"
    split.iloc[pool[val_idx]] = "val"
    return split


CARVED = {"train": 0.7, "val": 0.15, "test": 0.15}  # for sets that come without a split of their own


def carve(records: pd.DataFrame, seed: int = 0) -> pd.Series:
    """A train/val/test split for a set that has none (RSNA, most CSVs): seeded, stratified by
    class and grouped by patient (no patient in two splits), in the proportions of ``CARVED``."""
    split = pd.Series("train", index=records.index)
    # test first, from everyone; then val from what is left
    for name, share in (("test", CARVED["test"]), ("val", CARVED["val"] / (1 - CARVED["test"]))):
        pool = np.flatnonzero((split == "train").to_numpy())
        labels = records["label"].to_numpy()[pool]
        groups = records["patient"].to_numpy()[pool]
        n_splits = min(round(1 / share), len(set(groups)), max(2, np.bincount(labels, minlength=2).min()))
        if n_splits < 2:
            continue
        split.iloc[pool[_one_fold(labels, groups, n_splits, seed)]] = name
    return split


def _one_fold(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Positions of one of ``n_splits`` seeded folds, stratified by label, grouped by patient."""
    # Imported here: scikit-learn takes 1.5 s to load, and the app's first screen carves nothing.
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # tiny sets: "least populated class has only N members"
        warnings.simplefilter("ignore", UserWarning)
        return next(folds.split(np.zeros(len(labels)), labels, groups))[1]


def carve_note(seed: int) -> str:
    shares = ", ".join(f"{share:.0%} {name}" for name, share in CARVED.items())
    return (f"This set has no official split: patients were assigned at random (seed {seed}), stratified by "
            f"class and grouped by patient: {shares}. Runs record it with their data set.")


@dataclass
class LeakageReport:
    """Patients found in more than one split, and identical images in more than one split."""

    patients: pd.DataFrame  # patient, splits, images
    duplicates: pd.DataFrame  # digest, splits, files

    @property
    def clean(self) -> bool:
        return self.patients.empty and self.duplicates.empty


def leakage(records: pd.DataFrame, split: pd.Series | None = None) -> LeakageReport:
    """Leaks between splits for ``split`` (default: the official one)."""
    frame = records.assign(split=records["split"] if split is None else split)
    return LeakageReport(
        patients=_across(frame, "patient", "images", "size"),
        duplicates=_across(frame, "digest", "files", lambda ids: ", ".join(ids)),
    )


def _across(frame: pd.DataFrame, key: str, column: str, summary: str | Callable) -> pd.DataFrame:
    spread = frame.groupby(key)["split"].nunique()
    leaked = frame[frame[key].isin(spread[spread > 1].index)]
    grouped = leaked.groupby(key)
    table = pd.DataFrame({
        "splits": grouped["split"].agg(lambda s: ", ".join(sorted(set(s)))),
        column: grouped["id"].agg(summary),
    })
    return table.reset_index()

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pneumo.data.splits import assign_splits, leakage


def _records(patients: list[int], labels: list[int], splits: list[str]) -> pd.DataFrame:
    n = len(patients)
    return pd.DataFrame({
        "id": [f"f{i}" for i in range(n)],
        "split": splits,
        "label": labels,
        "patient": [f"p{p}" for p in patients],
        "digest": [f"d{i}" for i in range(n)],
    })


@st.composite
def datasets(draw):
    n_patients = draw(st.integers(4, 60))
    rows_patients, rows_labels, rows_splits = [], [], []
    for p in range(n_patients):
        label = draw(st.integers(0, 1))
        split = draw(st.sampled_from(["train", "train", "train", "val", "test"]))
        for _ in range(draw(st.integers(1, 4))):
            rows_patients.append(p)
            rows_labels.append(label)
            rows_splits.append(split)
    return _records(rows_patients, rows_labels, rows_splits)


@settings(max_examples=150, deadline=None)
@given(records=datasets(), fraction=st.sampled_from([0.1, 0.2, 0.3]), seed=st.integers(0, 5))
def test_no_patient_in_two_splits_and_test_untouched(records, fraction, seed) -> None:
    split = assign_splits(records, fraction, seed)
    assert split.groupby(records["patient"]).nunique().max() == 1
    assert ((split == "test") == (records["split"] == "test")).all()
    assert set(split) <= {"train", "val", "test"}
    assert split.equals(assign_splits(records, fraction, seed))  # seeded


def test_val_is_about_the_fraction_and_stratified() -> None:
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(1000), 2)
    labels = np.repeat((rng.random(1000) < 0.7).astype(int), 2)
    records = _records(patients.tolist(), labels.tolist(), ["train"] * 2000)
    split = assign_splits(records, 0.1, 0)
    val = split == "val"
    assert 0.08 < val.mean() < 0.12
    assert abs(records.loc[val, "label"].mean() - 0.7) < 0.05


def test_a_set_with_only_test_images_keeps_its_split() -> None:
    records = _records([0, 1, 2, 3], [0, 0, 1, 1], ["test"] * 4)
    assert assign_splits(records, 0.1).tolist() == ["test"] * 4


def test_zero_fraction_keeps_the_official_split() -> None:
    records = _records([1, 2, 3], [0, 1, 0], ["train", "val", "test"])
    assert assign_splits(records, 0).tolist() == ["train", "val", "test"]
    with pytest.raises(ValueError):
        assign_splits(records, 0.9)


def test_leakage_finds_patients_and_identical_images() -> None:
    records = _records([1, 1, 2, 3, 4], [1, 1, 0, 0, 1], ["train", "test", "train", "val", "test"])
    records.loc[3, "digest"] = records.loc[4, "digest"] = "same"
    report = leakage(records)
    assert report.patients.to_dict("records") == [{"patient": "p1", "splits": "test, train", "images": 2}]
    assert report.duplicates.to_dict("records") == [{"digest": "same", "splits": "test, val", "files": "f3, f4"}]
    assert not report.clean
    assert leakage(_records([1, 2], [0, 1], ["train", "test"])).clean

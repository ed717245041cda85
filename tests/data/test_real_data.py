"""Integration on the real Kermany images in ../shared/data; skipped on a fresh clone without them."""

import pytest

from pneumo.data import cache, splits, stats
from pneumo.data.sources import FolderSource
from tests.conftest import REAL_CHEST_XRAY

pytestmark = pytest.mark.skipif(not REAL_CHEST_XRAY.is_dir(), reason="real data not present (../shared/data)")


@pytest.fixture(scope="module")
def real_set(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PNEUMO_CACHE", str(tmp_path_factory.mktemp("real-cache")))
        yield cache.load(FolderSource(REAL_CHEST_XRAY), 64)


def test_official_counts(real_set) -> None:
    table = stats.class_counts(real_set.records, real_set.records["split"])
    assert table[["NORMAL", "PNEUMONIA"]].to_dict("index") == {
        "train": {"NORMAL": 1341, "PNEUMONIA": 3875},
        "val": {"NORMAL": 8, "PNEUMONIA": 8},
        "test": {"NORMAL": 234, "PNEUMONIA": 390},
    }
    assert not real_set.skipped and not real_set.missing_splits


def test_patients_and_subtypes(real_set) -> None:
    r = real_set.records
    patients = stats.patient_counts(r, r["split"])
    assert patients.loc["train"].tolist() == [1340, 1635]
    assert patients.loc["test"].tolist() == [234, 202]
    assert set(r.loc[r["label"] == 1, "subtype"]) == {"bacteria", "virus"}
    assert r.loc[r["id"].str.endswith("person1946_bacteria_4874.jpeg"), "patient"].item() == "1946"


def test_working_split_has_no_train_val_patient_leak(real_set) -> None:
    r = real_set.records
    working = splits.assign_splits(r, 0.1, 0)
    carved = working.isin(["train", "val"])
    assert working[carved].groupby(r.loc[carved, "patient"]).nunique().max() == 1
    assert splits.leakage(r, working).duplicates.empty

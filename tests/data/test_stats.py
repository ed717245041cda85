import numpy as np
import pandas as pd

from pneumo.data import stats
from pneumo.data.sources import ImageSet


def _image_set() -> ImageSet:
    records = pd.DataFrame({
        "id": list("abcdef"), "split": ["train"] * 4 + ["test"] * 2, "label": [0, 1, 1, 1, 0, 1],
        "cls": ["NORMAL", "PNEUMONIA", "PNEUMONIA", "PNEUMONIA", "NORMAL", "PNEUMONIA"],
        "patient": ["n1", "p1", "p1", "p2", "n2", "p3"],
        "subtype": ["normal", "bacteria", "bacteria", "virus", "normal", "virus"],
    })
    images = np.stack([np.full((4, 4), v, np.uint8) for v in (10, 200, 220, 240, 30, 250)])
    return ImageSet("t", False, records, images)


def test_class_counts_ratio_and_share() -> None:
    r = _image_set().records
    table = stats.class_counts(r, r["split"])
    assert table.loc["train", ["NORMAL", "PNEUMONIA", "total"]].tolist() == [1, 3, 4]
    assert table.loc["train", "pneumonia : normal"] == 3.0
    assert table.loc["test", "% pneumonia"] == 50.0
    assert "val" not in table.index


def test_common_size_and_gallery_sample() -> None:
    r = _image_set().records.assign(width=[40] * 6, height=[30] * 6)
    assert stats.common_size(r) == (40, 30)
    assert stats.common_size(r.assign(width=[40] * 5 + [41])) is None
    shown, matching = stats.sample(r, r["split"], "train", 2, cls="PNEUMONIA")
    assert matching == 3 and len(shown) == 2 and set(shown) <= {1, 2, 3}
    shown, matching = stats.sample(r, r["split"], "train", 4, seed=0)
    assert sorted(shown) == [0, 1, 2, 3] and list(shown) != [0, 1, 2, 3]  # shuffled: not the stored class order
    shown, matching = stats.sample(r, r["split"], "test", 24, subtype="virus")
    assert matching == 1 and shown.tolist() == [5]
    assert stats.sample(r, r["split"], "val", 24)[1] == 0


def test_patients_and_subtypes() -> None:
    r = _image_set().records
    patients = stats.patient_counts(r, r["split"])
    assert patients.loc["train"].tolist() == [1, 2]
    subtypes = stats.subtype_counts(r, r["split"])
    assert subtypes.loc["train", "bacteria"] == 2 and subtypes.loc["test", "virus"] == 1


def test_histograms_and_means() -> None:
    image_set = _image_set()
    hist = stats.intensity_histograms(image_set)
    assert np.isclose(hist["NORMAL"].sum(), 1) and hist["NORMAL"][10] == 0.5 and hist["NORMAL"][30] == 0.5
    means = stats.mean_images(image_set)
    assert np.allclose(means["NORMAL"], 20) and np.allclose(means["PNEUMONIA"], (200 + 220 + 240 + 250) / 4)

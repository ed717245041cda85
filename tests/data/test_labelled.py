"""Labelled sets built here with pydicom: the RSNA challenge layout (JPEG Baseline DICOMs as the
challenge ships them, a MONOCHROME1 film, a missing image, an unlabelled one, bad label lines)
and a labelled CSV; the real 16-film sample when it is there."""

from pathlib import Path

import numpy as np
import pytest

from pneumo.data import cache
from pneumo.data.labelled import CsvSource, RsnaSource, csv_spec, guess_columns, label_value, read_rsna_labels
from pneumo.data.sources import DatasetError, parse_spec
from tests.conftest import SHARED_DATA
from tests.films import dicom_jpeg, noisy_film, png, rsna_folder, rsna_layout

RSNA_SAMPLE = SHARED_DATA / "rsna_sample"


def test_an_rsna_folder_is_found_by_itself_and_read_like_uploads(tmp_path: Path) -> None:
    root = rsna_folder(tmp_path / "rsna")
    source = parse_spec(str(root))
    assert isinstance(source, RsnaSource)
    image_set = cache.load(source, 64)
    records = image_set.records
    assert sorted(records["patient"]) == [f"p{i}" for i in range(9)]  # p9 has no image, "stray" no label
    assert records.set_index("patient")["label"].to_dict() == {f"p{i}": int(i < 4) for i in range(9)}
    notes = " ".join(image_set.notes)
    assert "1 of the 10 labelled patients have no image" in notes and "stray.dcm" in notes
    by_patient = records.set_index("patient")
    assert by_patient.loc["p0", "view"] == "AP" and by_patient.loc["p4", "view"] == "PA"
    assert by_patient.loc["p1", "sex"] == "F" and by_patient.loc["p0", "age"] == "51"
    assert by_patient.loc["p0", "boxes"] == 2 and by_patient.loc["p4", "boxes"] == 0
    # Boxes are lesion masks at the working size: p0's two boxes of a 128 px film at 64 px.
    masks = {p: image_set.masks[i] for i, p in enumerate(records["patient"])}
    assert masks["p0"][10:30, 5:20].all() and masks["p0"][10:30, 30:45].all() and masks["p0"].sum() < 64 * 64 / 4
    assert not masks["p4"].any()
    # MONOCHROME1 is turned so that dense is bright, as on the Predict page.
    p5 = image_set.images[list(records["patient"]).index("p5")].astype(float)
    assert p5[:, -8:].mean() < p5[:, :8].mean()  # the gradient runs the other way round
    assert set(records["split"]) <= {"train", "val", "test"} and "no official split" in image_set.split_note
    assert records.groupby("patient")["split"].nunique().max() == 1


def test_a_warm_rsna_load_decodes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = RsnaSource(rsna_folder(tmp_path / "rsna"))
    first = cache.load(source, 32)
    monkeypatch.setattr(RsnaSource, "build", lambda *a, **k: pytest.fail("decoded again"))
    again = cache.load(RsnaSource(source.root), 32)
    assert again.key == first.key and np.array_equal(again.images, first.images)
    assert isinstance(again.images, np.memmap)  # read from the disk, not held in memory


@pytest.mark.parametrize(("line", "says"), [
    ("p1,1,2,3,4,2\n", "line 2: Target must be 0 or 1"),
    ("p1,1,2,,4,1\n", "line 2: x, y, width and height must all be numbers"),
    ("p1,,,,,1\n", "line 2: Target 1 needs a box"),
    ("p1,1,2,3,4,0\n", "line 2: Target 0 with a box"),
    ("p1,1,2,3\n", "line 2: 4 fields, expected 6"),
    ("p1,1,2,-3,4,1\n", "line 2: a box needs"),
    ("p1,,,,,0\np1,1,2,3,4,1\n", "line 3: patient p1 is Target 1 here and 0"),
])
def test_a_malformed_label_file_is_refused_with_the_line(tmp_path: Path, line: str, says: str) -> None:
    root = rsna_layout(tmp_path / "rsna", line, {"p1": dicom_jpeg(noisy_film(1))})
    with pytest.raises(DatasetError, match=says):
        cache.load(parse_spec(str(root)), 32)


def test_a_wrong_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stage_2_train_labels.csv").write_text("id,label\np1,1\n")
    with pytest.raises(DatasetError, match="line 1: expected the header"):
        read_rsna_labels(tmp_path / "stage_2_train_labels.csv")


def test_unreadable_films_are_skipped_with_the_reason(tmp_path: Path) -> None:
    root = rsna_folder(tmp_path / "rsna")
    (root / "stage_2_train_images" / "p6.dcm").write_bytes(b"DICM but not really")
    image_set = cache.load(RsnaSource(root), 32)
    assert "p6" not in set(image_set.records["patient"]) and len(image_set.records) == 8
    assert [rel for rel, _ in image_set.skipped] == ["stage_2_train_images/p6.dcm"]
    assert len(image_set.images) == len(image_set.masks) == 8


def test_a_labelled_csv_with_a_split_and_patients(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    rows = ["Image Index,Finding Labels,Patient ID,fold"]
    for i in range(12):
        name = f"imgs/{i}.png" if i % 3 else f"imgs/{i}.dcm"
        (tmp_path / name).write_bytes(png(noisy_film(i)) if i % 3 else dicom_jpeg(noisy_film(i)))
        finding = "Effusion|Pneumonia" if i < 5 else "No Finding"
        rows.append(f"{name},{finding},pt{i // 2},{'test' if i >= 9 else 'train'}")
    rows += ["../secret.png,Pneumonia,x,train", "imgs/gone.png,Pneumonia,y,train", "imgs/1.png,,z,train",
             "imgs/1.png,Atelectasis|Mass,pt0,train"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    spec = csv_spec(tmp_path / "labels.csv", {"path": "Image Index", "label": "Finding Labels",
                                              "patient": "Patient ID", "split": "fold"})
    source = parse_spec(spec)
    assert isinstance(source, CsvSource) and source.spec == spec
    image_set = cache.load(source, 32)
    records = image_set.records
    assert len(records) == 13 and records["label"].sum() == 5 and not image_set.split_note
    assert (records["split"] == "test").sum() == 3 and records["patient"].nunique() == 6
    notes = " ".join(image_set.notes)
    assert "outside the CSV's folder" in notes and "not there" in notes  # ../secret.png, gone.png
    assert "1 row(s) have a label that is neither" in notes  # the blank one; "Atelectasis|Mass" is 0


def test_csv_columns_are_guessed_and_labels_read() -> None:
    assert guess_columns(["Image Index", "Finding Labels", "Patient ID"]) == {
        "path": "Image Index", "label": "Finding Labels", "patient": "Patient ID"}
    assert [label_value(v) for v in ("1", "1.0", "PNEUMONIA", "0", "normal", "No Finding", "", "-1.0",
                                     "Effusion|Pneumonia", "Effusion")] == [1, 1, 1, 0, 0, 0, None, None, 1, None]


@pytest.mark.skipif(not RSNA_SAMPLE.is_dir(), reason="the RSNA sample is not here (../shared/data/rsna_sample)")
def test_the_real_rsna_sample() -> None:
    image_set = cache.load(parse_spec(str(RSNA_SAMPLE)), 64)
    records = image_set.records
    assert len(records) == 16 and records["label"].sum() == 5 and records["boxes"].sum() == 10
    assert "26,668 of the 26,684 labelled patients have no image" in " ".join(image_set.notes)
    assert set(records["view"]) == {"AP", "PA"} and set(records["sex"]) <= {"F", "M"}
    lesions = image_set.masks.reshape(16, -1).any(axis=1)
    assert lesions.tolist() == (records["label"] == 1).tolist()

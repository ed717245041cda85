import hashlib
from pathlib import Path

import numpy as np
import pytest

from pneumo.data import cache, mnist, synthetic
from pneumo.data.sources import DatasetError, FolderSource, NpzSource, SyntheticSource, parse_spec
from tests.conftest import SHARED_DATA, image_bytes, make_tree


def _odd_tree(root: Path) -> Path:
    """Upper/lower case folders, png and jpg, a missing val split, a corrupt, an empty and a text file."""
    make_tree(root, {
        "TRAIN": {"normal": ["IM-0001-0001.jpeg", "IM-0001-0002.png"],
                  "Pneumonia": ["person3_bacteria_10.jpg", "person4_virus_11.JPEG"]},
        "test": {"NORMAL": ["IM-0100-0001.jpeg"], "PNEUMONIA": ["person9_virus_20.png"]},
    })
    (root / "TRAIN" / "normal" / "IM-0002-0001.jpeg").write_bytes(image_bytes()[:150])  # truncated
    (root / "test" / "PNEUMONIA" / "person9_virus_21.jpeg").write_bytes(b"")  # an interrupted copy
    (root / "test" / "NORMAL" / "notes.txt").write_text("not an image")
    (root / "test" / "NORMAL" / ".DS_Store").write_bytes(b"\0")
    return root


def test_folder_with_odd_cases(tmp_path: Path) -> None:
    image_set = cache.load(FolderSource(_odd_tree(tmp_path / "data")), 32)
    r = image_set.records
    assert sorted(r["id"].str.split("/").str[-1]) == sorted([
        "IM-0001-0001.jpeg", "IM-0001-0002.png", "person3_bacteria_10.jpg", "person4_virus_11.JPEG",
        "IM-0100-0001.jpeg", "person9_virus_20.png"])
    assert image_set.images.shape == (6, 32, 32)
    assert image_set.missing_splits == ["val"]
    skipped = dict(image_set.skipped)
    assert list(skipped) == ["TRAIN/normal/IM-0002-0001.jpeg", "test/PNEUMONIA/person9_virus_21.jpeg"]
    assert "truncated" in skipped["TRAIN/normal/IM-0002-0001.jpeg"]
    assert skipped["test/PNEUMONIA/person9_virus_21.jpeg"] == "the file is empty (0 bytes)"
    assert image_set.ignored == ["test/NORMAL/notes.txt"]
    by_name = r.set_index(r["id"].str.split("/").str[-1])
    assert by_name.loc["person4_virus_11.JPEG", ["split", "label", "cls", "patient", "subtype"]].tolist() == [
        "train", 1, "PNEUMONIA", "4", "virus"]
    assert by_name.loc["IM-0001-0002.png", "patient"] == "IM-0001"
    assert (by_name["width"] == 40).all() and (by_name["height"] == 30).all()
    assert not image_set.synthetic


def test_root_containing_chest_xray_is_accepted(tmp_path: Path) -> None:
    make_tree(tmp_path / "download" / "chest_xray" / "chest_xray", {"train": {"NORMAL": ["IM-0001-0001.jpeg"]}})
    image_set = cache.load(parse_spec(str(tmp_path / "download")), 16)
    assert len(image_set.records) == 1 and image_set.missing_splits == ["val", "test"]


@pytest.mark.parametrize("layout", ["missing", "empty", "file"])
def test_unusable_folders_say_why(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "x"
    if layout == "empty":
        (path / "train" / "NORMAL").mkdir(parents=True)
    elif layout == "file":
        path.write_text("a file")
    with pytest.raises(DatasetError, match=r"not found|No images|is a file, not a folder"):
        cache.load(parse_spec(str(path)), 16)


def test_parse_spec() -> None:
    assert isinstance(parse_spec("synthetic"), SyntheticSource)
    assert parse_spec("synthetic:7").seed == 7
    assert parse_spec("pneumoniamnist:128").mnist_size == 128
    assert isinstance(parse_spec("/some/file.npz"), NpzSource)
    assert isinstance(parse_spec("/some/folder"), FolderSource)
    assert parse_spec("synthetic:999").seed == 999
    for bad in ("pneumoniamnist:100", "synthetic:x", "  ", "synthetic:1000", "synthetic:-1", "synthetic:٣"):
        with pytest.raises(DatasetError):
            parse_spec(bad)
    with pytest.raises(DatasetError, match="from 0 to 999") as refused:  # once a traceback (int() of 5,000 digits)
        parse_spec("synthetic:" + "7" * 5000)
    assert len(str(refused.value)) < 200


def _write_npz(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_npz_loading(tmp_path: Path) -> None:
    arrays = _write_npz(tmp_path / "p.npz")
    image_set = cache.load(parse_spec(str(tmp_path / "p.npz")), 28)
    r = image_set.records
    assert r.groupby("split").size().to_dict() == {"train": 12, "val": 4, "test": 6}
    train = (r["split"] == "train").to_numpy()
    np.testing.assert_array_equal(image_set.images[train], arrays["train_images"])
    assert r.loc[train, "label"].tolist() == arrays["train_labels"].ravel().tolist()
    assert not image_set.has_patients and r["patient"].is_unique
    assert cache.load(parse_spec(str(tmp_path / "p.npz")), 64).images.shape[1:] == (64, 64)


def test_npz_that_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"not a readable \.npz"):
        cache.load(parse_spec(str(tmp_path / "bad.npz")), 28)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DatasetError, match="no train_images"):
        cache.load(parse_spec(str(tmp_path / "other.npz")), 28)


@pytest.mark.skipif(not (SHARED_DATA / "extras" / "pneumoniamnist.npz").exists(), reason="shared data absent")
def test_real_pneumoniamnist_file() -> None:
    image_set = cache.load(parse_spec(str(SHARED_DATA / "extras" / "pneumoniamnist.npz")), 28)
    counts = image_set.records.groupby(["split", "label"]).size().to_dict()
    assert counts[("test", 0)] == 234 and counts[("test", 1)] == 390
    assert counts[("val", 0)] == 135 and counts[("val", 1)] == 389


def test_mnist_download_checks_md5_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served.npz"
    _write_npz(served)
    monkeypatch.setattr(mnist, "url", lambda size: served.as_uri())
    monkeypatch.setitem(mnist.MD5, 28, "0" * 32)
    with pytest.raises(mnist.DownloadError, match="corrupt"):
        mnist.fetch(28)
    assert list(mnist.local_path(28).parent.iterdir()) == []  # nothing kept, not even a partial file
    monkeypatch.setitem(mnist.MD5, 28, hashlib.md5(served.read_bytes()).hexdigest())
    path = mnist.fetch(28)
    assert path.read_bytes() == served.read_bytes()
    served.unlink()  # a second fetch must not download again
    assert mnist.fetch(28) == path
    assert len(cache.load(parse_spec("pneumoniamnist:28"), 28).records) == 22


def test_mnist_offline_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist, "url", lambda size: "http://127.0.0.1:9/pneumoniamnist.npz")
    with pytest.raises(DatasetError, match=r"Could not download PneumoniaMNIST 64 px.*path of the \.npz"):
        cache.load(parse_spec("pneumoniamnist:64"), 64)


def test_synthetic_is_deterministic_with_masks() -> None:
    cases = synthetic.cases(0)
    assert cases == synthetic.cases(0) and cases != synthetic.cases(1)
    case = next(c for c in cases if c.label == 1)
    img1, mask1 = synthetic.draw(case, 64)
    img2, mask2 = synthetic.draw(case, 64)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(mask1, mask2)
    assert mask1.any()
    normal = next(c for c in cases if c.label == 0)
    assert not synthetic.draw(normal, 64)[1].any()


def test_synthetic_lesions_brighten_the_masked_lung() -> None:
    """The opacity is really drawn where the mask says: masked pixels are brighter than the
    same pixels of the same case drawn without pneumonia."""
    case = next(c for c in synthetic.cases(0) if c.label == 1 and c.subtype == "bacteria")
    sick, mask = synthetic.draw(case, 128)
    healthy, _ = synthetic.draw(synthetic.SyntheticCase(case.index, case.split, 0, case.patient, "normal"), 128)
    assert sick[mask].astype(int).mean() > healthy[mask].astype(int).mean() + 5


def test_synthetic_set_in_cache_has_patients_and_masks() -> None:
    image_set = cache.load(SyntheticSource(0), 32)
    r = image_set.records
    assert image_set.synthetic and image_set.masks is not None
    assert len(r) == sum(n for n, _ in synthetic.SPLITS.values())
    assert r["patient"].nunique() < len(r)  # some patients have two films
    assert (image_set.masks.reshape(len(r), -1).any(axis=1) <= (r["label"] == 1).to_numpy()).all()
    assert r.groupby("patient")["split"].nunique().max() == 1
    assert 0.6 < r["label"].mean() < 0.8

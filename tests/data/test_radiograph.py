"""Reading uploads: every kind of good file gives the right pixels, every bad one a clear reason."""

import numpy as np
import pytest
from PIL import Image

from pneumo.data import radiograph
from pneumo.data.imaging import ImageDecodeError
from tests import films
from tests.conftest import SHARED_DATA


@pytest.mark.parametrize("name", list(films.good_files()))
def test_every_good_kind_reads_as_the_same_picture(name: str) -> None:
    data = films.good_files()[name]
    film = radiograph.read(data, name)
    expected = films.gradient()
    if name == "mono1.dcm":
        expected = 255 - expected
    assert film.pixels.dtype == np.uint8 and film.pixels.shape == expected.shape
    # JPEG is lossy and 16-bit/DICOM files are stretched over their own range: compare loosely.
    assert np.abs(film.pixels.astype(int) - expected).mean() < 4, name
    assert film.kind == ("DICOM" if name.endswith(".dcm") else "PNG" if name.endswith(".png") else "JPEG")


def test_what_was_done_is_said() -> None:
    files = films.good_files()
    assert any("16-bit" in n for n in radiograph.read(files["sixteen.png"], "sixteen.png").notes)
    assert any("transparency" in n for n in radiograph.read(files["rgba.png"], "rgba.png").notes)
    assert any("palette" in n for n in radiograph.read(files["palette.png"], "palette.png").notes)
    assert any("EXIF" in n for n in radiograph.read(files["exif.jpg"], "exif.jpg").notes)
    assert any("MONOCHROME1 inverted" in n for n in radiograph.read(files["mono1.dcm"], "mono1.dcm").notes)
    assert radiograph.read(files["grey.png"], "grey.png").notes == []


def test_rgba_transparency_is_flattened_on_black() -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:20, :, 3] = 255  # top half opaque, bottom half transparent
    film = radiograph.read(films.pil_file(films.Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert film.pixels[:20].min() == 200 and film.pixels[20:].max() == 0


def test_sixteen_bit_png_keeps_its_contrast() -> None:
    arr = np.linspace(1000, 1255, 64 * 64).reshape(64, 64)  # 256 levels in the middle of 16 bits
    film = radiograph.read(films.png16(arr), "x.png")
    assert film.pixels.min() == 0 and film.pixels.max() == 255 and len(np.unique(film.pixels)) > 200


def test_dicom_window_and_rescale_are_applied() -> None:
    arr = np.tile(np.linspace(0, 4000, 100), (30, 1)).astype(np.uint16)
    film = radiograph.read(films.dicom(arr, window=(1000, 400)), "w.dcm")
    # Values below 800 are all black and above 1200 all white: a 400-wide window at 1000.
    assert film.pixels[:, :19].max() == 0 and film.pixels[:, 31:].min() == 255
    assert any("window" in n for n in film.notes)
    shifted = radiograph.read(films.dicom(arr, window=(1000, 400), intercept=-500), "w.dcm").pixels
    assert 100 < film.pixels[0, 25] < 160 and shifted[0, 25] == 0  # rescale (-500) applies before the window


def test_extension_is_not_trusted() -> None:
    film = radiograph.read(films.png(), "scan.jpg")
    assert film.kind == "PNG" and "named .jpg but the content is PNG" in film.notes[0]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"just some text, not a picture\n" * 10, "not a JPEG, PNG or DICOM"),
    (films.jpeg()[:300], "truncated or corrupt"),
    (films.png()[:60], "truncated or corrupt"),
    (films.png_declaring(100_000, 100_000), "decompression bomb"),
    (films.png_declaring(20_000, 10), "16,384 a side"),
    (films.dicom(np.zeros((40, 40)), pixels=False), "holds no image"),
    (films.dicom(np.zeros((40, 40)))[:-100], "cannot be decoded"),
    (films.png(np.zeros((1, 1), np.uint8)), r"1 x 1 pixels: too small .* 28 x 28"),
    (films.dicom(np.zeros((27, 300))), "300 x 27 pixels: too small"),
    (b"\0" * 128 + b"DICM" + b"\x02\x00" * 20, "DICOM"),
    (films.dicom_odd_columns(), "not a readable DICOM file"),
], ids=["empty", "text", "cut-jpeg", "cut-png", "bomb", "too-wide", "dicom-no-pixels", "cut-dicom", "one-pixel",
        "too-thin-dicom", "junk-dicom", "odd-length-field"])
def test_bad_files_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        radiograph.read(data, "upload.png")


def test_the_smallest_films_read() -> None:
    assert radiograph.read(films.png(np.full((28, 28), 90, np.uint8))).pixels.shape == (28, 28)


def test_too_many_bytes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(radiograph, "MAX_BYTES", 1000)
    with pytest.raises(ImageDecodeError, match="the limit is"):
        radiograph.read(films.png(np.zeros((200, 200), np.uint8)) + b"\0" * 2000, "big.png")


def test_only_shapes_no_chest_film_has_are_called_odd() -> None:
    """Every real Kermany film at its true aspect ratio (up to 3.2:1) passes; a 100:1 strip does not."""
    strip = radiograph.Radiograph(np.zeros((30, 3000), np.uint8), "PNG")
    assert "(100:1)" in strip.odd_shape and radiograph.Radiograph(np.zeros((50, 30), np.uint8), "PNG").odd_shape is None
    hires = SHARED_DATA / "chest_xray_hires"
    if not hires.is_dir():
        pytest.skip("real films not present (../shared/data/chest_xray_hires)")
    for path in hires.rglob("*.jpeg"):
        with Image.open(path) as image:
            width, height = image.size
        assert max(width, height) / min(width, height) <= radiograph.MAX_ASPECT, path

"""AppTest of the frame and the Dataset page: what a user sees, without a browser."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, make_tree

APP = str(ROOT / "streamlit_app.py")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("app-cache")


@pytest.fixture(autouse=True)
def _reuse_decoded_images(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic set is drawn once for the module, not once per test."""
    monkeypatch.setenv("PNEUMO_CACHE", str(shared_cache))


def _app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    return at


def _text(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.warning, *at.info, *at.error,
                                          *at.success, *at.metric])


def test_opens_on_synthetic_and_says_so() -> None:
    at = _app(ds_size=64).run()
    assert not at.exception
    assert at.title[0].value == "Dataset"
    assert "Synthetic data" in at.warning[0].value
    assert at.metric[0].value == "2,600"
    assert "NORMAL ×" in _text(at)  # class weights shown


def test_preset_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "kaggle", {
        "train": {"NORMAL": ["IM-0001-0001.jpeg", "IM-0001-0002.jpeg"], "PNEUMONIA": ["person1_virus_1.jpeg"]},
        "test": {"NORMAL": ["IM-0002-0001.jpeg"], "PNEUMONIA": ["person2_bacteria_3.jpeg"]}})
    (root / "test" / "PNEUMONIA" / "broken.jpeg").write_bytes(b"\xff\xd8\xff garbage")
    monkeypatch.setenv("PNEUMO_DATA", str(root))
    at = _app(ds_size=64).run()
    assert not at.exception
    assert at.sidebar.radio[0].value == "Folder"
    assert at.sidebar.text_input[0].value == str(root)
    assert [m.value for m in at.metric[:2]] == ["5", "4"]
    assert at.metric[3].value == "1"  # the skipped file is counted
    assert "Missing split folder(s): val" in _text(at)
    assert not any("Synthetic data" in w.value for w in at.warning)


def test_missing_folder_is_an_error_not_a_crash(tmp_path: Path) -> None:
    at = _app(ds_kind="Folder", ds_folder=str(tmp_path / "nowhere"), ds_size=64).run()
    assert not at.exception
    assert "Folder not found" in at.error[0].value


def test_offline_pneumoniamnist_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumo.data import mnist

    monkeypatch.setattr(mnist, "url", lambda size: "http://127.0.0.1:9/x.npz")
    at = _app(ds_kind="PneumoniaMNIST", ds_mnist_size=28, ds_size=64).run()
    assert not at.exception
    assert "Could not download PneumoniaMNIST" in at.error[0].value


def test_switching_split_view_and_gallery_filters() -> None:
    at = _app(ds_size=64).run()
    split_radio = next(r for r in at.radio if r.label == "Split")
    split_radio.set_value(split_radio.options[1]).run()
    assert not at.exception
    at.selectbox(key="gallery_class").set_value("PNEUMONIA").run()
    at.selectbox(key="gallery_subtype").set_value("virus").run()
    assert not at.exception
    assert any("matching images" in c.value for c in at.caption)


@pytest.mark.parametrize(("page", "says"), [("pages/evaluate.py", "No run has predictions yet"),
                                            ("pages/predict.py", "No run has a saved model yet")])
def test_other_pages_open_and_keep_the_dataset_choice(page: str, says: str) -> None:
    at = _app(ds_size=64, ds_val_pct=20).run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.info[0].value.startswith(says)
    # AppTest drops sidebar elements after switch_page; the browser test checks them on screen.
    assert at.session_state["ds_val_pct"] == 20
    assert at.session_state["dataset_choice"].val_fraction == 0.2

"""AppTest of the Dataset page from its own file, and of the frame around the pages."""

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pneumo.data.sources import FolderSource
from tests.conftest import ROOT, as_read, cache_copy, make_tree, page_app
from tests.films import noisy_film, png, rsna_folder

APP = str(ROOT / "streamlit_app.py")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: Path) -> Path:
    return cache_copy(synthetic_cache, tmp_path_factory.mktemp("app") / "cache")


@pytest.fixture(autouse=True)
def _reuse_decoded_images(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded sets are kept for the module, not made again for each test."""
    monkeypatch.setenv("PNEUMO_CACHE", str(shared_cache))


def _page(**state) -> AppTest:
    return page_app("dataset", **state)


def _text(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.warning, *at.info, *at.error,
                                          *at.success, *at.metric])


def _kaggle_tree(root: Path) -> Path:
    return make_tree(root, {
        "train": {"NORMAL": ["IM-0001-0001.jpeg", "IM-0001-0002.jpeg"], "PNEUMONIA": ["person1_virus_1.jpeg"]},
        "test": {"NORMAL": ["IM-0002-0001.jpeg"], "PNEUMONIA": ["person2_bacteria_3.jpeg"]}})


def test_opens_on_synthetic_and_says_so() -> None:
    at = _page(ds_size=64).run()
    assert not at.exception
    assert at.title[0].value == "Dataset"
    assert "Synthetic data" in at.warning[0].value
    assert at.metric[0].value == "2,600"
    assert "NORMAL ×" in _text(at)  # class weights shown
    assert "Images per split and class" in _text(at)
    balance = next(m.value for m in at.markdown if "<table" in m.value)  # train, val, test totals
    assert all(f">{total}<" in balance for total in ("1,800", 200, 600)) and "<script" not in balance
    assert not at.get("plotly_chart")  # the first screen loads no Plotly (README, Opening the app)
    assert "No identical image" not in _text(at)  # the first screen draws only the class balance
    at.segmented_control(key="ds_section").set_value("Leakage").run()
    assert "No identical image" in _text(at)


# What a fresh server's first screen must not wait for (README, Opening the app): Plotly's
# express module and pandas' Styler (0.1 to 0.2 s of imports each), scikit-learn (1.5 s), pydicom.
_NOT_ON_THE_FIRST_SCREEN = ("plotly.express", "pandas.io.formats.style", "sklearn", "pydicom")


def test_the_first_screen_imports_nothing_it_does_not_draw() -> None:
    """In a fresh interpreter, as on a fresh server: the frame and the Dataset page's first screen."""
    script = (f"from streamlit.testing.v1 import AppTest\n"
              f"at = AppTest.from_file({APP!r}, default_timeout=120)\n"
              "at.session_state['ds_size'] = 64\n"
              "assert not at.run().exception\n"
              "import sys\n"
              f"print(sorted(m for m in {_NOT_ON_THE_FIRST_SCREEN!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_preset_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _kaggle_tree(tmp_path / "kaggle")
    (root / "test" / "PNEUMONIA" / "broken.jpeg").write_bytes(b"\xff\xd8\xff garbage")
    monkeypatch.setenv("PNEUMO_DATA", str(root))
    at = _page(ds_size=64).run()
    assert not at.exception
    assert at.sidebar.radio[0].value == "Folder"
    assert at.sidebar.text_input[0].value == str(root)
    assert [m.value for m in at.metric[:2]] == ["5", "4"]
    assert at.metric[3].value == "1"  # the skipped file is counted
    assert "Missing split folder(s): val" in _text(at)
    assert not any("Synthetic data" in w.value for w in at.warning)


@pytest.mark.parametrize(("spec", "state"), [
    ("pneumoniamnist:64", {"ds_kind": "PneumoniaMNIST", "ds_mnist_size": 64, "ds_npz": ""}),
    ("/offline/pneumoniamnist.npz", {"ds_kind": "PneumoniaMNIST", "ds_npz": "/offline/pneumoniamnist.npz"}),
    ("synthetic", {"ds_kind": "Synthetic", "ds_folder": "", "ds_npz": ""}),
])
def test_preset_is_read_by_the_spec_parser(spec: str, state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumo.data import mnist

    monkeypatch.setattr(mnist, "url", lambda size: "http://127.0.0.1:9/x.npz")  # never a real download
    monkeypatch.setenv("PNEUMO_DATA", spec)
    at = _page(ds_size=64).run()
    assert not at.exception
    assert {key: at.session_state[key] for key in state} == state


@pytest.mark.parametrize("spec", ["pneumoniamnist:99", "synthetic:abc"])
def test_invalid_preset_opens_on_synthetic_with_the_reason(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_DATA", spec)
    at = _page(ds_size=64).run()
    assert not at.exception
    assert at.sidebar.radio[0].value == "Synthetic"
    assert f"PNEUMO_DATA={spec!r} cannot be used" in as_read(at.sidebar.error[0].value)
    assert at.metric[0].value == "2,600"


def test_missing_folder_is_an_error_not_a_crash(tmp_path: Path) -> None:
    at = _page(ds_kind="Folder", ds_folder=str(tmp_path / "nowhere"), ds_size=64).run()
    assert not at.exception
    assert "Folder not found" in at.error[0].value


def test_offline_pneumoniamnist_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumo.data import mnist

    monkeypatch.setattr(mnist, "url", lambda size: "http://127.0.0.1:9/x.npz")
    at = _page(ds_kind="PneumoniaMNIST", ds_mnist_size=28, ds_size=64).run()
    assert not at.exception
    assert "Could not download PneumoniaMNIST" in at.error[0].value
    assert at.code[0].value == "http://127.0.0.1:9/x.npz"  # whole, to copy (the message's copy is broken up)


def test_switching_split_view_and_gallery_filters() -> None:
    at = _page(ds_size=64).run()
    split_radio = next(r for r in at.radio if r.label == "Split")
    split_radio.set_value(split_radio.options[1]).run()
    assert not at.exception
    assert "gallery_class" not in [s.key for s in at.selectbox]  # only the chosen section is drawn
    at.segmented_control(key="ds_section").set_value("Gallery").run()
    at.selectbox(key="gallery_class").set_value("PNEUMONIA").run()
    at.selectbox(key="gallery_subtype").set_value("virus").run()
    assert not at.exception
    assert any("matching images" in c.value for c in at.caption)


def test_a_rerun_on_a_folder_lists_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.common import _cached_set

    root = _kaggle_tree(tmp_path / "kaggle")
    at = _page(ds_kind="Folder", ds_folder=str(root), ds_size=32).run()  # first scan: decoded and cached
    assert not at.exception and at.metric[0].value == "5"
    calls = []
    original = FolderSource.listing
    monkeypatch.setattr(FolderSource, "listing", lambda self: calls.append(1) or original(self))
    at.run()
    assert not at.exception and calls == [1]
    _cached_set.clear()  # as in a new server process: the arrays come from the disk cache
    at.run()
    assert not at.exception and calls == [1, 1] and at.metric[0].value == "5"


def test_script_runs_leave_keras_and_the_garbage_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit clears Keras' session and collects all garbage after every script run: once
    TensorFlow is loaded, 0.25 s or more of server CPU each, paid by every rerun of every session.
    The frame turns the first off (ui.common.keep_keras_session), the project's config the second
    (AppTest skips Streamlit's collection, so here the setting is read as the server reads it)."""
    import keras
    from streamlit import config
    from streamlit.runtime.scriptrunner import script_runner

    cleared = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *_, **__: cleared.append(1))
    monkeypatch.setattr(script_runner, "_clean_problem_modules", keras.backend.clear_session)  # as Streamlit's does
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["ds_size"] = 64
    at.run().run()
    assert not at.exception and cleared == []
    assert config.get_option("runner.postScriptGC") is False


def test_the_frame_starts_importing_tensorflow_once_per_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Train and Predict need TensorFlow (5 to 8 s to import); the frame starts that import on a
    timer after the first page, so the first visitor of those pages does not wait for all of it."""
    import threading

    from ui import common

    common.import_tensorflow_soon.cache_clear()  # as in a new server process
    started = []
    monkeypatch.setattr(threading.Timer, "start", lambda timer: started.append(timer.name))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["ds_size"] = 64
    at.run()
    assert not at.exception and started.count("pneumo-import-tensorflow") == 1
    at.run()
    assert started.count("pneumo-import-tensorflow") == 1
    common.import_tensorflow_soon.cache_clear()  # the next test's frame starts a real one


@pytest.mark.parametrize(("page", "says"), [("app_pages/evaluate.py", "No run has predictions yet"),
                                            ("app_pages/predict.py", "No run has a saved model yet")])
def test_other_pages_open_and_keep_the_dataset_choice(page: str, says: str) -> None:
    """The frame (streamlit_app.py): navigation, and the sidebar's choice kept across pages."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["ds_size"] = 64
    at.session_state["ds_val_pct"] = 20
    at.run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.info[0].value.startswith(says)
    # AppTest drops sidebar elements after switch_page; the browser test checks them on screen.
    assert at.session_state["ds_val_pct"] == 20
    assert at.session_state["dataset_choice"].val_fraction == 0.2


def test_an_rsna_folder_shows_what_is_missing_the_split_and_the_radiology(tmp_path: Path) -> None:
    root = rsna_folder(tmp_path / "rsna")
    at = page_app("dataset", ds_kind="Folder", ds_folder=str(root)).run()
    assert not at.exception and not at.error
    infos = " ".join(as_read(i.value) for i in at.info)
    assert "1 of the 10 labelled patients have no image" in infos and "stray.dcm" in infos
    assert "no official split" in infos
    assert at.segmented_control(key="ds_section").options[-1] == "Radiology"
    at.segmented_control(key="ds_section").set_value("Radiology").run()
    assert len(at.get("plotly_chart")) >= 4  # boxes per film, box share, view, sex, age
    assert any("boxes on 4 films" in as_read(c.value) for c in at.caption)


def test_a_labelled_csv_is_picked_with_guessed_columns(tmp_path: Path) -> None:
    (tmp_path / "films").mkdir()
    lines = ["file,Target,subject"]
    for i in range(20):
        (tmp_path / "films" / f"{i}.png").write_bytes(png(noisy_film(i, 64)))
        lines.append(f"films/{i}.png,{int(i < 8)},s{i}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    at = page_app("dataset", ds_kind="CSV", ds_csv=str(tmp_path / "labels.csv")).run()
    assert not at.exception and not at.error
    assert at.sidebar.selectbox(key="ds_csv_path").value == "file"
    assert at.sidebar.selectbox(key="ds_csv_label").value == "Target"
    assert at.sidebar.selectbox(key="ds_csv_patient").value == "subject"
    assert at.metric[0].value == "20" and at.metric[2].value == "40.0%"


def test_a_folder_given_as_the_csv_is_not_read_as_a_folder(tmp_path: Path) -> None:
    root = _kaggle_tree(tmp_path / "kaggle")
    at = page_app("dataset", ds_kind="CSV", ds_csv=str(root)).run()
    assert not at.exception and "cannot be read as a CSV" in at.sidebar.error[0].value
    assert not at.metric and not at.main.error and "CSV file" in at.main.info[0].value


def test_a_file_where_a_folder_or_an_npz_is_asked_says_so(tmp_path: Path) -> None:
    (tmp_path / "film.png").write_bytes(b"not a folder")
    at = page_app("dataset", ds_kind="Folder", ds_folder=str(tmp_path / "film.png")).run()
    assert not at.exception and "is a file, not a folder" in at.main.error[0].value
    at = page_app("dataset", ds_kind="PneumoniaMNIST", ds_npz=str(tmp_path / "film.png")).run()
    assert not at.exception and "is not a .npz file" in at.sidebar.error[0].value
    assert not at.main.error and ".npz" in at.main.info[0].value


def test_class_mode_keeps_folders_and_csvs_to_the_data_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_TEACHER_PASSCODE", "pw")
    monkeypatch.setenv("PNEUMO_DATA_ROOTS", str(tmp_path / "offered"))
    answers = set()
    for state in ({"ds_kind": "Folder", "ds_folder": "/etc"}, {"ds_kind": "Folder", "ds_folder": "/no/such"},
                  {"ds_kind": "CSV", "ds_csv": "/etc/passwd.csv"}, {"ds_kind": "PneumoniaMNIST", "ds_npz": "/x.npz"}):
        at = page_app("dataset", **state).run()
        assert not at.exception
        answers.update(as_read(e.value) for e in [*at.error, *at.sidebar.error])
    assert len(answers) == 1 and "only reads files under" in answers.pop()

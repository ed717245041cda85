"""The real thing: ``streamlit run`` served to headless Chromium, every page opened.

Screenshots land in ``artifacts/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from pneumo.access import User
from pneumo.data import radiograph
from pneumo.explain.model_file import load_file
from pneumo.explain.predictor import Predictor
from pneumo.runs import jobs
from pneumo.runs.store import Run, RunState, RunStore, append_row
from pneumo.training.callbacks import HISTORY_COLUMNS
from pneumo.training.config import TrainConfig
from tests import films
from tests.appserver import BROWSER_MARKS, ROOT, launch_chromium, settle, streamlit_server
from tests.conftest import cache_copy
from tests.waiting import until

SHOTS = ROOT / "artifacts" / "screenshots"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: Path) -> Iterator[tuple[str, Path]]:
    """``streamlit run`` on a free port with its own cache and run store: (url, run store folder)."""
    work = tmp_path_factory.mktemp("browser")
    cache = cache_copy(synthetic_cache, work / "cache")
    env = {**os.environ, "PNEUMO_CACHE": str(cache), "PNEUMO_RUNS": str(work / "runs")}
    env.pop("PNEUMO_DATA", None)
    with open(work / "server.log", "wb") as log, streamlit_server(ROOT / "streamlit_app.py", env, log) as url:
        yield url, work / "runs"


@pytest.fixture(scope="module")
def app_url(server: tuple[str, Path]) -> str:
    return server[0]


@pytest.fixture(scope="module")
def browser(app_url: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser_page(browser):
    return browser.new_page(viewport={"width": 1400, "height": 2000})


def test_dataset_page_renders_statistics(browser_page, app_url: str) -> None:
    page = browser_page
    page.goto(app_url)
    settle(page, "Images per split and class")
    assert page.get_by_text("Synthetic data").count() >= 1
    expect(page.locator('[data-testid="stMarkdown"] table td').first).to_be_visible()  # the class balance
    assert page.locator(".js-plotly-plot").count() == 0  # the first screen loads no Plotly
    page.screenshot(path=str(SHOTS / "dataset-balance.png"))
    for tab, text in (("Patients", "Patients per split and class"), ("Images", "Mean image per class"),
                      ("Leakage", "No identical image"),
                      ("Gallery", "matching images")):
        page.get_by_role("radio", name=tab, exact=True).click()  # the section picker
        settle(page, text)
        page.screenshot(path=str(SHOTS / f"dataset-{tab.lower()}.png"))
    expect(page.locator('[data-testid="stImage"]').nth(5)).to_be_visible()  # the gallery's pictures
    page.screenshot(path=str(SHOTS / "dataset-gallery.png"))


@pytest.mark.parametrize("name", ["Train", "Evaluate", "Predict"])
def test_every_page_opens_and_keeps_the_sidebar(browser_page, app_url: str, name: str) -> None:
    page = browser_page
    page.goto(app_url)
    settle(page, "Images per split and class")
    page.get_by_role("link", name=name).click()
    expected = {"Train": "Start training", "Evaluate": "No run has predictions yet",
                "Predict": "No run has a saved model yet"}
    settle(page, expected[name])
    assert page.get_by_role("heading", name=name).count() == 1
    assert page.get_by_text("Data set").count() >= 1  # the shared sidebar is still there
    page.screenshot(path=str(SHOTS / f"{name.lower()}.png"))


def _shot(page, step: str) -> None:
    page.screenshot(path=str(SHOTS / f"journey-{step}.png"), full_page=True)


def _open_small_dataset(page, app_url: str) -> None:
    """The app's first page with the working size set to 64 px, so training is quick."""
    page.goto(app_url)
    settle(page, "Images per split and class")
    page.get_by_role("combobox", name="Working image size (px)").click()
    page.get_by_role("option", name="64").click()
    settle(page, "Images per split and class")
    page.get_by_text("Synthetic data").first.wait_for(timeout=60_000)
    settle(page, "Images per split and class")


def _open_train_form(page, epochs: int) -> None:
    page.get_by_role("link", name="Train").click()
    settle(page, "Start training")
    field = page.get_by_role("spinbutton", name="Epochs", exact=True)
    field.fill(str(epochs))
    field.press("Enter")
    settle(page, "Start training")


def test_the_train_form_keeps_what_was_typed_and_a_preset_starts_it_again(browser, app_url: str) -> None:
    """What was set in the form survives a look at Watch or another page; choosing the Demo preset
    sets the fields the browser shows, not only the server's copy (a keyed widget keeps its value)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(app_url)
    settle(page, "Images per split and class")
    _open_train_form(page, epochs=5)
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    name = page.get_by_role("textbox", name="Run name (optional)")
    name.fill("my careful run")
    name.press("Enter")
    page.get_by_text("Watch", exact=True).click()  # at once: the run the Enter started may be cut short
    expect(page.get_by_role("button", name="Start training")).to_have_count(0)
    page.get_by_role("link", name="Dataset").click()
    settle(page, "Images per split and class")
    page.get_by_role("link", name="Train").click()
    page.get_by_text("New run", exact=True).click()
    settle(page, "Start training")
    expect(epochs).to_have_value("5")
    expect(name).to_have_value("my careful run")
    one_cycle = page.get_by_role("radio", name="one-cycle")
    expect(one_cycle).not_to_be_checked()
    page.get_by_text("Demo (quick, for a lesson)", exact=True).click()
    settle(page, "Start training")
    demo = TrainConfig.for_model("cnn", "demo")
    expect(epochs).to_have_value(str(demo.epochs))
    expect(one_cycle).to_be_checked()
    epochs.fill("3")  # one more change after the preset: the preset's other fields stay
    epochs.press("Enter")
    settle(page, "Start training")
    expect(one_cycle).to_be_checked()
    expect(epochs).to_have_value("3")
    page.close()


def test_full_journey(browser_page, app_url: str) -> None:
    """A teacher's loop: data set statistics, a short CNN run watched as it learns, its evaluation
    with a threshold moved, then a prediction with Grad-CAM on an example and on an upload."""
    page = browser_page
    _open_small_dataset(page, app_url)
    _shot(page, "01-dataset")
    _open_train_form(page, epochs=2)
    _shot(page, "02-train-form")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Loss per epoch").first.wait_for(timeout=180_000)  # the first epoch has ended
    _shot(page, "03-watch")
    # Waits for the run's state, however fast this machine trains; the live updates on the way
    # are checked step by step in test_watch_follows_a_live_run.
    page.get_by_text("finished on", exact=False).first.wait_for(timeout=240_000)
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(r"· finished$"))
    expect(page.get_by_text("Epoch 2 of 2", exact=False).first).to_be_visible()
    # three epoch curves, batch loss, learning rate: drawn after the rerun the finish caused
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    _shot(page, "04-watch-finished")
    page.get_by_text("Runs", exact=True).click()
    settle(page, "Compare runs")
    name = page.get_by_role("textbox", name="New name")
    name.fill("journey run")
    name.press("Enter")
    settle(page, "Compare runs")
    page.get_by_role("button", name="Rename").click()
    settle(page, "Compare runs")
    expect(page.get_by_text(re.compile(r"^Renamed .* to journey run\.$"))).to_be_visible()
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value("journey run (synthetic)")
    assert page.get_by_text("journey run").count() >= 1  # in the runs table too
    _shot(page, "05-runs")
    page.get_by_role("link", name="Evaluate").click()
    settle(page, "Errors")
    _shot(page, "06-evaluate")
    before = page.locator(".js-plotly-plot").first.text_content()
    slider = page.get_by_role("slider", name="Decision threshold (probability of pneumonia)")
    slider.focus()
    for _ in range(30):
        slider.press("ArrowRight")  # threshold 0.50 -> 0.80
    until(lambda: page.locator(".js-plotly-plot").first.text_content() != before,
          "moving the threshold to change the confusion matrix", timeout=60, every=0.5)
    settle(page, "Errors")
    _shot(page, "07-evaluate-threshold-moved")
    page.get_by_role("link", name="Predict").click()
    page.wait_for_url("**/predict")
    settle(page, "Download overlay (PNG)")  # an example from the run's test split, explained at once
    assert page.get_by_text("tried on the Evaluate page in this browser, not saved", exact=False).count() == 1
    assert page.get_by_text("Probability of pneumonia").count() == 1
    assert page.locator('[data-testid="stImage"]').filter(has_text="Grad-CAM").count() == 1
    _shot(page, "08-predict-example")
    with page.expect_download() as download:  # the PNG is encoded when the button is clicked
        page.get_by_role("button", name="Download overlay (PNG)").click()
    assert Path(download.value.path()).read_bytes().startswith(b"\x89PNG")
    page.get_by_text("Upload an image", exact=True).click()
    settle(page, "Chest X-ray (JPEG, PNG or DICOM)")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "upload.jpg", "mimeType": "image/jpeg", "buffer": films.jpeg()}])
    settle(page, "Download overlay (PNG)")
    assert page.get_by_text("upload.jpg", exact=False).count() >= 1
    overlay = page.locator('[data-testid="stImage"]').filter(has_text="Grad-CAM")
    assert overlay.count() == 1
    expect(overlay.locator("img")).to_have_js_property("naturalWidth", 64)  # waits while the new image loads
    _shot(page, "09-predict-upload")
    # The saliency controls were gone while no film was uploaded (a run ended by st.stop()): the browser
    # shows the values the server uses, so touching one control leaves the others as they were.
    opacity = page.get_by_test_id("stMainBlockContainer").get_by_test_id("stSliderThumbValue")
    expect(opacity).to_have_text("0.50")
    page.get_by_role("combobox", name="Colours").click()
    page.get_by_role("option", name="Viridis").click()
    settle(page, "Download overlay (PNG)")
    expect(overlay).to_have_count(1)
    expect(opacity).to_have_text("0.50")


def test_two_sessions_start_runs_at_once_then_predict_at_once(browser, server: tuple[str, Path]) -> None:
    """Two classroom browsers: both press Start together; the queue runs them in turn, once each.
    Then both upload a different film at the same moment and each sees its own answer."""
    app_url, runs_root = server
    store = RunStore(runs_root)
    before = {r.id for r in store.runs()}
    pages = [browser.new_context(viewport={"width": 1400, "height": 1600}).new_page() for _ in range(2)]
    for page in pages:
        _open_small_dataset(page, app_url)
        _open_train_form(page, epochs=1)
    for page in pages:  # as close together as two people can click
        page.get_by_role("button", name="Start training").click(no_wait_after=True)
    def both_ended() -> bool:  # or a click made a run too many, which the asserts below name
        new = _new_runs(store, before)
        return len(new) > 2 or len(_ended(new)) == 2

    until(both_ended, "both runs to end", timeout=300, every=1)
    new = sorted(_new_runs(store, before), key=lambda r: r.status()["started"])
    assert len(new) == 2, "each click makes exactly one run"
    assert [r.status()["state"] for r in new] == ["finished", "finished"], [jobs.log_tail(r) for r in new]
    assert new[1].status()["started"] >= new[0].status()["ended"], "the queue runs them in turn, not together"
    for run in new:
        assert len(run.history()) == 1 and "resumed" not in run.status()  # trained once
        assert jobs.log_tail(run, 400).count(f"run {run.id}: finished") == 1
    for i, page in enumerate(pages):
        page.get_by_text("finished on", exact=False).first.wait_for(timeout=60_000)
        page.screenshot(path=str(SHOTS / f"concurrent-{i + 1}-train.png"))

    predictor = Predictor(load_file(store.runs()[0].model_file()))  # the run Predict offers first
    uploads = [films.jpeg(films.gradient()), films.jpeg(255 - films.gradient())]
    answers = [f"{predictor.probability(radiograph.read(data).pixels):.1%}" for data in uploads]
    assert answers[0] != answers[1], "the two films must give different answers for the test to mean anything"
    for page in pages:
        page.get_by_role("link", name="Predict").click()
        page.wait_for_url("**/predict")
        settle(page, "Download overlay (PNG)")
        page.get_by_text("Upload an image", exact=True).click()
        settle(page, "Chest X-ray (JPEG, PNG or DICOM)")
    for page, data in zip(pages, uploads, strict=True):  # both uploads in flight together
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            files=[{"name": "film.jpg", "mimeType": "image/jpeg", "buffer": data}])
    for i, (page, expected) in enumerate(zip(pages, answers, strict=True)):
        settle(page, "Download overlay (PNG)")
        shown = page.locator('[data-testid="stMetricValue"]').first.inner_text()
        assert shown == expected, f"session {i + 1} shows {shown}, its film gives {expected}"
        page.screenshot(path=str(SHOTS / f"concurrent-{i + 1}-predict.png"), full_page=True)


def _new_runs(store: RunStore, before: set[str]) -> list[Run]:
    return [r for r in store.runs() if r.id not in before]


def _ended(runs: list[Run]) -> list[Run]:
    """The runs that have ended and whose worker has logged its last line (it follows the state)."""
    return [r for r in runs if not RunState(r.status()["state"]).active and f"run {r.id}: " in jobs.log_tail(r, 5)]


def _epoch_row(run: Run, epoch: int) -> None:
    """One epoch of history, as the training process appends it."""
    auc = 0.6 + 0.1 * epoch
    append_row(run.file("history.csv"), {"epoch": epoch, "phase": 1, "loss": 1 / epoch, "val_loss": 1.2 / epoch,
                                         "accuracy": auc, "val_accuracy": auc, "auc": auc, "val_auc": auc,
                                         "learning_rate": 1e-3, "seconds": 5.0}, HISTORY_COLUMNS)
    run.update_status(epoch=epoch, batch=0)


def test_watch_follows_a_live_run(browser, server: tuple[str, Path]) -> None:
    """The Watch view redraws as a running run's files change, and as its state changes (stopped,
    resumed, finished): each step waits for the page to show the state the files were put in, so a
    fast or slow machine makes no difference."""
    app_url, runs_root = server
    run = RunStore(runs_root).create(TrainConfig(name="live run", image_size=64, epochs=3))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", run.id])  # the "worker"
    try:
        run.update_status(state=RunState.RUNNING, pid=holder.pid, started=time.time(), device="CPU (held by the test)",
                          epochs_total=3, batches_per_epoch=10)
        _epoch_row(run, 1)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(app_url)
        settle(page, "Images per split and class")
        page.get_by_role("link", name="Train").click()
        settle(page, "Start training")
        page.get_by_text("Watch", exact=True).click()
        page.get_by_role("combobox", name="Run", exact=True).click()
        page.get_by_role("option", name="live run (synthetic) · running").click()
        expect(page.get_by_text("Epoch 1 of 3", exact=False).first).to_be_visible(timeout=60_000)
        curve = page.locator(".js-plotly-plot").first
        one_epoch = curve.text_content()
        _epoch_row(run, 2)
        expect(page.get_by_text("Epoch 2 of 3", exact=False).first).to_be_visible(timeout=60_000)
        expect(curve).not_to_have_text(one_epoch, timeout=60_000)  # the curves grew, no reload
        # An ended run is drawn once and only its state polled; someone resuming it shows it live again.
        run.update_status(state=RunState.STOPPED, ended=time.time(), note="Stopped by the test.")
        expect(page.get_by_text("Stopped by the test.")).to_be_visible()
        expect(page.locator('input[aria-label="Run"][value="live run (synthetic) · stopped"]')).to_be_visible()
        run.update_status(state=RunState.RUNNING, ended=None, note=None)  # resumed, its worker started
        expect(page.locator('input[aria-label="Run"][value="live run (synthetic) · running"]')).to_be_visible()
        expect(page.get_by_text("Batch 0 of 10")).to_be_visible()
        _epoch_row(run, 3)
        run.update_status(state=RunState.FINISHED, ended=time.time())
        settle(page, "finished on")  # the state change redraws the whole page: wait until it is done
        # The picker is drawn anew with the new label; the old one, still focused from the click
        # above, may linger beside it for a moment, so look for the new one by its value.
        expect(page.locator('input[aria-label="Run"][value="live run (synthetic) · finished"]')).to_be_visible()
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(SHOTS / "watch-live.png"), full_page=True)
        # Someone else (the teacher) deletes the run being watched: the page lets go of it.
        RunStore(runs_root).delete(run, by=User("teacher", teacher=True))
        expect(page.locator('input[aria-label="Run"][value^="live run"]')).to_have_count(0)
        expect(page.get_by_text("CPU (held by the test)", exact=False)).to_have_count(0)  # its status line
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        holder.kill()
        holder.wait()


def test_predict_takes_a_model_file_over_50_mb(browser, app_url: str, tmp_path: Path) -> None:
    """A model file over the films' 50 MB limit is accepted (model files: up to 500 MB, a limit the
    browser, the server and the page all apply) and the page says what it detected."""
    import keras

    from pneumo.explain.model_file import MAX_MODEL_BYTES

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs))
    x = keras.layers.Dense(2100)(x)  # 15 M random weights: 60 MB that do not compress
    path = tmp_path / "big.keras"
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)).save(path)
    assert radiograph.MAX_BYTES < path.stat().st_size < MAX_MODEL_BYTES
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{app_url}/predict")
    settle(page, "Predict")
    page.get_by_text("Upload a model file", exact=True).click()
    settle(page, "Keras model (.keras or .h5, up to 500 MB)")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').nth(0).set_input_files(str(path))
    settle(page, "Detected")
    assert page.get_by_text("output: one sigmoid probability (Dense(1, sigmoid))").count() == 1
    assert page.get_by_text("cannot be used").count() == 0 and page.get_by_text("or smaller").count() == 0
    page.screenshot(path=str(SHOTS / "predict-model-over-50-mb.png"), full_page=True)
    page.close()

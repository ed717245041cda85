"""AppTest of the Train page: the form, the watch view on a real run, the runs table."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pneumo.runs import backends, jobs
from pneumo.runs.store import RunState, RunStore
from pneumo.training.augment import PRESETS, TRANSFORMS, preset_name
from pneumo.training.config import OPTIONS, TrainConfig
from pneumo.training.engine import run_training
from tests.conftest import as_read, finished_run, page_app
from ui.common import plain


@pytest.fixture(scope="module")
def trained_run(tiny_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder written by a real (short) training."""
    root = tmp_path_factory.mktemp("runs")
    run = RunStore(root).create(TrainConfig(dataset=str(tiny_npz), image_size=64, val_fraction=0, cnn_filters=8,
                                            cnn_blocks=3, epochs=3, early_stopping=0, name="tiny CNN",
                                            augmentation=PRESETS["none"]))
    assert run_training(run, verbose=0) == "finished"
    return root


def _train_page(**state) -> AppTest:
    """The page on its own: it draws the sidebar's data set picker itself, as when opened by URL."""
    return page_app("train", **state).run()


def _form_values(at: AppTest, model: str) -> dict[str, object]:
    """The form's values by TrainConfig field, read from the widgets keyed tr_<field> or tr_<field>_<model>."""
    widgets = [*at.number_input, *at.slider, *at.select_slider, *at.toggle, *at.radio, *at.text_input]
    by_key = {w.key: w.value for w in widgets}
    return {name: by_key[key] for name in OPTIONS for key in (f"tr_{name}", f"tr_{name}_{model}") if key in by_key}


def _assert_defaults(at: AppTest, model: str, changed: set[str]) -> set[str]:
    """Every field shown, except those the test ``changed``, is at the model's default; returns the fields shown."""
    default, values = TrainConfig.for_model(model), _form_values(at, model)
    wrong = {name: value for name, value in values.items() if name not in changed and value != getattr(default, name)}
    assert not wrong, wrong
    return set(values)


def test_form_starts_at_the_config_defaults() -> None:
    """A default written into the UI instead of read from TrainConfig would differ here sooner or later."""
    at = _train_page()
    assert not at.exception
    shown = _assert_defaults(at, "cnn", changed=set())
    assert at.select_slider(key="tr_size_cnn").value == 64  # the sidebar's working size
    at.radio(key="tr_lr_schedule").set_value("triangular").run()
    shown |= _assert_defaults(at, "cnn", changed={"lr_schedule"})
    at.radio(key="tr_model").set_value("resnet50").run()
    shown |= _assert_defaults(at, "resnet50", changed={"lr_schedule"})
    assert at.select_slider(key="tr_size_resnet50").value == TrainConfig.for_model("resnet50").image_size
    assert at.number_input(key="tr_epochs_resnet50").label == "Epochs (phase 1: head only)"
    at.slider(key="tr_unfreeze").set_value(40).run()
    shown |= _assert_defaults(at, "resnet50", changed={"lr_schedule", "unfreeze"})
    # The data set and the validation share are the sidebar's; the image size is keyed tr_size_<model>.
    assert shown == set(OPTIONS) - {"dataset", "val_fraction", "image_size"}

    preset = at.segmented_control(key="tr_aug_preset")
    assert preset.value == preset_name(TrainConfig().augmentation)
    preset.set_value("custom").run()
    assert not at.exception
    augmentation = {name: (at.toggle if t.high is None else at.slider)(key=f"tr_aug_{name}").value
                    for name, t in TRANSFORMS.items()}
    assert augmentation == TrainConfig().augmentation.to_dict()


def test_form_shows_problems_and_disables_start() -> None:
    at = _train_page()
    assert not at.exception
    at.radio(key="tr_model").set_value("resnet50").run()
    at.radio(key="tr_weights").set_value("file").run()
    at.text_input(key="tr_weights_path").set_value("/nowhere/weights.h5").run()
    assert any("not found" in e.value for e in at.error)
    start = next(b for b in at.button if b.label == "Start training")
    assert start.disabled


def test_resnet_options_show_the_unfreeze_picture() -> None:
    at = _train_page()
    at.radio(key="tr_model").set_value("resnet50").run()
    at.slider(key="tr_unfreeze").set_value(40).run()
    assert not at.exception
    caption = " ".join(c.value for c in at.caption)
    assert "Trainable parameters in phase 2" in caption and "24,112,513" in caption
    assert any("ImageNet weights" in w.value for w in [*at.warning, *at.success])
    assert any(n.label.startswith("Fine-tuning epochs") for n in at.number_input)


def test_valid_submit_queues_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends.LocalBackend, "start", lambda self, run: None)  # stays queued
    at = _train_page()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    runs = RunStore().runs()
    assert len(runs) == 1 and runs[0].status()["state"] == "queued"
    config = runs[0].config()
    assert config.dataset == "synthetic" and config.augmentation == PRESETS["light"] and config.model == "cnn"
    assert at.session_state["train_view"] == "Watch"
    # Not started, so no device yet: the status line has no empty field ("queued ·  · next to start").
    lines = [m.value for m in at.markdown]
    assert f"**{plain(runs[0].name)}** · queued · next to start" in lines, lines


def _start(at: AppTest):
    return next(b for b in at.button if b.label == "Start training")


def test_class_mode_asks_a_name_then_keeps_to_the_run_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_TEACHER_PASSCODE", "pw")
    monkeypatch.setattr(backends.LocalBackend, "start", lambda self, run: None)  # runs stay queued
    nameless = _train_page()
    assert _start(nameless).disabled and any("Type your name" in i.value for i in nameless.info)
    at = _train_page(id_name="Ann")
    for _ in range(2):
        _start(at).click().run()
        at.session_state["train_view"] = "New run"
        at.run()
    assert not at.exception
    assert [r.owner for r in RunStore().runs()] == ["class:Ann", "class:Ann"]
    assert _start(at).disabled and any("2 runs queued or training" in i.value for i in at.info)


def test_a_read_only_runs_folder_keeps_the_pages_reading(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_RUNS", str(trained_run))
    monkeypatch.setattr(jobs.os, "access", lambda path, mode: False)  # what a read-only mount answers
    at = _train_page()
    assert _start(at).disabled and any(i.value == jobs.READ_ONLY for i in at.info)
    for view in ("Watch", "Runs"):
        at.session_state["train_view"] = view
        at.run()
        assert not at.exception and not at.error
    assert at.dataframe[0].value["name"].tolist() == ["tiny CNN"]


def test_watch_view_reads_a_real_run(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_RUNS", str(trained_run))
    at = _train_page(train_view="Watch")
    assert not at.exception
    assert any("tiny CNN" in s.value and "finished" in s.value for s in at.success)
    charts = at.get("plotly_chart")
    assert len(charts) == 5  # loss, accuracy, AUC, per-batch loss, learning rate
    assert at.slider(key="smoothing").value == 0.8


def test_runs_table_lists_runs_and_damaged_ones(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_RUNS", str(trained_run))
    (trained_run / "broken-run").mkdir(exist_ok=True)
    (trained_run / "broken-run" / "config.json").write_text("{oops")
    at = _train_page(train_view="Runs")
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["status"]) == {"finished", "damaged"}
    assert "config.json is unreadable" in " ".join(table["problem"].astype(str))
    assert list(table.columns).index("problem") == list(table.columns).index("status") + 1  # on a projector too
    assert table.loc[table["status"] == "finished", "name"].item() == "tiny CNN"


def test_compared_runs_without_epochs_are_named_not_drawn(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_RUNS", str(trained_run))
    empty = finished_run("no epochs")  # predictions, no history: e.g. a run from elsewhere
    at = _train_page(train_view="Runs")
    overlay = at.multiselect[0]
    assert not at.exception and len(overlay.value) == 1 and empty.id not in overlay.value  # drawn ones first
    at = overlay.set_value([*overlay.value, empty.id]).run()
    assert not at.exception
    assert any(as_read(c.value).startswith("No epoch recorded for no epochs") for c in at.caption)
    charts = at.get("plotly_chart")
    assert len(charts) == 2 and all("tiny CNN" in c.proto.spec and "no epochs" not in c.proto.spec for c in charts)


def test_a_run_asked_to_stop_reads_stopping_and_offers_no_second_stop() -> None:
    run = RunStore().create(TrainConfig(name="long run"))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", run.id])  # its "worker"
    try:
        run.update_status(state=RunState.RUNNING, pid=holder.pid, started=time.time(), device="CPU")
        at = _train_page(train_view="Watch")
        assert [b.label for b in at.button if b.key == "stop_run"] == ["Stop"]
        run.file("stop").touch()  # what jobs.stop leaves for the worker
        at.run()
        assert not at.exception and not [b for b in at.button if b.key == "stop_run"]
        assert "**long run** · stopping · CPU" in [m.value for m in at.markdown]
        assert any(c.value.startswith("Stopping after the current batch") for c in at.caption)
        assert at.selectbox[0].options == ["long run (synthetic) · stopping"]  # the run picker
    finally:
        holder.kill()
        holder.wait()


def test_rename_and_delete_say_what_they_did() -> None:
    first, second = finished_run("first"), finished_run("second")
    at = _train_page(train_view="Runs", manage_run=first.id)
    at.text_input(key=f"rename_{first.id}").set_value("renamed")
    next(b for b in at.button if b.label == "Rename").click().run()
    assert not at.exception
    assert [as_read(s.value) for s in at.success] == ["Renamed first to renamed."]
    assert RunStore().get(first.id).name == "renamed"
    at.button(key=f"delete_{first.id}").click().run()
    assert not at.exception
    assert [as_read(s.value) for s in at.success] == ["Deleted renamed (synthetic) and its files."]
    assert [r.id for r in RunStore().runs()] == [second.id]
    at.run()  # said once: the next rerun is quiet
    assert not at.success


def test_the_demo_preset_sets_the_form_and_recommended_sets_it_back() -> None:
    from pneumo.training.config import RUN_PRESETS

    at = page_app("train").run()
    at.segmented_control(key="tr_preset").set_value("demo").run()
    assert not at.exception
    demo = TrainConfig.for_model("cnn", "demo")
    assert at.number_input(key="tr_epochs_cnn").value == demo.epochs
    assert at.select_slider(key="tr_size_cnn").value == RUN_PRESETS["demo"].get("image_size", demo.image_size)
    assert at.radio(key="tr_lr_schedule").value == demo.lr_schedule == "one-cycle"
    at.segmented_control(key="tr_preset").set_value("recommended").run()
    assert at.number_input(key="tr_epochs_cnn").value == TrainConfig().epochs
    assert at.radio(key="tr_lr_schedule").value == TrainConfig().lr_schedule


def test_a_change_sent_with_a_click_on_another_view_is_kept() -> None:
    """Typed, then Watch clicked before the run the typing started could draw the form again: both
    arrive in one run that does not draw the field. The value is kept all the same."""
    at = _train_page()
    at.text_input(key="tr_name").set_value("my careful run")
    at.number_input(key="tr_epochs_cnn").set_value(5)
    at.session_state["train_view"] = "Watch"
    at.run()
    assert not at.exception and not at.text_input
    at.session_state["train_view"] = "New run"
    at.run()
    assert at.text_input(key="tr_name").value == "my careful run" and at.number_input(key="tr_epochs_cnn").value == 5


def test_the_augmentation_draws_are_laid_out_in_full_rows() -> None:
    from ui.train import _grid

    pictures = np.arange(8 * 5 * 3, dtype=np.uint8).reshape(8, 5, 3)
    grid = _grid(pictures, columns=4, gap=2)
    assert grid.shape == (2 * 5 + 2, 4 * 3 + 3 * 2)
    assert (grid[5:7] == 255).all() and (grid[:, 3:5] == 255).all()  # the gaps
    assert (grid[7:, 15:] == pictures[7]).all()  # the last draw closes the second row

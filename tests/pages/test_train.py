"""AppTest of the Train page: the form, the watch view on a real run, the runs table."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pneumo.runs import jobs
from pneumo.runs.store import RunStore
from pneumo.training.augment import PRESETS
from pneumo.training.config import TrainConfig
from pneumo.training.engine import run_training
from tests.conftest import ROOT

APP = str(ROOT / "streamlit_app.py")


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
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["ds_size"] = 64
    at.run()
    for key, value in state.items():
        at.session_state[key] = value
    return at.switch_page("pages/train.py").run()


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
    monkeypatch.setattr(jobs, "_spawn", lambda run: None)  # keep it queued: no training process here
    at = _train_page()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    runs = RunStore().runs()
    assert len(runs) == 1 and runs[0].status()["state"] == "queued"
    config = runs[0].config()
    assert config.dataset == "synthetic" and config.augmentation == PRESETS["light"] and config.model == "cnn"
    assert at.session_state["train_view"] == "Watch"
    assert any("queued" in m.value for m in at.markdown)


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
    assert table.loc[table["status"] == "finished", "name"].item() == "tiny CNN"

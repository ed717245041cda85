"""AppTest of the Evaluate page on run folders with stored predictions."""


import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pneumo.access import LOCAL, User, class_user
from pneumo.files import write_json
from pneumo.runs.store import Run, RunStore
from pneumo.training.config import TrainConfig
from tests.conftest import as_read, finished_run, page_app


def _run_with_predictions(name: str, noise: float, seed: int, test_shift: float = 0.0, owner: User = LOCAL) -> Run:
    """A finished run whose predictions.csv is given: the page must not care how it was made.
    ``test_shift`` moves the test split's probabilities (films unlike validation's)."""
    run = RunStore().create(TrainConfig(name=name, dataset="/not/here"), owner=owner)
    write_json(run.file("status.json"), {**run.status(), "state": "finished"})
    rng = np.random.default_rng(seed)
    frames = []
    for split, n in (("val", 200), ("test", 300)):
        labels = (np.arange(n) % 8 < 5).astype(int)
        probs = np.clip(0.3 + 0.4 * labels + rng.normal(0, noise, n) + (test_shift if split == "test" else 0), 0, 1)
        frames.append(pd.DataFrame({"split": split, "id": [f"{split}/{i}" for i in range(n)], "label": labels,
                                    "prob": probs, "patient": [f"p{i}" for i in range(n)]}))
    pd.concat(frames).to_csv(run.file("predictions.csv"), index=False)
    return run


def _page() -> AppTest:
    return page_app("evaluate").run()


def test_no_runs_says_what_to_do() -> None:
    at = _page()
    assert not at.exception and "No run has predictions yet" in at.info[0].value


def test_threshold_moves_the_confusion_matrix_and_is_remembered() -> None:
    run = _run_with_predictions("good", 0.15, 0)
    at = _page()
    assert not at.exception
    first = at.dataframe[0].value.set_index("metric")
    at.slider(key=f"ev_thr_{run.id}").set_value(0.8).run()
    second = at.dataframe[0].value.set_index("metric")
    assert second.loc["sensitivity", "value"] < first.loc["sensitivity", "value"]
    assert second.loc["specificity", "value"] >= first.loc["specificity", "value"]
    assert first.loc["AUC", "value"] == second.loc["AUC", "value"]
    assert at.session_state["thresholds"][run.id] == pytest.approx(0.8)
    assert "The run's data set (folder here) is not readable on this server" in as_read(at.info[0].value)


def test_strategy_chosen_on_validation_and_runs_compared() -> None:
    good = _run_with_predictions("good", 0.1, 0)
    worse = _run_with_predictions("worse", 0.45, 1)
    at = _page()
    at.multiselect[0].set_value([good.id, worse.id]).run()
    at.selectbox(key="ev_strategy").set_value("target sensitivity").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "chosen by *target sensitivity* on the validation split" in text
    text = as_read(text)
    assert "**good (folder here)** has an AUC" in text and "higher than **worse (folder here)**" in text
    assert "paired bootstrap p" in text
    table = at.dataframe[1].value
    assert list(table["run"]) == ["good (folder here)", "worse (folder here)"]
    assert (table["sensitivity"] >= 0.85).all()


@pytest.mark.parametrize(("shift", "warned"), [(-0.15, True), (0.15, False)])
def test_a_target_sensitivity_missed_on_test_is_pointed_out(shift: float, warned: bool) -> None:
    _run_with_predictions("shifted", 0.1, 0, test_shift=shift)
    at = _page()
    at.selectbox(key="ev_strategy").set_value("target sensitivity").run()
    at.slider(key="ev_target").set_value(0.95).run()
    reached = at.dataframe[0].value.set_index("metric").loc["sensitivity", "value"]
    assert not at.exception and (reached < 0.95) == warned
    missed = [w.value for w in at.warning if "Aimed at 95% sensitivity" in w.value]
    assert bool(missed) == warned
    if warned:
        assert f"reaches **{reached:.1%}** on test" in missed[0]


def test_predictions_are_read_once_per_change(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run_with_predictions("good", 0.15, 0)
    reads = []
    original = Run.predictions
    monkeypatch.setattr(Run, "predictions", lambda self: reads.append(self.id) or original(self))
    at = _page()
    for value in (0.6, 0.7, 0.8):
        at.slider(key=f"ev_thr_{run.id}").set_value(value).run()
    assert not at.exception and reads == [run.id]
    _run_with_predictions("good", 0.2, 5).file("predictions.csv").replace(run.file("predictions.csv"))
    at.slider(key=f"ev_thr_{run.id}").set_value(0.5).run()  # the file changed: read again, once
    assert reads == [run.id, run.id]


def test_runs_with_the_same_name_are_both_compared() -> None:
    a, b = _run_with_predictions("same", 0.1, 0), _run_with_predictions("same", 0.45, 1)
    at = _page()
    at.multiselect[0].set_value([a.id, b.id]).run()
    assert not at.exception
    assert len(at.dataframe[1].value) == 2


def test_the_threshold_is_saved_with_the_run_for_every_browser() -> None:
    """A new browser (a fresh AppTest) starts at the threshold chosen before, not at 0.50."""
    run = _run_with_predictions("saved threshold", 0.15, 0)
    at = page_app("evaluate").run()
    assert not at.exception and run.threshold() is None  # looking chooses nothing (the Board says "default")
    assert run.id not in at.session_state["thresholds"]  # nor for Predict
    at.slider(key=f"ev_thr_{run.id}").set_value(0.37).run()
    assert not at.exception and run.threshold() is None  # trying thresholds saves none: the Board stays
    assert any("No threshold saved with this run" in c.value for c in at.caption)
    at.button(key=f"ev_save_{run.id}").click().run()
    assert not at.exception and run.threshold()["value"] == 0.37 and run.threshold()["by"] == "local"
    assert any("Saved with the run, for the Board and every browser: **0.370** (manual)" in c.value
               for c in at.caption)
    at.selectbox(key="ev_strategy").set_value("min expected cost").run()
    assert not at.exception and run.threshold()["value"] == 0.37
    fresh = page_app("evaluate").run()
    assert fresh.slider(key=f"ev_thr_{run.id}").value == 0.37


def test_another_students_run_says_why_it_has_no_save_button(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_TEACHER_PASSCODE", "pw")  # class mode
    run = _run_with_predictions("Ann's", 0.15, 0, owner=class_user("Ann"))
    at = page_app("evaluate", id_name="Ben").run()
    at.slider(key=f"ev_thr_{run.id}").set_value(0.37).run()
    assert not at.exception and not [b for b in at.button if b.key == f"ev_save_{run.id}"]
    assert any(c.value.startswith("Only Ann or the teacher can save a threshold with this run") for c in at.caption)
    mine = page_app("evaluate", id_name="Ann").run()
    mine.slider(key=f"ev_thr_{run.id}").set_value(0.37).run()
    assert [b for b in mine.button if b.key == f"ev_save_{run.id}"]
    assert not any(c.value.startswith("Only Ann") for c in mine.caption)


def test_calibration_shows_ece_and_a_temperature_fitted_on_validation() -> None:
    _run_with_predictions("calibrated?", 0.15, 0)
    at = _page()
    assert not at.exception
    box = next(e for e in at.expander if e.label.startswith("Calibration"))
    ece, brier, temperature = box.metric
    assert ece.label == "Calibration error (ECE)" and 0 <= float(ece.value) <= 1
    assert brier.label == "Brier score"
    assert temperature.label == "Temperature T" and float(temperature.value) > 0
    assert "The temperature fitted on validation is T = " in " ".join(m.value for m in box.markdown)
    table = box.table[0].value
    assert list(table.index) == ["raw probabilities", "temperature-scaled",
                                 "temperature-scaled, threshold moved with it"]
    assert list(table.columns) == ["threshold", "sensitivity", "specificity", "accuracy", "ECE", "Brier"]
    assert len(box.get("plotly_chart")) == 1


def test_calibration_without_validation_says_so_and_shows_the_raw_diagram() -> None:
    run = _run_with_predictions("no val", 0.15, 0)
    frame = pd.read_csv(run.file("predictions.csv"))
    frame[frame["split"] == "test"].to_csv(run.file("predictions.csv"), index=False)
    at = _page()
    assert not at.exception
    box = next(e for e in at.expander if e.label.startswith("Calibration"))
    assert [m.label for m in box.metric] == ["Calibration error (ECE)", "Brier score"]
    assert "no validation predictions of both classes" in box.info[0].value
    assert len(box.get("plotly_chart")) == 1 and not box.table


def test_compare_leaves_out_runs_scored_on_other_images_and_says_why() -> None:
    real = finished_run("real", dataset="/data/chest_xray", test=(624, 390))
    drawn = finished_run("drawn", dataset="synthetic", test=(600, 362))
    at = _page()
    at.multiselect[0].set_value([real.id, drawn.id]).run()
    assert not at.exception
    note = as_read(at.info[-1].value)
    assert "Scored on other test images than real (folder chest_xray) (624)" in note
    assert "drawn (synthetic): 600 test images" in note
    assert len(at.dataframe) == 1  # no comparison table: the only other run is left out
    at.toggle(key="ev_incomparable").set_value(True).run()
    assert list(at.dataframe[1].value["run"]) == ["real (folder chest_xray)", "drawn (synthetic)"]
    assert "cannot be compared image by image" in at.info[-1].value

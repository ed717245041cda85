"""AppTest of the Board page on run folders with stored predictions."""

import pytest

from pneumo.evaluation import board
from pneumo.runs import jobs
from pneumo.runs.store import RunStore
from tests.conftest import finished_run, page_app


def test_no_runs_says_what_to_do() -> None:
    at = page_app("board").run()
    assert not at.exception and "No run has test predictions yet" in at.info[0].value


def test_ranks_comparable_runs_keeps_others_apart_and_repeats_with_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "schedule", lambda store: None)  # queue only: nothing trains in a page test
    finished_run("real cnn", dataset="/data/chest_xray", test=board.OFFICIAL_TEST)
    drawn = finished_run("drawn cnn", dataset="synthetic")
    at = page_app("board").run()
    assert not at.exception
    ranked, apart = (frame.value for frame in at.dataframe)
    assert "real cnn" in set(ranked["run"]) and "drawn cnn" not in set(ranked["run"])
    assert len(ranked) == 1 + len(board.REFERENCES)
    assert apart.set_index("run").loc["drawn cnn", "why apart"].startswith("synthetic images")
    assert any("Cell 2018" in c.value for c in at.caption)

    at.selectbox[0].set_value(drawn.id).run()
    at.button[0].click().run()
    assert not at.exception and "Queued 2 runs" in at.success[0].value
    assert sorted(r.config().seed for r in RunStore().runs()) == [0, 0, 1, 2]


def test_runs_on_the_synthetic_set_alone_are_kept_apart_under_the_published_results() -> None:
    """The default data set: no run is comparable, the published results are still ranked."""
    finished_run("drawn cnn", dataset="synthetic")
    at = page_app("board").run()
    assert not at.exception
    ranked, apart = (frame.value for frame in at.dataframe)
    assert len(ranked) == len(board.REFERENCES) and list(apart["run"]) == ["drawn cnn"]


@pytest.mark.parametrize("passcode", ["", "pw"])
def test_whose_run_is_next_to_its_name_in_a_class(monkeypatch: pytest.MonkeyPatch, passcode: str) -> None:
    """On a projector at 1024 only the left of the table shows: in a class, the owner is there, after the AUC."""
    monkeypatch.setenv("PNEUMO_TEACHER_PASSCODE", passcode)  # "": solo mode, one user
    finished_run("real cnn", dataset="/data/chest_xray", test=board.OFFICIAL_TEST)
    at = page_app("board", id_name="Ann").run()
    columns = list(at.dataframe[0].value.columns)
    if passcode:
        assert columns.index("owner") == columns.index("AUC") + 1  # what a class reads first: run, AUC, whose
    else:
        assert "owner" not in columns

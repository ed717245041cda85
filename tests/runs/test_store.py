import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pneumo.access import LOCAL
from pneumo.files import write_json
from pneumo.runs.store import Run, RunState, RunStore, append_row, read_csv
from pneumo.training.config import TrainConfig


def test_read_csv_ignores_a_half_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    for epoch in (1, 2):
        append_row(path, {"epoch": epoch, "loss": 0.5 / epoch}, ["epoch", "loss"])
    with open(path, "a") as f:
        f.write("3,0.1")  # the writer was interrupted mid-line
    frame = read_csv(path)
    assert frame["epoch"].tolist() == [1, 2] and frame["loss"].tolist() == [0.5, 0.25]
    assert read_csv(tmp_path / "missing.csv").empty
    (tmp_path / "junk.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert read_csv(tmp_path / "junk.csv").empty


def test_a_runs_tables_are_parsed_once_per_version_of_their_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Watch re-reads a live run's tables every few seconds for each watcher: the same file is
    parsed once, and every change (a line appended, the file replaced whole) is seen."""
    from pneumo.runs import store as store_module

    run = RunStore(tmp_path).create(TrainConfig())
    parsed = []
    parse = store_module.read_csv
    monkeypatch.setattr(store_module, "read_csv", lambda path: parsed.append(path.name) or parse(path))
    append_row(run.file("history.csv"), {"epoch": 1, "loss": 0.5}, ["epoch", "loss"])
    assert run.history()["loss"].tolist() == run.history()["loss"].tolist() == [0.5]
    assert parsed == ["history.csv"]
    changed = run.history()
    changed.loc[0, "loss"] = 9.0  # a caller changing its copy changes nobody else's
    assert run.history()["loss"].tolist() == [0.5] and parsed == ["history.csv"]
    append_row(run.file("history.csv"), {"epoch": 2, "loss": 0.25}, ["epoch", "loss"])
    assert run.history()["loss"].tolist() == [0.5, 0.25] and parsed == ["history.csv"] * 2
    replaced = run.file("history.csv").with_suffix(".new")
    replaced.write_text("epoch,loss\n1,0.6\n2,0.45\n")  # the same size as the file it replaces
    replaced.replace(run.file("history.csv"))  # as replace_atomically does
    assert run.history()["loss"].tolist() == [0.6, 0.45]
    run.file("history.csv").unlink()
    assert run.history().empty


def test_store_create_list_get_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path / "runs")
    assert store.runs() == []
    first = store.create(TrainConfig(name="first"))
    second = store.create(TrainConfig(model="resnet50", weights="none"))
    assert {r.id for r in store.runs()} == {first.id, second.id}
    assert first.status()["state"] == "queued" and first.config().name == "first" and first.name == "first"
    assert second.name == second.id
    assert store.get(first.id) == first
    assert not list((tmp_path / "runs").glob(".new-*"))
    for bad in ("..", "", "nope", "a/b"):
        try:
            store.get(bad)
        except KeyError:
            continue
        raise AssertionError(f"{bad!r} should not be a run")
    with pytest.raises(ValueError, match="Stop the run first"):
        store.delete(first, by=LOCAL)
    first.update_status(state="stopped")
    listed_while_removing = []
    remove = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path: listed_while_removing.append(store.runs()) or remove(path))
    store.delete(first, by=LOCAL)
    assert listed_while_removing == [[second]]  # gone from the list before any of its files goes
    assert [r.id for r in store.runs()] == [second.id]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [second.id]


def test_damaged_runs_say_why(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    good = store.create(TrainConfig())
    broken_json = store.create(TrainConfig())
    broken_json.file("status.json").write_text("{not json")
    missing = store.create(TrainConfig())
    missing.file("config.json").unlink()
    bad_state = store.create(TrainConfig())
    write_json(bad_state.file("status.json"), {"state": "exploded"})
    bad_config = store.create(TrainConfig())
    write_json(bad_config.file("config.json"), {"image_size": "big", "no_such_field": 1, "augmentation": 3})
    assert good.damage is None
    assert "status.json is unreadable" in broken_json.damage
    assert missing.damage == "config.json is missing"
    assert bad_state.damage == "status.json has no valid state"
    assert "not a valid configuration" in bad_config.damage
    assert Run(tmp_path / "nothing").log_text() == ""


def test_history_frames_are_dataframes(tmp_path: Path) -> None:
    run = RunStore(tmp_path).create(TrainConfig())
    assert isinstance(run.history(), pd.DataFrame) and run.history().empty
    assert run.model_file() is None
    run.file("last.keras").write_bytes(b"x")
    assert run.model_file() == run.file("last.keras")


def test_states_and_predictions_belong_to_the_store(tmp_path: Path) -> None:
    run = RunStore(tmp_path).create(TrainConfig())
    assert run.state == RunState.QUEUED and run.state.active and not run.state.resumable
    assert json.loads(run.file("status.json").read_text())["state"] == "queued"  # stored as plain text
    frame = pd.DataFrame({"patient": ["p1"], "prob": [0.25], "label": [1], "id": ["test/1"], "split": ["test"]})
    run.write_predictions(frame)
    assert run.file("predictions.csv").read_text().splitlines()[0] == "split,id,label,prob,patient"
    assert run.predictions().to_dict("records") == [
        {"split": "test", "id": "test/1", "label": 1, "prob": 0.25, "patient": "p1"}]
    assert [p.name for p in tmp_path.glob(f"{run.id}/.*")] == []  # no temporary file left behind

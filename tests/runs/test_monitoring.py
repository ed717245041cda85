"""What a watching page reads of runs: states in words, cheaply."""

from pathlib import Path

from pneumo.runs import monitoring
from pneumo.runs.store import RunState, RunStore
from pneumo.training.config import TrainConfig


def test_a_stop_requested_reads_as_stopping_until_the_worker_ends(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.create(TrainConfig(name="r"))
    run.update_status(state=RunState.RUNNING)
    assert monitoring.state_label(run) == "running"
    run.file("stop").touch()  # what jobs.stop leaves for the worker
    assert monitoring.state_label(run) == "stopping"
    assert monitoring.summary(run)["status"] == "stopping"
    run.update_status(state=RunState.STOPPED)
    run.file("stop").unlink()  # what the worker does once the model so far is saved
    assert monitoring.state_label(run) == "stopped"


def test_states_name_every_run_even_a_damaged_one(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = store.create(TrainConfig(name="r"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "status.json").write_text("{oops")
    assert dict(monitoring.states(store)) == {run.id: "queued", "broken": "unreadable"}

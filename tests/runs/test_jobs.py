"""The job lifecycle with real training processes: queue, graceful stop, kill -9, resume."""

import io
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from pneumo.access import LOCAL
from pneumo.runs import backends, jobs
from pneumo.runs.store import Run, RunState, RunStore
from pneumo.training.augment import PRESETS
from pneumo.training.config import TrainConfig
from tests.conftest import finished_run
from tests.waiting import until


def _config(tiny_npz: Path, epochs: int, **changes) -> TrainConfig:
    return TrainConfig(dataset=str(tiny_npz), image_size=64, val_fraction=0, cnn_filters=8, cnn_blocks=3,
                       batch_size=16, epochs=epochs, early_stopping=0, augmentation=PRESETS["none"], **changes)


def _state(run: Run) -> str:
    return run.status()["state"]


def _finish(run: Run, store: RunStore) -> None:
    """Wait for the run to end, reconciling as the UI's poll does, so a crashed worker shows up too."""

    def ended() -> bool:
        jobs.reconcile(store)
        return not RunState(_state(run)).active

    until(ended, "the run to end")


def test_invalid_config_is_refused_before_anything_starts() -> None:
    with pytest.raises(jobs.Refused, match="batch size"):
        jobs.submit(TrainConfig(batch_size=0))
    assert RunStore().runs() == []


@pytest.mark.slow
def test_queue_runs_one_at_a_time_then_the_next_starts_by_itself(tiny_npz: Path) -> None:
    store = RunStore()
    first = jobs.submit(_config(tiny_npz, epochs=2, name="first"), store)
    second = jobs.submit(_config(tiny_npz, epochs=1, name="second"), store)
    assert _state(first) == "running" and _state(second) == "queued"
    assert jobs.schedule(store) == []  # a second call starts nothing more: no run starts twice
    _finish(first, store)
    assert _state(first) == "finished", jobs.log_tail(first)
    # the finishing worker started the queued one, with no UI polling
    until(lambda: _state(second) != "queued", "second run to start", timeout=30)
    _finish(second, store)
    assert _state(second) == "finished", jobs.log_tail(second)
    assert second.status()["started"] >= first.status()["ended"]
    assert len(first.predictions()) == 300 and "Epoch 2/2" in jobs.log_tail(first, 200)


def _fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _mid_epoch(run: Run) -> bool:
    """True while a batch well inside an epoch that has not ended yet was the last written."""
    batches, history = run.batches(), run.history()
    if batches.empty:
        return False
    last = batches.iloc[-1]
    return int(last["epoch"]) > len(history) and 8 <= int(last["batch"]) <= 30  # 38 batches an epoch


@pytest.mark.slow
def test_stop_is_graceful_and_kill_is_detected_then_resume_completes(tiny_npz: Path) -> None:
    store = RunStore()
    other = finished_run("other")  # a finished run beside it must come through untouched
    other_files = _fingerprint(other.path)
    run = jobs.submit(_config(tiny_npz, epochs=6), store)
    until(lambda: len(run.batches()) >= 5, "training to start")
    jobs.stop(run, by=LOCAL)
    _finish(run, store)
    assert _state(run) == "stopped", jobs.log_tail(run)
    assert run.file("last.keras").exists() and len(run.predictions()) == 300
    assert not run.file("stop").exists()

    jobs.resume(run, by=LOCAL)
    until(lambda: _state(run) == "running" and len(run.history()) >= 2 and _mid_epoch(run),
          "the middle of an epoch after two epochs")
    history_before = run.file("history.csv").read_bytes()
    pid = run.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    until(lambda: bool(jobs.reconcile(store)) or _state(run) == "failed", "the kill to be noticed", timeout=5)
    assert time.monotonic() - killed_at < 5
    status = run.status()
    assert status["state"] == "failed" and "died" in status["error"] and "resume" in status["error"]
    assert run.file("history.csv").read_bytes() == history_before  # nothing written so far was lost
    assert {r.id for r in store.runs()} == {run.id, other.id} and run.damage is None
    assert _fingerprint(other.path) == other_files  # the other run is untouched

    jobs.resume(run, by=LOCAL)
    _finish(run, store)
    assert _state(run) == "finished", jobs.log_tail(run)
    history = run.history()
    assert history["epoch"].tolist() == list(range(1, 7))  # each epoch once, to the planned number
    before = pd.read_csv(io.BytesIO(history_before))
    pd.testing.assert_frame_equal(history.iloc[: len(before)][["epoch", "loss", "val_auc"]],
                                  before[["epoch", "loss", "val_auc"]], check_dtype=False)  # kept, not redone
    assert run.status()["resumed"] == 2
    assert _fingerprint(other.path) == other_files


def test_stopping_a_queued_run_cancels_it(tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends.LocalBackend, "start", lambda self, run: None)  # only the queue is tested
    store = RunStore()
    run = store.create(_config(tiny_npz, epochs=1))
    jobs.stop(run, by=LOCAL)
    assert _state(run) == "stopped" and run.status()["note"] == "cancelled before it started"
    with pytest.raises(ValueError, match="only failed or stopped"):
        jobs.resume(store.create(_config(tiny_npz, epochs=1)), by=LOCAL)

"""The ray backend against a real local Ray head (one for the whole file): runs submitted from the
library and from the Train page train as Ray jobs, stop, die and resume as local runs do."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pneumo.access import LOCAL
from pneumo.runs import backends, jobs
from pneumo.runs.store import Run, RunStore
from pneumo.training.augment import PRESETS
from pneumo.training.config import TrainConfig
from tests import rayhead
from tests.conftest import as_read, page_app
from tests.waiting import until

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-cluster.txt")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """One real Ray head for the whole file; skipped, with Ray's words, only when it cannot start."""
    try:
        with rayhead.ray_head() as address:
            yield address
    except rayhead.NoHead as exc:
        pytest.skip(f"Ray could not start here: {exc}")


@pytest.fixture
def on_ray(ray_head: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(backends.RAY_ADDRESS_VARIABLE, ray_head)
    return ray_head


def _config(tiny_npz: Path, epochs: int, **changes) -> TrainConfig:
    return TrainConfig(dataset=str(tiny_npz), image_size=64, val_fraction=0, cnn_filters=8, cnn_blocks=3,
                       batch_size=16, epochs=epochs, early_stopping=0, augmentation=PRESETS["none"], **changes)


def _until(predicate, what: str, store: RunStore, timeout: float = 240) -> None:
    """Wait for state, looking after the queue as each browser session's poll does."""

    def polled() -> object:
        jobs.schedule(store)
        return predicate()

    until(polled, what, timeout, every=0.5)


def _state(run: Run) -> str:
    return run.status()["state"]


def test_runs_as_ray_jobs_stop_die_resume_and_are_tracked_in_mlflow(
        on_ray: str, tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from mlflow import MlflowClient

    MlflowClient().search_experiments()  # creates the store's tables once: two workers racing to would clash
    store = RunStore()
    killed = jobs.submit(_config(tiny_npz, epochs=30, name="killed"), store)
    stopped = jobs.submit(_config(tiny_npz, epochs=30, name="stopped"), store)
    assert _state(stopped) == _state(killed) == "running"  # 2 CPUs, 1 per run: both placed at once
    assert jobs.schedule(store) == []  # nothing starts twice
    status = stopped.status()
    assert (status["backend"], status["ray_address"], status["job"]) == ("ray", on_ray, stopped.id)
    job = backends.RayBackend(on_ray).client().get_job_info(stopped.id)
    assert "pneumo worker" in job.entrypoint and job.entrypoint.endswith(str(stopped.path))

    _until(lambda: killed.status().get("batch"), "training to begin", store)
    os.kill(killed.status()["pid"], signal.SIGKILL)
    _until(lambda: _state(killed) == "failed", "the killed job to be noticed", store)
    assert "Ray reports its job failed" in killed.status()["error"]

    _until(lambda: len(stopped.history()) >= 1, "a first epoch", store)
    jobs.stop(stopped, by=LOCAL)
    _until(lambda: _state(stopped) == "stopped", "the stop", store)
    assert stopped.file("last.keras").exists() and len(stopped.history()) < 30
    # Ray's own log of the job: the worker's last line reaches it after the state is written
    _until(lambda: f"run {stopped.id}: stopped" in jobs.log_tail(stopped, 50), "the job's log", store)
    _tracked_in_mlflow(stopped)

    jobs.resume(stopped, by=LOCAL)
    assert stopped.status()["job"] == f"{stopped.id}-resume-1"
    epochs = len(stopped.history())
    _until(lambda: len(stopped.history()) > epochs, "an epoch after the resume", store)
    jobs.stop(stopped, by=LOCAL)
    _until(lambda: _state(stopped) == "stopped", "the second stop", store)


def _tracked_in_mlflow(run: Run) -> None:
    """What the run's folder holds, read back from the SQLite MLflow store with MlflowClient."""
    from mlflow import MlflowClient

    client = MlflowClient()
    tracked = client.get_run(run.status()["mlflow_run"])
    epochs = list(run.history()["epoch"])
    assert tracked.info.status == "KILLED" and tracked.data.tags["pneumo.run"] == run.id
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "val_auc")] == epochs
    assert 0 <= tracked.data.metrics["test_auc"] <= 1 and tracked.data.params["epochs"] == "30"
    assert "model/last.keras" in [a.path for a in client.list_artifacts(tracked.info.run_id, "model")]
    assert (Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).parent / "mlartifacts").is_dir()


def test_the_train_page_starts_a_run_on_the_cluster_and_shows_its_curves(
        on_ray: str, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMO_DATA", str(tiny_npz))  # the page opens on it
    at = page_app("train").run()
    assert any("Runs train** on the Ray cluster" in m.value and "1 node, 2 CPUs, 0 GPUs" in m.value
               for m in at.markdown)
    at.number_input(key="tr_epochs_cnn").set_value(1).run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    (run,) = RunStore().runs()
    assert run.status()["backend"] == "ray"
    _until(lambda: _state(run) == "finished", "the run to finish", RunStore())
    watch = page_app("train", train_view="Watch", watch_run=run.id).run()
    assert not watch.exception
    assert len(watch.get("plotly_chart")) >= 3  # loss, accuracy and AUC by epoch
    assert f"Ray job {run.id}" in as_read(watch.success[0].value)


def test_a_cluster_that_does_not_answer_refuses_runs_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                                     tiny_npz: Path) -> None:
    monkeypatch.setenv(backends.RAY_ADDRESS_VARIABLE, f"http://127.0.0.1:{rayhead.free_port()}")
    with pytest.raises(jobs.Refused, match="does not answer"):
        jobs.submit(_config(tiny_npz, epochs=1))
    assert RunStore().runs() == []
    at = page_app("train").run()
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert any("does not answer" in i.value for i in at.info)


def test_a_relative_data_path_is_refused_on_a_cluster(on_ray: str) -> None:
    with pytest.raises(jobs.Refused, match="absolute path"):
        jobs.submit(TrainConfig(dataset="data/chest_xray"))

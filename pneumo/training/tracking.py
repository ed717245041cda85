"""MLflow tracking, when ``MLFLOW_TRACKING_URI`` is set (a ``sqlite:///`` file works with no server):
each run also logs its configuration, per-epoch metrics, test AUC, model and predictions there,
so it opens in the MLflow UI beside the TensorBoard logs every run writes. Without the variable
MLflow is not even imported.

Tracking is a copy, never the record: the run folder stays the truth the pages read, and a
tracking store that fails (server down, disk full) never fails the training; the run's log says
why its tracking stopped. A resumed run goes on logging into the same MLflow run.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import keras

from pneumo.runs.store import Run, RunState
from pneumo.training.callbacks import current_lr
from pneumo.training.config import TrainConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient

URI_VARIABLE = "MLFLOW_TRACKING_URI"
EXPERIMENT = "pneumo"  # unless MLFLOW_EXPERIMENT_NAME names another
ARTIFACTS = {"best.keras": "model", "last.keras": "model", "predictions.csv": "", "history.csv": "",
             "config.json": "", "environment.json": ""}  # run file -> folder among the MLflow run's artifacts
ENDS = {RunState.FINISHED: "FINISHED", RunState.STOPPED: "KILLED", RunState.FAILED: "FAILED"}


def enabled() -> bool:
    return bool(os.environ.get(URI_VARIABLE, "").strip())


def flat(values: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow parameters: ``augmentation.rotate`` and so on."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


class Tracker(keras.callbacks.Callback):
    """One pneumo run's MLflow run: a Keras callback for the epochs, ``finish`` for the rest."""

    def __init__(self, client: MlflowClient, run: Run, mlflow_run: str) -> None:
        super().__init__()
        self.client, self.run, self.mlflow_run = client, run, mlflow_run
        self.failed = False

    @classmethod
    def start(cls, run: Run, config: TrainConfig) -> Tracker | None:
        """The run's MLflow run, created on its first start and taken up again on a resume; None
        when tracking is off or cannot start (said in the run's log)."""
        if not enabled():
            return None
        try:
            from mlflow import MlflowClient
        except ImportError:
            print(f"{URI_VARIABLE} is set, but MLflow is not installed: pip install -r requirements-cluster.txt. "
                  "This run is not tracked.", flush=True)
            return None
        try:
            client = MlflowClient()
        except Exception as exc:  # noqa: BLE001 - a tracking URI it cannot use: training goes on
            _say_stopped(exc)
            return None
        for attempt in (1, 2):  # a fresh SQLite store: two runs starting at once both create its tables
            try:
                mlflow_run = _open(client, run, config)
                break
            except Exception as exc:  # noqa: BLE001 - whatever the store's trouble, training goes on
                if attempt == 2:
                    _say_stopped(exc)
                    return None
                time.sleep(1.0)
        print(f"tracking in MLflow at {os.environ[URI_VARIABLE]}: run {mlflow_run}", flush=True)
        return cls(client, run, mlflow_run)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from mlflow.entities import Metric

        values = {**(logs or {}), "learning_rate": current_lr(self.model)}
        stamp = int(1000 * time.time())
        self._safely(lambda: self.client.log_batch(self.mlflow_run, metrics=[
            Metric(key, float(value), stamp, epoch + 1) for key, value in values.items()
            if math.isfinite(float(value))]))

    def finish(self, state: RunState) -> None:
        """The test AUC, the model and the files beside it, and how the run ended."""
        test = self.run.predictions().query("split == 'test'")
        if test["label"].nunique() == 2:
            from sklearn.metrics import roc_auc_score

            auc = float(roc_auc_score(test["label"], test["prob"]))
            self._safely(lambda: self.client.log_metric(self.mlflow_run, "test_auc", auc))
        for name, folder in ARTIFACTS.items():
            if self.run.file(name).is_file():
                self._safely(lambda n=name, f=folder: self.client.log_artifact(self.mlflow_run, str(self.run.file(n)),
                                                                               f or None))
        self._safely(lambda: self.client.set_terminated(self.mlflow_run, status=ENDS.get(state, "FAILED")))

    def _safely(self, call: Callable[[], object]) -> None:
        if self.failed:
            return
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - whatever the store's trouble, training goes on
            self.failed = True
            _say_stopped(exc)


def _open(client: MlflowClient, run: Run, config: TrainConfig) -> str:
    """The run's MLflow run id: created (with the parameters) on the first start, reopened on a resume."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    experiment_id = (experiment.experiment_id if experiment
                     else client.create_experiment(name, artifact_location=_artifact_location()))
    mlflow_run = run.status().get("mlflow_run")
    if mlflow_run:
        client.update_run(mlflow_run, status="RUNNING")
    else:
        mlflow_run = client.create_run(experiment_id, run_name=run.name, tags={
            "pneumo.run": run.id, "pneumo.owner": str(run.owner), "pneumo.dataset": config.dataset,
            "pneumo.model": config.model}).info.run_id
        run.update_status(mlflow_run=mlflow_run)
        from mlflow.entities import Param

        client.log_batch(mlflow_run, params=[Param(k, v[:6000]) for k, v in flat(config.to_dict()).items()])
    return mlflow_run


def _artifact_location() -> str | None:
    """Beside a SQLite store, in ``mlartifacts/`` (as ``mlflow server`` would keep them), rather than
    in an ``mlruns/`` folder wherever the training process happens to start; a server decides itself."""
    uri = os.environ[URI_VARIABLE].strip()
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def _say_stopped(exc: BaseException) -> None:
    traceback.print_exception(exc, limit=2)
    print(f"MLflow tracking stopped ({type(exc).__name__}: {exc}); the run itself goes on and keeps every file.",
          flush=True)

"""Real Keras training on a tiny synthetic set: it must learn, and leave a complete run folder."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pneumo.explain import familiarity
from pneumo.runs import monitoring
from pneumo.runs.store import RunStore
from pneumo.training.augment import PRESETS
from pneumo.training.callbacks import RunMonitor, TriangularCyclicLR
from pneumo.training.config import TrainConfig
from pneumo.training.engine import run_training


def _tiny(tiny_npz: Path, **changes) -> TrainConfig:
    settings = dict(dataset=str(tiny_npz), image_size=64, val_fraction=0, cnn_filters=16, cnn_blocks=4,
                    batch_size=16, epochs=8, early_stopping=0, augmentation=PRESETS["none"])
    return TrainConfig(**{**settings, **changes})


@pytest.mark.slow
def test_short_training_learns_and_writes_the_run_folder(tiny_npz: Path) -> None:
    run = RunStore().create(_tiny(tiny_npz))
    assert run_training(run, verbose=0) == "finished"
    status = run.status()
    assert status["state"] == "finished" and status["device"].startswith(("CPU", "GPU"))
    history = run.history()
    assert history["epoch"].tolist() == list(range(1, 9))
    assert {"loss", "auc", "val_auc", "val_loss", "precision", "recall", "learning_rate"} <= set(history.columns)
    batches = run.batches()
    assert len(batches) == 8 * 38 and batches["step"].is_monotonic_increasing
    predictions = run.predictions()
    assert list(predictions.columns) == ["split", "id", "label", "prob", "patient"]
    assert predictions.groupby("split").size().to_dict() == {"test": 150, "val": 150}
    assert predictions["prob"].between(0, 1).all()
    test = predictions[predictions["split"] == "test"]
    auc = roc_auc_score(test["label"], test["prob"])
    assert auc > 0.75, f"the model did not learn: test AUC {auc:.3f}"
    assert history["val_auc"].max() > 0.75
    for name in ("best.keras", "environment.json", "tensorboard"):
        assert run.file(name).exists()
    assert not run.file("backup").exists()  # checkpoints are cleared once a run finishes
    _familiarity_separates_another_kind_of_film(run, tiny_npz)


def _familiarity_separates_another_kind_of_film(run, tiny_npz: Path) -> None:
    """The run's stored feature summary: its own held-out test films mostly pass, the same films
    stored the wrong way (MONOCHROME1 read as MONOCHROME2, upside down) are flagged."""
    import keras

    model = keras.saving.load_model(run.file("best.keras"))
    features = familiarity.feature_extractor(model)
    summary = familiarity.Familiarity.load(run.file(familiarity.FILE))
    test = np.load(tiny_npz)["test_images"].astype(np.float32)[..., None]
    same = summary.distance(features.predict(test, verbose=0))
    other = summary.distance(features.predict((255 - test)[:, ::-1], verbose=0))
    assert np.mean([summary.unfamiliar(d) for d in same]) < 0.1
    assert np.mean([summary.unfamiliar(d) for d in other]) > 0.9


@pytest.mark.slow
def test_two_phase_resnet_from_scratch_runs_both_phases(tinier_npz: Path) -> None:
    """ResNet50's cost here is in building and tracing, not in learning."""
    config = _tiny(tinier_npz, model="resnet50", weights="none", epochs=1, fine_tune_epochs=1,
                   unfreeze=20, batch_size=32)
    run = RunStore().create(config)
    assert run_training(run, verbose=0) == "finished"
    history = run.history()
    assert history["phase"].tolist() == [1, 2] and history["epoch"].tolist() == [1, 2]
    assert history["learning_rate"].iloc[1] == pytest.approx(config.fine_tune_learning_rate)


def test_invalid_config_and_missing_data_fail_with_a_reason(tiny_npz: Path, tmp_path: Path) -> None:
    run = RunStore().create(_tiny(tiny_npz, epochs=0))
    assert run_training(run, verbose=0) == "failed"
    assert "epochs must be between 1" in run.status()["error"]
    run = RunStore().create(_tiny(tiny_npz, dataset=str(tmp_path / "gone")))
    assert run_training(run, verbose=0) == "failed"
    assert "Folder not found" in run.status()["error"]


def test_monitor_stops_on_nan_and_on_the_stop_flag(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    run = RunStore(tmp_path).create(TrainConfig())
    monitor = RunMonitor(run, phase=1, steps_per_epoch=4, total_epochs=2)
    monitor.set_model(model)
    monitor.on_epoch_begin(0)
    monitor.on_train_batch_end(0, {"loss": 0.5})
    assert monitor.stop_reason is None and not model.stop_training
    run.file("stop").touch()
    monitor.on_train_batch_end(1, {"loss": 0.4})
    assert monitor.stop_reason == "stopped by the user" and model.stop_training
    assert run.batches()["loss"].tolist() == [0.5, pytest.approx(0.3)]  # batch 2's own loss, from the mean 0.4
    monitor.on_epoch_end(0, {"loss": 0.4})  # Keras ends the epoch cut short as if it were whole
    assert run.status()["batch"] == 2 and monitoring.progress(run).epoch_fraction == pytest.approx(0.25)
    nan_monitor = RunMonitor(run, phase=1, steps_per_epoch=4, total_epochs=2)
    nan_monitor.set_model(model)
    nan_monitor.on_epoch_begin(0)
    nan_monitor.on_train_batch_end(0, {"loss": float("nan")})
    assert "NaN" in nan_monitor.stop_reason
    assert len(run.batches()) == 1  # a monitor starting epoch 1 again (a resume) drops the old rows first


def test_triangular_cyclical_lr() -> None:
    clr = TriangularCyclicLR(1e-5, 1e-4, step=500)
    rates = [clr.rate(i) for i in (0, 250, 500, 750, 1000, 1500)]
    np.testing.assert_allclose(rates, [1e-5, 5.5e-5, 1e-4, 5.5e-5, 1e-5, 1e-4])


def test_one_cycle_warms_up_then_anneals_to_zero(tiny_npz: Path) -> None:
    """The optimizer's schedule, as the batches log it: from rate/25 up to the rate over the first
    fifth of the steps, then down to (almost) nothing by the last batch; no halving on top."""
    run = RunStore().create(_tiny(tiny_npz, epochs=2, lr_schedule="one-cycle", learning_rate=1e-3, reduce_lr=1))
    assert run_training(run, verbose=0) == "finished"
    rates = run.batches()["learning_rate"].to_numpy()
    peak = int(np.argmax(rates))
    assert rates[0] < 1e-3 / 5  # logged after the first step: a fifteenth of the way up from 4e-5
    assert rates[peak] == pytest.approx(1e-3, rel=0.05) and 0.15 < peak / len(rates) < 0.25
    assert (np.diff(rates[:peak]) > 0).all() and (np.diff(rates[peak:]) <= 0).all()
    assert rates[-1] < 1e-3 / 100


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [{"lr_schedule": "one-cycle"}, {"lr_schedule": "triangular", "clr_step": 3}],
                         ids=["one-cycle", "triangular"])
def test_a_stopped_and_resumed_run_keeps_to_its_learning_rate_schedule(
        tinier_npz: Path, schedule: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped in the middle of epoch 2 and resumed, a run trains epoch 2 again in full, each batch
    at the rate an unbroken run's schedule gives it."""
    config = _tiny(tinier_npz, epochs=2, cnn_blocks=2, batch_size=8, **schedule)  # 8 batches an epoch
    unbroken = RunStore().create(config)
    assert run_training(unbroken, verbose=0) == "finished"

    class StopsInEpochTwo(RunMonitor):
        stopped = False

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self._epoch == 2 and batch == 2 and not StopsInEpochTwo.stopped:
                StopsInEpochTwo.stopped = True
                self.run.file("stop").touch()
            super().on_train_batch_end(batch, logs)

    monkeypatch.setattr("pneumo.training.engine.RunMonitor", StopsInEpochTwo)
    resumed = RunStore().create(config)
    assert run_training(resumed, verbose=0) == "stopped"
    assert run_training(resumed, verbose=0) == "finished"
    assert resumed.history()["epoch"].tolist() == [1, 2]
    assert resumed.batches()["step"].tolist() == unbroken.batches()["step"].tolist()
    np.testing.assert_allclose(resumed.batches()["learning_rate"], unbroken.batches()["learning_rate"], rtol=1e-5)

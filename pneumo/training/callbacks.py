"""The two Keras callbacks pneumo adds to Keras' own (EarlyStopping, ReduceLROnPlateau,
ModelCheckpoint, BackupAndRestore, TensorBoard, TerminateOnNaN).

``RunMonitor`` writes what the Watch view reads (per-batch loss, per-epoch metrics, progress)
and stops training when the run's stop flag appears or the loss goes NaN.
``TriangularCyclicLR`` is the triangular cyclical learning rate of Smith (2017).
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from pneumo.files import replace_atomically
from pneumo.runs.store import Run, append_row, read_csv

HISTORY_COLUMNS = ["epoch", "phase", "loss", "accuracy", "auc", "precision", "recall", "val_loss", "val_accuracy",
                   "val_auc", "val_precision", "val_recall", "learning_rate", "seconds"]
BATCH_COLUMNS = ["step", "epoch", "phase", "batch", "loss", "learning_rate"]
STATUS_EVERY_S = 0.5


def current_lr(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class RunMonitor(keras.callbacks.Callback):
    """Appends history.csv and batches.csv, keeps status.json's progress fresh, obeys stop.

    Epochs are numbered from 1 across both phases. On a resumed run, rows from the epoch
    being redone onwards are dropped first, so the history has each epoch once.
    """

    def __init__(self, run: Run, phase: int, steps_per_epoch: int, total_epochs: int) -> None:
        super().__init__()
        self.run = run
        self.phase = phase
        self.steps_per_epoch = steps_per_epoch
        self.total_epochs = total_epochs
        self.stop_reason: str | None = None
        self._epoch = 0
        self._epoch_start = 0.0
        self._previous_mean = 0.0
        self._batches_done = 0
        self._last_status = 0.0
        self._trimmed = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1
        self._epoch_start = time.monotonic()
        self._previous_mean = 0.0
        self._batches_done = 0
        if not self._trimmed:
            self._trim_from(self._epoch)
            self._trimmed = True
        self.run.update_status(phase=self.phase, epoch=self._epoch, epochs_total=self.total_epochs, batch=0,
                               batches_per_epoch=self.steps_per_epoch)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        mean = float((logs or {}).get("loss", math.nan))
        # Keras reports the running mean over the epoch; recover this batch's own loss from it.
        loss = (batch + 1) * mean - batch * self._previous_mean
        self._previous_mean = mean
        self._batches_done = batch + 1
        step = (self._epoch - 1) * self.steps_per_epoch + batch + 1
        append_row(self.run.file("batches.csv"), {
            "step": step, "epoch": self._epoch, "phase": self.phase, "batch": batch + 1, "loss": loss,
            "learning_rate": current_lr(self.model)}, BATCH_COLUMNS)
        if not np.isfinite(mean):
            self._stop(f"the loss became {mean} (NaN or infinite) at epoch {self._epoch}, batch {batch + 1}: "
                       "try a lower learning rate")
        elif self.run.file("stop").exists():
            self._stop("stopped by the user")
        now = time.monotonic()
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self.run.update_status(batch=batch + 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        row = {k: float(v) for k, v in logs.items() if k in HISTORY_COLUMNS}
        row.update(epoch=epoch + 1, phase=self.phase, learning_rate=current_lr(self.model),
                   seconds=round(time.monotonic() - self._epoch_start, 3))
        append_row(self.run.file("history.csv"), row, HISTORY_COLUMNS)
        # An epoch cut short (stop, NaN) ends here too: its progress says how far it got.
        self.run.update_status(epoch=epoch + 1,
                               batch=self.steps_per_epoch if self.stop_reason is None else self._batches_done)

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.model.stop_training = True

    def _trim_from(self, epoch: int) -> None:
        for name, columns in (("history.csv", HISTORY_COLUMNS), ("batches.csv", BATCH_COLUMNS)):
            frame = read_csv(self.run.file(name))
            if frame.empty or "epoch" not in frame or (frame["epoch"] < epoch).all():
                continue
            kept = frame[frame["epoch"] < epoch].reindex(columns=columns)
            replace_atomically(self.run.file(name), lambda tmp, kept=kept: kept.to_csv(tmp, index=False))


class CompleteEpochBackup(keras.callbacks.BackupAndRestore):
    """Backs up complete epochs only. Keras ends an epoch that a stop or a NaN cut short as if it
    were whole; backing it up would make a resumed run skip the rest of it. Left out, the epoch is
    trained again in full, so a stopped and resumed run trains as long as an unbroken one."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.model.stop_training:
            super().on_epoch_end(epoch, logs)


class TriangularCyclicLR(keras.callbacks.Callback):
    """Learning rate going linearly from ``low`` to ``high`` and back every ``2 * step`` batches,
    counted by the optimizer's own step, which a resumed run restores: it carries on mid-cycle."""

    def __init__(self, low: float, high: float, step: int) -> None:
        super().__init__()
        self.low, self.high, self.step = low, high, step

    def rate(self, iteration: int) -> float:
        cycle = math.floor(1 + iteration / (2 * self.step))
        x = abs(iteration / self.step - 2 * cycle + 1)
        return self.low + (self.high - self.low) * max(0.0, 1 - x)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        optimizer.learning_rate.assign(self.rate(int(optimizer.iterations)))


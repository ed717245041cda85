"""What the Train page shows about runs, computed from their folders: progress, ETA, summaries.

Pure functions over ``Run`` files, so the page stays a thin layer and this is testable
without a browser.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pneumo.access import owner_name
from pneumo.data.sources import short_name
from pneumo.runs.store import Run, RunState, RunStore
from pneumo.training.augment import preset_name


@dataclass(frozen=True)
class Progress:
    """Where a run is: fractions done, seconds elapsed and seconds to go (None when unknown)."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    elapsed: float
    eta: float | None

    @property
    def epoch_fraction(self) -> float:
        """Epochs done, the current one by its batches when they are known (a run stopped halfway
        through its last epoch is not complete)."""
        if not self.epochs:
            return 0.0
        done = self.epoch - 1 + self.batch_fraction if self.batches and self.epoch else self.epoch
        return min(1.0, done / self.epochs)

    @property
    def batch_fraction(self) -> float:
        return min(1.0, self.batch / self.batches) if self.batches else 0.0


def progress(run: Run, now: float | None = None) -> Progress:
    """Progress from status.json and history.csv; the ETA assumes the mean epoch time so far."""
    status = run.status()
    history = run.history()
    now = now or time.time()
    end = status.get("ended") or now
    elapsed = max(0.0, end - status["started"]) if status.get("started") else 0.0
    epochs = int(status.get("epochs_total") or run.config().total_epochs)
    done = len(history)
    batches = int(status.get("batches_per_epoch") or 0)
    batch = int(status.get("batch") or 0)
    eta = None
    if status.get("state") == RunState.RUNNING and done and "seconds" in history:
        per_epoch = float(history["seconds"].mean())
        in_epoch = batch / batches if batches else 0.0
        eta = max(0.0, (epochs - done - in_epoch) * per_epoch)
    return Progress(epoch=int(status.get("epoch") or done), epochs=epochs, batch=batch, batches=batches,
                    elapsed=elapsed, eta=eta)


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased so the start is not dragged to 0."""
    values = np.asarray(values, dtype=float)
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty_like(values)
    last = 0.0
    for i, v in enumerate(values):
        last = last * weight + (1 - weight) * v
        out[i] = last / (1 - weight ** (i + 1))
    return out


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch with the highest validation AUC (what ModelCheckpoint kept)."""
    if history.empty or "val_auc" not in history or history["val_auc"].isna().all():
        return None
    return int(history.loc[history["val_auc"].idxmax(), "epoch"])


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def state_label(run: Run) -> str:
    """The run's state in words: "stopping" between a stop request and the worker's end (it saves
    the model so far and scores the test films first, which can take a while)."""
    state = run.status()["state"]
    return "stopping" if state == RunState.RUNNING and run.file("stop").exists() else state


def states(store: RunStore) -> tuple[tuple[str, str], ...]:
    """Each run's id and state in words, read cheaply (status.json alone): what a watching page
    compares every few seconds to notice a run that came, went or changed state."""
    out = []
    for run in store.runs():
        try:
            out.append((run.id, state_label(run)))
        except (OSError, ValueError, KeyError, TypeError):  # being written, deleted or damaged
            out.append((run.id, "unreadable"))
    return tuple(out)


def summary(run: Run) -> dict:
    """One row of the runs table. Damaged runs get a row too, with the reason."""
    damage = run.damage
    if damage:
        return {"run": run.id, "name": run.id, "status": "damaged", "problem": damage}
    config, status, history = run.config(), run.status(), run.history()
    model_problem = run.model_problem
    best = best_epoch(history)
    best_row = history[history["epoch"] == best].iloc[0] if best is not None else None
    return {  # what a class looks for first comes first: a projector shows only the left of the table
        "run": run.id,
        "name": run.name,
        "owner": owner_name(run.owner),  # whose run: in a class, asked first
        "status": "damaged" if model_problem else state_label(run),
        "best val AUC": round(float(best_row["val_auc"]), 4) if best_row is not None else None,
        "epochs": f"{len(history)}/{config.total_epochs}",
        "data set": short_name(config.dataset),
        "model": "ResNet50" if config.model == "resnet50" else "CNN",
        "augmentation": preset_name(config.augmentation),
        "unfreeze": config.unfreeze if config.model == "resnet50" else None,
        "image size": config.image_size,
        "val accuracy": round(float(best_row["val_accuracy"]), 4) if best_row is not None else None,
        "duration": duration(progress(run).elapsed) if status.get("started") else "",
        "device": status.get("device", ""),
        "problem": model_problem or status.get("error") or "",
    }

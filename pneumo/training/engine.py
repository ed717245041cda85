"""The training engine: runs one run folder from its config to a model and predictions.

Called in a process of its own (``python -m pneumo worker RUN``, started by ``pneumo.jobs``)
or in the foreground by ``python -m pneumo train``. Everything it produces goes into the
run folder (see ``pneumo.runs``); the UI only reads those files.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import socket
import sys
import time
import traceback

import keras
import numpy as np
import pandas as pd
import sklearn
import tensorflow as tf

from pneumo import device
from pneumo.data import cache, splits
from pneumo.data.sources import DatasetError, ImageSet, parse_spec
from pneumo.explain import familiarity
from pneumo.files import replace_atomically, write_json
from pneumo.runs.store import Run, RunState
from pneumo.training import models, pipeline
from pneumo.training.callbacks import CompleteEpochBackup, RunMonitor, TriangularCyclicLR
from pneumo.training.config import TrainConfig
from pneumo.training.tracking import Tracker

SCORING_BATCH = 64  # films per step when writing predictions and the familiarity summary


class TrainingError(RuntimeError):
    """A run that cannot go on, with a reason meant for the user."""


def run_training(run: Run, verbose: int = 2) -> RunState:
    """Train ``run`` (resuming from its checkpoint if it has one); return its final state."""
    config = run.config()
    dev = device.describe()
    # The queue stamped "started" when it spawned this process: keep it, or the elapsed time jumps back.
    started = run.status().get("started") or time.time()
    run.update_status(state=RunState.RUNNING, pid=os.getpid(), host=socket.gethostname(), device=dev, started=started,
                      error=None, ended=None)
    tracker = Tracker.start(run, config)
    try:
        state, note = _train(run, config, dev, verbose, tracker)
    except (TrainingError, models.WeightsUnavailable, DatasetError) as exc:
        state, note = RunState.FAILED, str(exc)
    except Exception as exc:  # noqa: BLE001 - any crash must end as a failed run with its reason
        traceback.print_exc()
        state, note = RunState.FAILED, f"{type(exc).__name__}: {exc}"
    run.update_status(state=state, error=note if state == RunState.FAILED else None, note=note, ended=time.time())
    if tracker:
        tracker.finish(state)
    print(f"run {run.id}: {state}" + (f" ({note})" if note else ""), flush=True)
    return state


def _train(run: Run, config: TrainConfig, dev: str, verbose: int, tracker: Tracker | None
           ) -> tuple[RunState, str | None]:
    problems = config.problems()
    if problems:
        raise TrainingError("invalid configuration: " + "; ".join(problems))
    image_set = cache.load(parse_spec(config.dataset), config.image_size)
    split = splits.assign_splits(image_set.records, config.val_fraction, config.seed).to_numpy()
    labels = image_set.records["label"].to_numpy()
    rows = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    data = {name: (which, labels[which]) for name, which in rows.items()}  # rows of the cache, their labels
    _check_data(data)

    keras.utils.set_random_seed(config.seed)
    policy = device.set_precision(config.mixed_precision)
    _write_environment(run, dev, policy, image_set.split_note)
    weights = pipeline.class_weights(data["train"][1]) if config.class_weights else None
    train_ds = pipeline.batches(image_set.images, *data["train"], config.batch_size, shuffle=True, seed=config.seed)
    val_ds = pipeline.batches(image_set.images, *data["val"], config.batch_size, shuffle=False)
    steps = math.ceil(len(data["train"][1]) / config.batch_size)

    with device.strategy().scope():
        model = models.build(config)
        status = run.status()
        phase_one_done = status.get("phase1_done") and run.file("phase1.weights.h5").exists()
        if phase_one_done:
            model.load_weights(run.file("phase1.weights.h5"))
        else:
            _compile(model, config, config.learning_rate, steps * config.epochs)
            reason = _fit(run, model, config, train_ds, val_ds, steps, weights, 1, (0, config.epochs), verbose,
                          tracker)
            if reason:
                return _end_early(run, model, image_set, split, reason)
            model.save_weights(run.file("phase1.weights.h5"))
            # Phase 2 goes on from the last epoch phase 1 ran (early stopping may have cut it short).
            status = run.update_status(phase1_done=True, phase2_start=len(run.history()))
        if config.two_phase:
            start = int(status.get("phase2_start", config.epochs))
            models.set_unfrozen(model, config.unfreeze)
            _compile(model, config, config.fine_tune_learning_rate, steps * config.fine_tune_epochs)
            reason = _fit(run, model, config, train_ds, val_ds, steps, weights, 2,
                          (start, start + config.fine_tune_epochs), verbose, tracker)
            if reason:
                return _end_early(run, model, image_set, split, reason)
    _write_outputs(run, model, image_set, split)
    _remove_checkpoints(run)
    return RunState.FINISHED, _early_stop_note(run, config)


def _check_data(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    if len(np.unique(data["train"][1])) < 2:
        raise TrainingError("the train split needs images of both classes")
    if len(data["val"][1]) == 0:
        raise TrainingError("the validation split is empty: carve one from train (a share above 0 %)")


ONE_CYCLE_START = 25  # one-cycle starts at the learning rate / 25 (Smith's and PyTorch's choice)
ONE_CYCLE_WARMUP = 0.2  # share of the steps spent warming up


def _compile(model: keras.Model, config: TrainConfig, learning_rate: float, steps: int) -> None:
    """Adam at ``learning_rate``, or on a one-cycle schedule over ``steps`` batches: a function of
    the optimizer's step count, so a resumed run carries on where it stopped."""
    if config.lr_schedule == "one-cycle":
        warmup = max(1, round(ONE_CYCLE_WARMUP * steps))
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / ONE_CYCLE_START, max(1, steps - warmup), warmup_target=learning_rate, warmup_steps=warmup)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
                 keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")],
    )


def _fit(run: Run, model: keras.Model, config: TrainConfig, train_ds, val_ds, steps: int,
         class_weight: dict | None, phase: int, epochs: tuple[int, int], verbose: int, tracker: Tracker | None
         ) -> str | None:
    """One phase of training, epochs [first, last); returns why it ended early (stop, NaN), or None."""
    first, last = epochs
    expected_total = last if phase == 2 else last + (config.fine_tune_epochs if config.two_phase else 0)
    monitor = RunMonitor(run, phase, steps, expected_total)
    history = run.history()
    best_so_far = float(history["val_auc"].max()) if "val_auc" in history and len(history) else None
    callbacks: list[keras.callbacks.Callback] = [
        CompleteEpochBackup(str(run.file(f"backup/phase{phase}")), double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(str(run.file("best.keras")), monitor="val_auc", mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.TensorBoard(str(run.file("tensorboard")), profile_batch=0),
    ]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.early_stopping,
                                                       restore_best_weights=config.restore_best, verbose=1))
    # One-cycle is the optimizer's own schedule (_compile); the others are callbacks.
    if config.lr_schedule == "triangular":
        callbacks.append(TriangularCyclicLR(config.clr_min, config.clr_max, config.clr_step))
    elif config.lr_schedule == "plateau" and config.reduce_lr:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.reduce_lr,
                                                           min_lr=1e-7, verbose=1))
    callbacks.append(monitor)  # after the schedulers: it logs the learning rate they have set
    if tracker:
        callbacks.append(tracker)
    model.fit(train_ds, validation_data=val_ds, epochs=last, initial_epoch=first, class_weight=class_weight,
              shuffle=False, callbacks=callbacks, verbose=verbose)
    return monitor.stop_reason


def _end_early(run: Run, model: keras.Model, image_set: ImageSet, split: np.ndarray, reason: str
               ) -> tuple[RunState, str]:
    if reason == "stopped by the user":
        model.save(run.file("last.keras"))
        run.file("stop").unlink(missing_ok=True)
        _write_outputs(run, model, image_set, split)
        return RunState.STOPPED, "stopped by the user; the model so far is saved and the run can be resumed"
    return RunState.FAILED, reason


def _early_stop_note(run: Run, config: TrainConfig) -> str | None:
    done = len(run.history())
    if done < config.total_epochs:
        return f"early stopping: {done} of {config.total_epochs} epochs ran (val AUC stopped improving)"
    return None


def _write_outputs(run: Run, model: keras.Model, image_set: ImageSet, split: np.ndarray) -> None:
    """predictions.csv for val and test, and the feature summary the Predict page checks new films
    against, both from the best saved model (else the current one)."""
    best = run.file("best.keras")
    scorer = keras.saving.load_model(best, safe_mode=True) if best.exists() else model
    records = image_set.records
    frames = []
    for name in ("val", "test"):
        mask = split == name
        if not mask.any():
            continue
        probs = scorer.predict(_films(image_set, np.flatnonzero(mask)), verbose=0).reshape(-1)
        frames.append(pd.DataFrame({"split": name, "id": records["id"][mask].to_numpy(),
                                    "label": records["label"][mask].to_numpy(), "prob": probs,
                                    "patient": records["patient"][mask].to_numpy()}))
    run.write_predictions(pd.concat(frames))
    features = familiarity.feature_extractor(scorer)
    train = np.flatnonzero(split == "train")
    train = np.sort(np.random.default_rng(0).permutation(train)[:familiarity.MAX_TRAIN_FILMS])
    summary = familiarity.Familiarity.fit(features.predict(_films(image_set, train), verbose=0),
                                          features.predict(_films(image_set, np.flatnonzero(split == "val")),
                                                           verbose=0))
    replace_atomically(run.file(familiarity.FILE), summary.save)


def _films(image_set: ImageSet, rows: np.ndarray) -> tf.data.Dataset:
    """The chosen films in order, as a model takes them, read from the cache a batch at a time."""
    return pipeline.batches(image_set.images, rows, np.zeros(len(rows)), SCORING_BATCH, shuffle=False)


def _remove_checkpoints(run: Run) -> None:
    shutil.rmtree(run.file("backup"), ignore_errors=True)
    run.file("phase1.weights.h5").unlink(missing_ok=True)


def _write_environment(run: Run, dev: str, policy: str, split_note: str) -> None:
    """What a reproduction needs beyond config.json: versions, device, platform, and how the split
    was made when the data set has none of its own."""
    write_json(run.file("environment.json"), {
        "python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": keras.__version__,
        "numpy": np.__version__, "scikit-learn": sklearn.__version__, "platform": platform.platform(),
        "device": dev, "precision_policy": policy, "split": split_note or "the data set's own",
    })

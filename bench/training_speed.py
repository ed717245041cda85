"""Bench: how fast the default CNN trains on the real Kermany train split, and against what.

    python bench/training_speed.py [FOLDER] [--steps 60] [--model resnet50]

(a) the default CNN (pneumo.config.TrainConfig defaults, light augmentation) fed by pneumo's
    tf.data pipeline from the uint8 cache: the real thing;
(b) the same model fed in-memory float32 tensors: the limit (goal a >= 0.9 b);
With ``--model resnet50``, (a) and (b) are ResNet50 fine-tuning at 224 px instead (mixed
precision on a GPU); the device and precision are printed first.
(c) the seed-style set-up: the original study's CNN (Conv 32-64-128-128 with BatchNorm and
    MaxPool, Dense 512, 224 px, batch 16) fed by ImageDataGenerator.flow_from_directory,
    decoding JPEGs every step (goal a >= 3 c).
Each is timed over the same number of steady-state steps, after warm-up steps; a and b are
measured alternately, ``--repeats`` times each, and the best of each is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np
import tensorflow as tf

from pneumo import device
from pneumo.data import cache
from pneumo.data.sources import FolderSource
from pneumo.training import models, pipeline
from pneumo.training.augment import PRESETS
from pneumo.training.config import MODELS, TrainConfig

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
WARMUP = 8
FINE_TUNED_LAYERS = 100  # ResNet50 layers the original study unfroze


def timed_fit(model: keras.Model, data, steps: int, batch: int, **fit_args) -> float:
    """Images per second over ``steps`` steps, after WARMUP steps."""
    model.fit(data, steps_per_epoch=WARMUP, epochs=1, verbose=0, **fit_args)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, **fit_args)
    return steps * batch / (time.perf_counter() - start)


def built(config: TrainConfig) -> keras.Model:
    """The model a run of ``config`` trains; ResNet50 in its fine-tuning phase (top layers unfrozen)."""
    model = models.build(config)
    if config.model == "resnet50":
        models.set_unfrozen(model, config.unfreeze)
    return compiled(model)


def compiled(model: keras.Model) -> keras.Model:
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    return model


def seed_cnn() -> keras.Model:
    """The CNN of the original study, as it was written there."""
    layers = [keras.Input((224, 224, 3))]
    for filters in (32, 64, 128, 128):
        layers += [keras.layers.Conv2D(filters, 3, activation="relu"), keras.layers.BatchNormalization(),
                   keras.layers.MaxPooling2D()]
    layers += [keras.layers.Flatten(), keras.layers.Dense(512, activation="relu"), keras.layers.Dropout(0.5),
               keras.layers.Dense(1, activation="sigmoid")]
    return keras.Sequential(layers)


def seed_style_rate(folder: Path, steps: int) -> float:
    """(c): images/s of the original study's set-up on this machine, now. The unit training time
    is stated in travels between machines: a seed-epoch is 5,216 / c seconds (``seed_epoch``)."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator  # gone from Keras 3's public API

    flow = ImageDataGenerator(rescale=1 / 255, rotation_range=25, zoom_range=0.25, width_shift_range=0.2,
                              height_shift_range=0.2).flow_from_directory(
        str(folder / "train"), target_size=(224, 224), batch_size=16, class_mode="binary", seed=0)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("float32")  # as the study ran it, on any device
    return timed_fit(compiled(seed_cnn()), flow, steps, 16)


KERMANY_TRAIN = 5216  # films in the official train split: one seed-epoch is one pass over them


def seed_epoch(folder: Path, steps: int = 24) -> float:
    """Seconds one epoch of the seed-style set-up takes on this machine, measured now."""
    return KERMANY_TRAIN / seed_style_rate(folder, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements of a and b; best kept")
    parser.add_argument("--model", choices=MODELS, default="cnn",
                        help="resnet50: ImageNet's ResNet50 at 224 px fine-tuned (top 100 layers unfrozen), "
                             "mixed precision on a GPU")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"no data at {args.folder}")
    # Weights do not change the speed: ResNet50 starts from none, which needs no download.
    config = TrainConfig.for_model(args.model).with_(dataset=str(args.folder), augmentation=PRESETS["light"],
                                                    weights="none", unfreeze=FINE_TUNED_LAYERS)
    policy = device.set_precision(config.mixed_precision)
    image_set = cache.load(FolderSource(args.folder), config.image_size)
    train = (image_set.records["split"] == "train").to_numpy()
    images, labels = np.asarray(image_set.images[train]), image_set.records["label"].to_numpy()[train]
    batch = config.batch_size

    tensors = tf.constant(images[..., None].astype(np.float32)), tf.constant(labels.astype(np.float32))
    a_runs, b_runs = [], []
    for _ in range(args.repeats):  # alternate a and b: on a shared machine the order alone moves figures by 20 %
        keras.utils.set_random_seed(0)
        a_runs.append(timed_fit(built(config),
                                pipeline.batches(image_set.images, np.flatnonzero(train), labels, batch,
                                                 True).repeat(), args.steps, batch))
        keras.utils.set_random_seed(0)
        b_runs.append(timed_fit(built(config), tensors[0], args.steps, batch, y=tensors[1],
                                batch_size=batch))
    a, b = max(a_runs), max(b_runs)

    c = seed_style_rate(args.folder, max(10, args.steps // 3))

    what = (f"default CNN: {config.image_size} px, {config.cnn_blocks} blocks from {config.cnn_filters} filters"
            if args.model == "cnn" else f"ResNet50 fine-tuning: {config.image_size} px, top {config.unfreeze} "
                                        "layers unfrozen")
    print(f"{what}, batch {batch}, light augmentation, {policy}; {len(labels):,} train images; "
          f"{os.cpu_count()} CPU(s); device: {device.describe()}")
    print(f"{'set-up':<58}{'images/s':>10}{'ratio':>14}")
    print(f"{'(a) ' + args.model + ', pneumo tf.data pipeline + augmentation':<58}{a:>10.1f}{'':>14}")
    print(f"{'(b) same model, in-memory tensors (the limit)':<58}{b:>10.1f}{f'a/b = {a / b:.2f}':>14}")
    print(f"{'(c) seed-style CNN, 224 px, flow_from_directory':<58}{c:>10.1f}{f'a/c = {a / c:.1f}':>14}")
    print(f"one seed-epoch here: {KERMANY_TRAIN / c:.0f} s ({KERMANY_TRAIN:,} films at c's rate)")
    print(f"goals: a >= 0.9 b ({'met' if a >= 0.9 * b else 'MISSED'}), a >= 3 c ({'met' if a >= 3 * c else 'MISSED'})")


if __name__ == "__main__":
    main()

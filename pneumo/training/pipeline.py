"""What training feeds the model: the tf.data input pipeline and the class weights of the loss.

Images stay uint8 in one tensor; each step gathers a shuffled batch of indices and casts
only that batch to float32, so shuffling costs nothing and memory stays at one byte a pixel.
Augmentation is not here: it is the first layers of the model (see ``pneumo.training.augment``).

TensorFlow is imported only where batches are made: the Dataset page shows ``class_weights``
and should not wait for TensorFlow to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

if TYPE_CHECKING:
    import tensorflow as tf


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Keras ``class_weight`` that balances the classes: scikit-learn's 'balanced', n / (2 · count).

    Unrounded: training uses them as they are; whoever shows them rounds. Empty when the labels
    do not hold both classes (0 = NORMAL, 1 = PNEUMONIA).
    """
    labels = np.asarray(labels)
    classes = np.array([0, 1])
    if not np.isin(classes, labels).all():
        return {}
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
    """(float32 N x S x S x 1 in 0..255, float32 labels) batches, shuffled each epoch if asked."""
    import tensorflow as tf

    pixels = tf.constant(np.ascontiguousarray(images, dtype=np.uint8))
    targets = tf.constant(np.asarray(labels, dtype=np.float32))
    indices = tf.data.Dataset.range(len(images))
    if shuffle:
        indices = indices.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(pixels, idx), tf.float32)[..., None], tf.gather(targets, idx)

    return indices.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

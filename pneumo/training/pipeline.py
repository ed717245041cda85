"""The tf.data input pipeline, fed from the uint8 image cache.

Images stay uint8 in one tensor; each step gathers a shuffled batch of indices and casts
only that batch to float32, so shuffling costs nothing and memory stays at one byte a pixel.
Augmentation is not here: it is the first layers of the model (see ``pneumo.augment``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
    """(float32 N x S x S x 1 in 0..255, float32 labels) batches, shuffled each epoch if asked."""
    pixels = tf.constant(np.ascontiguousarray(images, dtype=np.uint8))
    targets = tf.constant(np.asarray(labels, dtype=np.float32))
    indices = tf.data.Dataset.range(len(images))
    if shuffle:
        indices = indices.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(pixels, idx), tf.float32)[..., None], tf.gather(targets, idx)

    return indices.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

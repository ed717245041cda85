"""What training feeds the model: the tf.data input pipeline and the class weights of the loss.

Images stay uint8 where they are (the cache's memory map); each step reads a shuffled batch of
rows and casts only that batch to float32, so memory does not grow with the data set.
Augmentation is not here: it is the first layers of the model (see ``pneumo.training.augment``).

TensorFlow is imported only where batches are made: the Dataset page shows ``class_weights``
and should not wait for TensorFlow to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Keras ``class_weight`` that balances the classes: n / (2 · count), scikit-learn's 'balanced'
    (the formula, not the import: scikit-learn takes 1.5 s to load, on the app's first screen).

    Unrounded: training uses them as they are; whoever shows them rounds. Empty when the labels
    do not hold both classes (0 = NORMAL, 1 = PNEUMONIA).
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)[:2]
    if not counts.all():
        return {}
    return {c: float(counts.sum() / (2 * counts[c])) for c in (0, 1)}


def batches(images: np.ndarray, rows: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool,
            seed: int = 0) -> tf.data.Dataset:
    """(float32 B x S x S x 1 in 0..255, float32 labels) batches of ``images[rows]``, shuffled each
    epoch if asked; ``labels`` go with ``rows``.

    ``images`` may be the cache's memory map: each step reads only its batch from it, so memory
    does not grow with the number of films (bench/scaling.py), and shuffling costs nothing.
    """
    import tensorflow as tf

    rows, labels = np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.float32)
    side = images.shape[1:]

    def read(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images[rows[positions]].astype(np.float32)[..., None], labels[positions]

    def gather(positions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        films, targets = tf.numpy_function(read, [positions], (tf.float32, tf.float32), stateful=False)
        films.set_shape((None, *side, 1))
        targets.set_shape((None,))
        return films, targets

    order = tf.data.Dataset.range(len(rows))
    if shuffle:
        order = order.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    return order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

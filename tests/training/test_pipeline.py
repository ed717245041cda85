"""The training pipeline's class weights: computed by training itself, unrounded."""

import numpy as np

from pneumo.training.pipeline import class_weights


def test_training_class_weights_are_balanced_and_unrounded() -> None:
    """The weights the loss uses (and the Dataset page shows, rounded): n / (2 * count), exactly."""
    labels = np.array([0] * 7 + [1] * 13)
    weights = class_weights(labels)
    assert weights == {0: 20 / (2 * 7), 1: 20 / (2 * 13)}
    assert weights[0] != round(weights[0], 3) and weights[1] != round(weights[1], 3)
    assert class_weights(np.array([1, 1])) == {}

"""Does a film look like the films a run was trained on, to the run's own model?

A model trained on drawn films scores a real radiograph 100 % pneumonia with nothing to say
it has never seen one. At the end of training the run stores where its training films lie in
the model's own feature space (the pooled features its output layer reads): their mean and
a shrunk covariance (Ledoit-Wolf, well conditioned with fewer films than features), plus the
distances of its validation films. A new film's Mahalanobis distance is then read as a
percentile of those validation distances: above the 99th, fewer than 1 in 100 films of the
run's own kind lie that far out, and the page warns that the probability means little.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from sklearn.covariance import LedoitWolf

FILE = "familiarity.npz"  # in the run folder
WARN_PERCENTILE = 99.0
MAX_TRAIN_FILMS = 2000  # a mean and covariance of a few hundred features need no more


def feature_extractor(model: keras.Model) -> keras.Model:
    """The features the model's output layer reads (after pooling and the head): the space in which
    the model itself tells films apart. The same definition for a run's saved model and its flat copy."""
    output_layer = model.outputs[0]._keras_history.operation
    return keras.Model(model.inputs[0], output_layer.input)


@dataclass(frozen=True)
class Familiarity:
    """The training films' feature distribution and the validation films' distances from it."""

    mean: np.ndarray  # (d,)
    precision: np.ndarray  # (d, d), inverse of the shrunk covariance
    reference: np.ndarray  # sorted Mahalanobis distances of the validation films

    @classmethod
    def fit(cls, train_features: np.ndarray, val_features: np.ndarray) -> Familiarity:
        estimate = LedoitWolf().fit(np.asarray(train_features, np.float64))
        fitted = cls(estimate.location_, estimate.precision_, np.empty(0))
        return cls(fitted.mean, fitted.precision, np.sort(fitted.distance(val_features)))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` (n, d) from the training films."""
        centred = np.atleast_2d(np.asarray(features, np.float64)) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, self.precision, centred), 0.0))

    def percentile(self, distance: float) -> float:
        """Share of the run's validation films lying closer than ``distance``, in percent."""
        if not len(self.reference):
            return 0.0
        return 100.0 * float(np.searchsorted(self.reference, distance, side="left")) / len(self.reference)

    def unfamiliar(self, distance: float) -> bool:
        return self.percentile(distance) > WARN_PERCENTILE

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:  # np.savez would add .npz to a name without it
            np.savez(f, mean=self.mean, precision=self.precision, reference=self.reference)

    @classmethod
    def load(cls, path: Path) -> Familiarity:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["mean"], data["precision"], data["reference"])


def sentence(distance: float, familiarity: Familiarity, dataset: str) -> str:
    """The check in words for the page."""
    p = familiarity.percentile(distance)
    if p > WARN_PERCENTILE:
        return (f"**This film is unlike the films the model was trained on** ({dataset}): it lies further from "
                f"them, in the model's own features, than {p:.0f} % of the run's validation films (distance "
                f"{distance:.1f}). The probability above says little about it.")
    return (f"The film lies within the range of the run's training films ({dataset}): further out than {p:.0f} % "
            f"of its validation films (distance {distance:.1f}; a warning comes above the {WARN_PERCENTILE:.0f}th).")

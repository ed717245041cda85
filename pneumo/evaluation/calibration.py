"""Calibration: when the model says 80 %, is it pneumonia 8 times in 10?

A model can rank films well (a high AUC) and still state probabilities that are too sure of
themselves; networks trained to a low loss usually are. The expected calibration error (ECE) says how
far the stated probabilities are from the observed shares, next to the Brier score. Temperature
scaling (Guo et al., 2017) divides every logit by one number T, fitted on the run's validation split:
it often fixes much of the error, and since it is monotone the ranking, the AUC, and the calls at a
threshold moved with it stay exactly the same. Only a threshold kept at the same number calls
differently, and the workbench shows how.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from pneumo.evaluation import metrics

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before taking the logit
LOG_T_BOUNDS = (-4.0, 4.0)  # T between about 0.018 and 55


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Sum over non-empty equal-width bins of (share of predictions in the bin) x |observed share of
    positives - mean predicted probability|.

    Bins are those of ``metrics.calibration`` (scikit-learn's): (a, b], the first one [0, b], so a
    probability on an edge counts in the lower bin, 1.0 in the last, and the ECE is exactly the
    weighted gap of the points the reliability diagram draws.
    """
    labels, probs = np.asarray(labels, float), np.asarray(probs, float)
    if not len(probs):
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], probs)  # side="left": an edge goes to the lower bin
    predicted = np.bincount(which, weights=probs, minlength=bins)
    observed = np.bincount(which, weights=labels, minlength=bins)
    return float(np.abs(observed - predicted).sum() / len(probs))  # sum of n_b |obs_b - pred_b| / N


def _logit(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(z, float)))  # no overflow warning for large |z|


def _two_classes(labels: np.ndarray) -> bool:
    return len(labels) >= 2 and len(np.unique(labels)) == 2


def fit_temperature(labels: np.ndarray, probs: np.ndarray) -> float:
    """The T > 0 minimising the mean binary negative log-likelihood of sigmoid(logit(p) / T), meant
    for validation predictions. 1.0 when there are fewer than two predictions or one class only."""
    labels, z = np.asarray(labels, float), _logit(probs)
    if not _two_classes(labels) or not np.any(z):
        return 1.0

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        # -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))], stably: log sigmoid(s) = -log(1 + e^-s)
        return float(np.mean(labels * np.logaddexp(0, -scaled) + (1 - labels) * np.logaddexp(0, scaled)))

    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): T > 1 pulls probabilities toward 0.5, T < 1 pushes them toward 0 and 1."""
    return _sigmoid(_logit(probs) / temperature)


@dataclass(frozen=True)
class Reliability:
    """How well one set of probabilities is calibrated on the shown split."""

    predicted: np.ndarray  # reliability diagram: mean predicted probability per non-empty bin
    observed: np.ndarray  # … and the share with pneumonia in it
    ece: float
    brier: float


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> Reliability:
    predicted, observed, brier = metrics.calibration(labels, probs, bins)
    return Reliability(predicted, observed, expected_calibration_error(labels, probs, bins), brier)


ROWS = ("raw probabilities", "temperature-scaled", "temperature-scaled, threshold moved with it")


@dataclass(frozen=True)
class Workbench:
    """Temperature scaling fitted on validation and applied to the shown split, and what it does to
    calibration and to the calls at the chosen threshold."""

    temperature: float
    fitted: bool  # False when validation lacks one of the classes: nothing to fit, T = 1
    threshold: float  # the threshold chosen on raw probabilities
    mapped_threshold: float  # sigmoid(logit(threshold) / T): the same calls on scaled probabilities
    before: Reliability
    after: Reliability
    table: pd.DataFrame  # index ROWS; columns threshold, sensitivity, specificity, accuracy, ECE, Brier

    def sentence(self) -> str:
        """The fitted temperature in plain words."""
        if not self.fitted:
            return ("No temperature could be fitted: that needs validation predictions of both classes, so the "
                    "probabilities are shown as the model gave them.")
        t = f"T = {self.temperature:.2f}"
        if t == "T = 1.00":
            return (f"The temperature fitted on validation is {t}: the model's probabilities were already about "
                    f"right there, and scaling barely changes them.")
        if self.temperature > 1:
            return (f"The temperature fitted on validation is {t} > 1: the model was over-confident, so its "
                    f"probabilities are pulled toward 50 %.")
        return (f"The temperature fitted on validation is {t} < 1: the model was under-confident, so its "
                f"probabilities are pushed away from 50 %, toward 0 and 1.")


def _row(labels: np.ndarray, probs: np.ndarray, threshold: float, calibration: Reliability) -> dict[str, float]:
    values = metrics.confusion(labels, probs, threshold).metrics()
    return {"threshold": threshold, "sensitivity": values["sensitivity"], "specificity": values["specificity"],
            "accuracy": values["accuracy"], "ECE": calibration.ece, "Brier": calibration.brier}


def workbench(val_labels: np.ndarray, val_probs: np.ndarray, test_labels: np.ndarray, test_probs: np.ndarray,
              threshold: float) -> Workbench:
    """T fitted on the validation predictions, applied to the test (or shown) ones, at ``threshold``.

    The table's rows: the raw probabilities at ``threshold``; the scaled ones at the same number
    (different calls); the scaled ones at the mapped threshold (the raw calls exactly, but for
    probabilities within 1e-7 of 0 or 1, which the clipping merges).
    """
    val_labels, test_labels = np.asarray(val_labels), np.asarray(test_labels)
    test_probs = np.asarray(test_probs, float)
    fitted = _two_classes(val_labels)
    temperature = fit_temperature(val_labels, val_probs) if fitted else 1.0
    scaled = apply_temperature(test_probs, temperature) if fitted else test_probs
    mapped = float(apply_temperature(np.array([threshold]), temperature)[0]) if fitted else float(threshold)
    before, after = reliability(test_labels, test_probs), reliability(test_labels, scaled)
    table = pd.DataFrame([_row(test_labels, test_probs, threshold, before),
                          _row(test_labels, scaled, threshold, after),
                          _row(test_labels, scaled, mapped, after)], index=pd.Index(ROWS, name="probabilities"))
    return Workbench(temperature, fitted, float(threshold), mapped, before, after, table)

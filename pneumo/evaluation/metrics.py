"""Threshold metrics, curves, threshold strategies and bootstrap intervals for binary predictions.

Label 1 = pneumonia (positive); a prediction is positive when ``prob >= threshold``. Curves and
AUCs come from scikit-learn; everything evaluated at many thresholds or many resamples is
vectorised in numpy, so a slider move on 624 predictions stays well under 100 ms.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_auc_score, roc_curve

METRIC_NAMES = ("sensitivity", "specificity", "ppv", "npv", "f1", "accuracy", "balanced_accuracy", "mcc")


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """All threshold metrics from confusion counts (arrays broadcast: thresholds or resamples)."""
    tp, fp, tn, fn = (np.asarray(x, float) for x in (tp, fp, tn, fn))
    sens, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    ppv, npv = _div(tp, tp + fp), _div(tn, tn + fn)
    mcc_den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": npv,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "accuracy": _div(tp + tn, tp + tn + fp + fn),
        "balanced_accuracy": (sens + spec) / 2,
        # MCC is 0 when a row or column of the confusion matrix is empty (scikit-learn's convention).
        "mcc": np.where(mcc_den > 0, _div(tp * tn - fp * fn, mcc_den), 0.0),
    }


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in _from_counts(self.tp, self.fp, self.tn, self.fn).items()}


def confusion(labels: np.ndarray, probs: np.ndarray, threshold: float) -> Confusion:
    labels, predicted = np.asarray(labels).astype(bool), np.asarray(probs) >= threshold
    return Confusion(tp=int((labels & predicted).sum()), fp=int((~labels & predicted).sum()),
                     tn=int((~labels & ~predicted).sum()), fn=int((labels & ~predicted).sum()))


def sweep(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """Every metric at every threshold (default: every distinct probability, plus 0 and 1)."""
    labels, probs = np.asarray(labels).astype(bool), np.asarray(probs, float)
    if thresholds is None:
        thresholds = np.unique(np.concatenate([[0.0, 1.0], probs, [np.nextafter(1.0, 2.0)]]))
    thresholds = np.asarray(thresholds, float)
    # predicted positive at threshold t: prob >= t, counted per class with searchsorted
    pos, neg = np.sort(probs[labels]), np.sort(probs[~labels])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    fn, tn = len(pos) - tp, len(neg) - fp
    frame = pd.DataFrame({"threshold": thresholds, "tp": tp, "fp": fp, "tn": tn, "fn": fn})
    for name, values in _from_counts(tp, fp, tn, fn).items():
        frame[name] = values
    return frame


def at_prevalence(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """PPV and NPV for a population with another prevalence (Bayes' rule)."""
    tp, fp = sensitivity * prevalence, (1 - specificity) * (1 - prevalence)
    tn, fn = specificity * (1 - prevalence), (1 - sensitivity) * prevalence
    return float(_div(tp, tp + fp)), float(_div(tn, tn + fn))


@dataclass(frozen=True)
class Curves:
    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    auc: float
    average_precision: float


def curves(labels: np.ndarray, probs: np.ndarray) -> Curves:
    """ROC and precision-recall curves with their areas (NaN AUC when only one class is present)."""
    labels = np.asarray(labels).astype(int)
    one_class = len(np.unique(labels)) < 2
    if one_class:  # no ROC curve exists; draw the chance diagonal rather than fail
        fpr, tpr = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    else:
        fpr, tpr, _ = roc_curve(labels, probs)
    precision, recall, _ = precision_recall_curve(labels, probs)
    return Curves(fpr, tpr, precision, recall,
                  auc=float("nan") if one_class else float(roc_auc_score(labels, probs)),
                  average_precision=float(average_precision_score(labels, probs)) if labels.any() else float("nan"))


# --- thresholds chosen on validation ------------------------------------------------------


def youden(labels: np.ndarray, probs: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1."""
    table = sweep(labels, probs)
    return float(table.loc[(table["sensitivity"] + table["specificity"]).idxmax(), "threshold"])


def max_f1(labels: np.ndarray, probs: np.ndarray) -> float:
    table = sweep(labels, probs)
    return float(table.loc[table["f1"].fillna(-1).idxmax(), "threshold"])


def for_sensitivity(labels: np.ndarray, probs: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity is still >= target (the fewest false alarms)."""
    table = sweep(labels, probs)
    ok = table[table["sensitivity"] >= target]
    return float(ok["threshold"].max()) if len(ok) else 0.0


def min_cost(labels: np.ndarray, probs: np.ndarray, cost_fn: float, cost_fp: float,
             prevalence: float | None = None) -> float:
    """Threshold with the lowest expected cost per patient, at the data's or a given prevalence."""
    table = sweep(labels, probs)
    p = float(np.mean(labels)) if prevalence is None else prevalence
    cost = cost_fn * p * (1 - table["sensitivity"]) + cost_fp * (1 - p) * (1 - table["specificity"])
    return float(table.loc[cost.idxmin(), "threshold"])


# --- uncertainty -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _seeded_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """The same resamples for the same (n, seed): a slider move re-uses them instead of redrawing."""
    counts = _resample_counts(n, resamples, np.random.default_rng(seed))
    counts.flags.writeable = False
    return counts


def _resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) how often each item is drawn in each bootstrap resample."""
    draws = rng.integers(0, n, size=(resamples, n))
    flat = (np.arange(resamples)[:, None] * n + draws).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.int32)


def bootstrap_auc(labels: np.ndarray, probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUC of every resample at once (Mann-Whitney with ties counted half), from draw counts."""
    labels, probs = np.asarray(labels).astype(bool), np.asarray(probs, float)
    order = np.argsort(probs, kind="stable")
    sorted_probs = probs[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_probs) != 0])  # groups of tied scores
    c = counts[:, order].astype(float)
    pos = np.add.reduceat(c * labels[order], starts, axis=1)
    neg = np.add.reduceat(c * ~labels[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each group
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _div(wins, pos.sum(axis=1) * neg.sum(axis=1))


def _interval(values: np.ndarray) -> list[float]:
    return list(np.nanpercentile(values, [2.5, 97.5])) if np.isfinite(values).any() else [np.nan, np.nan]


def auc_interval(labels: np.ndarray, probs: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the AUC. It does not depend on the threshold: compute it once."""
    labels, probs = np.asarray(labels).astype(bool), np.asarray(probs, float)
    low, high = _interval(bootstrap_auc(labels, probs, _seeded_counts(len(labels), resamples, seed)))
    return low, high


def bootstrap(labels: np.ndarray, probs: np.ndarray, threshold: float, resamples: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """95 % percentile intervals for every threshold metric (rows: metric; columns low, high)."""
    labels, probs = np.asarray(labels).astype(bool), np.asarray(probs, float)
    counts = _seeded_counts(len(labels), resamples, seed)
    predicted = probs >= threshold
    tp = counts @ (labels & predicted)
    fp = counts @ (~labels & predicted)
    tn = counts @ (~labels & ~predicted)
    fn = counts @ (labels & ~predicted)
    rows = {name: _interval(v) for name, v in _from_counts(tp, fp, tn, fn).items()}
    return pd.DataFrame(rows, index=["low", "high"]).T


def paired_auc_test(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, resamples: int = 2000,
                    seed: int = 0) -> tuple[float, tuple[float, float], float]:
    """AUC(a) - AUC(b) on the same images, its 95 % interval and a two-sided bootstrap p-value."""
    counts = _seeded_counts(len(labels), resamples, seed)
    diff = bootstrap_auc(labels, probs_a, counts) - bootstrap_auc(labels, probs_b, counts)
    diff = diff[np.isfinite(diff)]
    observed = float(roc_auc_score(labels, probs_a) - roc_auc_score(labels, probs_b))
    p = min(1.0, 2 * min(np.mean(diff <= 0), np.mean(diff >= 0))) if len(diff) else float("nan")
    low, high = np.percentile(diff, [2.5, 97.5]) if len(diff) else (np.nan, np.nan)
    return observed, (float(low), float(high)), float(p)


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """Reliability diagram points (mean predicted, observed share) and the Brier score."""
    observed, predicted = calibration_curve(labels, probs, n_bins=bins, strategy="uniform")
    return predicted, observed, float(brier_score_loss(labels, probs))


STRATEGIES = ("manual", "Youden's J", "max F1", "target sensitivity", "min expected cost")


def choose_threshold(strategy: str, labels: np.ndarray, probs: np.ndarray, manual: float = 0.5,
                     target_sensitivity: float = 0.95, cost_ratio: float = 5.0,
                     prevalence: float | None = None) -> float:
    """A threshold by name. Non-manual ones are meant to be chosen on validation, used on test.

    ``cost_ratio`` is the cost of a missed pneumonia over the cost of a false alarm.
    """
    if strategy == "manual" or len(np.unique(labels)) < 2:
        return manual
    if strategy == "Youden's J":
        return youden(labels, probs)
    if strategy == "max F1":
        return max_f1(labels, probs)
    if strategy == "target sensitivity":
        return for_sensitivity(labels, probs, target_sensitivity)
    if strategy == "min expected cost":
        return min_cost(labels, probs, cost_fn=cost_ratio, cost_fp=1.0, prevalence=prevalence)
    raise ValueError(f"unknown threshold strategy {strategy!r}")

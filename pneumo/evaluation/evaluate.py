"""Evaluating a run from its stored predictions: the threshold chosen on validation, what it gives
on a split, the misclassified images, and runs compared on the same images.

Everything the Evaluate page shows is computed here from ``predictions.csv`` tables
(``split, id, label, prob, patient``), so the page only draws and the bench times what the page
runs. The work splits in two: what does not move with the threshold (``threshold_free``,
computed once per run and split) and what does (``at_threshold``, on every slider move).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pneumo.evaluation import metrics

RESAMPLES = 1000
METRIC_TITLES = {"auc": "AUC", "ppv": "PPV (precision)", "npv": "NPV", "f1": "F1", "mcc": "MCC",
                 "balanced_accuracy": "balanced accuracy"}
# The four cells of the confusion matrix: (true label, called pneumonia).
CELLS = {"missed pneumonia (false negatives)": (1, False), "false alarms (false positives)": (0, True),
         "caught pneumonia (true positives)": (1, True), "correct all-clear (true negatives)": (0, False)}


@dataclass(frozen=True)
class ThresholdRule:
    """How a run's threshold is set: by hand, or by a strategy chosen on its validation split."""

    strategy: str = "manual"
    manual: float = 0.5
    target_sensitivity: float = 0.95
    cost_ratio: float = 5.0  # cost of a missed pneumonia over the cost of a false alarm

    def threshold(self, predictions: pd.DataFrame) -> float:
        """The threshold for a run. Strategies look only at validation: choosing it on test would
        flatter the model."""
        val = on_split(predictions, "val")
        return metrics.choose_threshold(self.strategy, val["label"].to_numpy(), val["prob"].to_numpy(),
                                        manual=self.manual, target_sensitivity=self.target_sensitivity,
                                        cost_ratio=self.cost_ratio)


def on_split(predictions: pd.DataFrame, split: str) -> pd.DataFrame:
    return predictions[predictions["split"] == split]


@dataclass(frozen=True)
class ThresholdFree:
    """What does not depend on the threshold, for one run and split."""

    curves: metrics.Curves
    auc_interval: tuple[float, float]
    sweep: pd.DataFrame  # every metric at 201 thresholds


def threshold_free(labels: np.ndarray, probs: np.ndarray) -> ThresholdFree:
    return ThresholdFree(metrics.curves(labels, probs), metrics.auc_interval(labels, probs, RESAMPLES),
                         metrics.sweep(labels, probs, np.linspace(0, 1, 201)))


@dataclass(frozen=True)
class AtThreshold:
    """One run on one split at one threshold: counts, metrics, and the table the page shows."""

    threshold: float
    confusion: metrics.Confusion
    values: dict[str, float]
    table: pd.DataFrame  # metric, value, 95 % interval (AUC first)


def at_threshold(labels: np.ndarray, probs: np.ndarray, threshold: float, fixed: ThresholdFree) -> AtThreshold:
    """Every threshold metric with its bootstrap interval (the same resamples on every move)."""
    confusion = metrics.confusion(labels, probs, threshold)
    values = confusion.metrics()
    intervals = metrics.bootstrap(labels, probs, threshold, resamples=RESAMPLES)
    intervals.loc["auc"] = fixed.auc_interval
    rows = [("auc", fixed.curves.auc)] + [(name, values[name]) for name in metrics.METRIC_NAMES]
    table = pd.DataFrame([{"metric": METRIC_TITLES.get(key, key), "value": round(value, 3),
                           "95 % interval": f"{intervals.loc[key, 'low']:.3f} – {intervals.loc[key, 'high']:.3f}"}
                          for key, value in rows])
    return AtThreshold(threshold, confusion, values, table)


def errors(predictions: pd.DataFrame, threshold: float, cell: str) -> pd.DataFrame:
    """The predictions in one cell of the confusion matrix, the most confident first."""
    label, called = CELLS[cell]
    chosen = predictions[(predictions["label"] == label) & ((predictions["prob"] >= threshold) == called)]
    return chosen.sort_values("prob", ascending=not called)


def comparison(predictions: dict[str, pd.DataFrame], thresholds: dict[str, float], split: str
               ) -> tuple[dict[str, metrics.Curves], pd.DataFrame]:
    """Each named run's curves on ``split`` and one row of metrics at its own threshold."""
    curves, rows = {}, []
    for name, frame in predictions.items():
        part = on_split(frame, split)
        curves[name] = c = metrics.curves(part["label"], part["prob"])
        values = metrics.confusion(part["label"], part["prob"], thresholds[name]).metrics()
        rows.append({"run": name, "threshold": round(thresholds[name], 3), "AUC": round(c.auc, 3),
                     **{METRIC_TITLES.get(k, k): round(values[k], 3)  # the names the metrics table uses
                        for k in ("sensitivity", "specificity", "ppv", "f1", "mcc")}})
    return curves, pd.DataFrame(rows)


@dataclass(frozen=True)
class Paired:
    """AUC(a) - AUC(b) on the images both runs scored."""

    images: int
    difference: float
    interval: tuple[float, float]
    p: float

    def sentence(self, a: str, b: str, split: str) -> str:
        low, high = self.interval
        verdict = ("so the difference could well be chance" if self.p >= 0.05 else
                   "so a difference this large would rarely arise by chance")
        return (f"On the same {self.images} {split} images, **{a}** has an AUC {abs(self.difference):.3f} "
                f"{'higher' if self.difference >= 0 else 'lower'} than **{b}** (95 % interval of the difference "
                f"{low:+.3f} to {high:+.3f}; paired bootstrap p {_p_value(self.p)}), {verdict}.")


def _p_value(p: float) -> str:
    """"= 0.042", or "< 0.001" for a p under that: a bootstrap p of 0 means none of its resamples
    crossed zero, not that the chance is nil."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def paired(a: pd.DataFrame, b: pd.DataFrame, split: str) -> Paired | None:
    """The paired bootstrap test of two runs on the images of ``split`` they share, matched by id;
    None when they share none, or only images of one class."""
    a, b = on_split(a, split).set_index("id"), on_split(b, split).set_index("id")
    common = a.index.intersection(b.index)
    if not len(common) or a.loc[common, "label"].nunique() < 2:
        return None
    diff, interval, p = metrics.paired_auc_test(a.loc[common, "label"].to_numpy(), a.loc[common, "prob"].to_numpy(),
                                                b.loc[common, "prob"].to_numpy())
    return Paired(len(common), diff, interval, p)

"""Bench: server time of one threshold-slider move on the Evaluate page, for 624 predictions.

    python bench/evaluate_speed.py [--repeats 20]

Times the functions the page itself calls. On a slider move the page runs
``evaluate.at_threshold`` (confusion matrix, every metric and its 1,000-resample bootstrap
interval) and ``charts.threshold_view`` (all four Plotly figures); ``evaluate.threshold_free``
(curves, AUC interval, sweep) runs once per run and split, as the page caches it,
and its time is printed too. Baseline, same run: the bootstrap done the obvious way, one
scikit-learn call per resample. Goal: <= 100 ms per move.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn import metrics as sk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumo import charts
from pneumo.evaluation import evaluate


def slider_move(labels: np.ndarray, probs: np.ndarray, threshold: float, fixed: evaluate.ThresholdFree) -> None:
    """What the page recomputes when the threshold moves, figures included."""
    at = evaluate.at_threshold(labels, probs, threshold, fixed)
    charts.threshold_view("run", at, fixed)


def naive_bootstrap(labels: np.ndarray, probs: np.ndarray, threshold: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(1000):
        idx = rng.integers(0, len(labels), len(labels))
        sk.roc_auc_score(labels[idx], probs[idx])
        sk.confusion_matrix(labels[idx], probs[idx] >= threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = (np.arange(624) < 390).astype(int)  # the Kermany test split: 390 pneumonia, 234 normal
    probs = np.clip(rng.normal(0.3 + 0.45 * labels, 0.2), 0, 1)
    start = time.perf_counter()
    cached = evaluate.threshold_free(labels, probs)
    first = time.perf_counter() - start
    slider_move(labels, probs, 0.5, cached)  # warm-up (plotly templates)
    times = []
    for i in range(args.repeats):
        start = time.perf_counter()
        slider_move(labels, probs, 0.2 + 0.6 * i / args.repeats, cached)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    naive_bootstrap(labels, probs, 0.5)
    naive = time.perf_counter() - start
    median = statistics.median(times)
    print(f"{'step (624 predictions)':<52}{'ms':>10}")
    print(f"{'first view of a split (curves, AUC interval, sweep)':<52}{1000 * first:>10.1f}")
    print(f"{'slider move, figures included (median)':<52}{1000 * median:>10.1f}")
    print(f"{'slider move, slowest of ' + str(args.repeats):<52}{1000 * max(times):>10.1f}")
    print(f"{'baseline: bootstrap alone, one sklearn call per resample':<52}{1000 * naive:>10.1f}")
    print(f"whole move is {naive / median:.0f}x faster than the naive bootstrap alone; "
          f"goal <= 100 ms ({'met' if median <= 0.1 else 'MISSED'})")


if __name__ == "__main__":
    main()

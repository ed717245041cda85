"""Every metric and curve against scikit-learn, on random and edge-case inputs."""

import numpy as np
import pytest
from sklearn import metrics as sk

from pneumo.evaluation import metrics


def _random(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.6).astype(int)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    if ties:
        probs = np.round(probs, 1)
    return labels, probs


CASES = [_random(0), _random(1, ties=True), _random(2, n=40)]


@pytest.mark.parametrize(("labels", "probs"), CASES)
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.71, 1.0])
def test_threshold_metrics_match_sklearn(labels, probs, threshold) -> None:
    predicted = (probs >= threshold).astype(int)
    got = metrics.confusion(labels, probs, threshold)
    tn, fp, fn, tp = sk.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    assert (got.tp, got.fp, got.tn, got.fn) == (tp, fp, tn, fn)
    m = got.metrics()
    assert m["sensitivity"] == pytest.approx(sk.recall_score(labels, predicted, zero_division=np.nan), nan_ok=True)
    assert m["ppv"] == pytest.approx(sk.precision_score(labels, predicted, zero_division=np.nan), nan_ok=True)
    assert m["f1"] == pytest.approx(sk.f1_score(labels, predicted, zero_division=np.nan), nan_ok=True)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert m["mcc"] == pytest.approx(sk.matthews_corrcoef(labels, predicted))
    specificity = sk.recall_score(1 - labels, 1 - predicted, zero_division=np.nan)
    assert m["specificity"] == pytest.approx(specificity, nan_ok=True)
    if not np.isnan(m["sensitivity"]) and not np.isnan(m["specificity"]):
        assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(labels, predicted))


@pytest.mark.parametrize(("labels", "probs"), CASES)
def test_sweep_equals_confusion_at_each_threshold(labels, probs) -> None:
    table = metrics.sweep(labels, probs)
    for _, row in table.sample(min(20, len(table)), random_state=0).iterrows():
        c = metrics.confusion(labels, probs, row["threshold"])
        assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (c.tp, c.fp, c.tn, c.fn)
    assert table.iloc[0]["sensitivity"] == 1.0 and table.iloc[-1]["sensitivity"] == 0.0


@pytest.mark.parametrize(("labels", "probs"), CASES)
def test_curves_and_aucs_match_sklearn(labels, probs) -> None:
    c = metrics.curves(labels, probs)
    assert c.auc == pytest.approx(sk.roc_auc_score(labels, probs))
    assert c.average_precision == pytest.approx(sk.average_precision_score(labels, probs))
    fpr, tpr, _ = sk.roc_curve(labels, probs)
    np.testing.assert_allclose(c.fpr, fpr)
    np.testing.assert_allclose(c.tpr, tpr)


def test_all_one_class_gives_nan_auc_not_a_crash() -> None:
    labels, probs = np.ones(10, int), np.linspace(0, 1, 10)
    assert np.isnan(metrics.curves(labels, probs).auc)
    m = metrics.confusion(labels, probs, 0.5).metrics()
    assert m["sensitivity"] == 0.5 and np.isnan(m["specificity"]) and m["mcc"] == 0.0


@pytest.mark.parametrize(("labels", "probs"), CASES)
def test_bootstrap_auc_equals_sklearn_on_each_resample(labels, probs) -> None:
    counts = metrics._resample_counts(len(labels), 25, np.random.default_rng(3))
    fast = metrics.bootstrap_auc(labels, probs, counts)
    for b in range(25):
        idx = np.repeat(np.arange(len(labels)), counts[b])
        assert fast[b] == pytest.approx(sk.roc_auc_score(labels[idx], probs[idx]))


def test_bootstrap_intervals_contain_the_point_estimate_and_narrow_with_n() -> None:
    labels, probs = _random(5, n=600)
    ci = metrics.bootstrap(labels, probs, 0.5, resamples=1000)
    point = metrics.confusion(labels, probs, 0.5).metrics()
    low, high = metrics.auc_interval(labels, probs)
    assert low < sk.roc_auc_score(labels, probs) < high
    assert ci.loc["sensitivity", "low"] < point["sensitivity"] < ci.loc["sensitivity", "high"]
    assert ci.loc["mcc", "low"] < point["mcc"] < ci.loc["mcc", "high"]
    small_low, small_high = metrics.auc_interval(*_random(5, n=60))
    assert small_high - small_low > high - low


def test_strategies_on_constructed_cases() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.65, 0.5, 0.7, 0.8, 0.9, 0.95])
    assert metrics.youden(labels, probs) == pytest.approx(0.7)  # J = 0.8 there, 0.75 at 0.5
    assert metrics.max_f1(labels, probs) == pytest.approx(0.5)  # F1 = 10/11 there, 8/9 at 0.7
    assert metrics.for_sensitivity(labels, probs, 1.0) == pytest.approx(0.5)
    assert metrics.for_sensitivity(labels, probs, 0.8) == pytest.approx(0.7)
    # missing pneumonia costs 100x a false alarm: call everyone down to the lowest positive
    assert metrics.min_cost(labels, probs, cost_fn=100, cost_fp=1) == pytest.approx(0.5)
    # false alarms cost 100x: flag nobody wrongly
    assert metrics.min_cost(labels, probs, cost_fn=1, cost_fp=100) == pytest.approx(0.7)


def test_prevalence_shift_uses_bayes() -> None:
    ppv, npv = metrics.at_prevalence(0.9, 0.8, 0.1)
    assert ppv == pytest.approx(0.09 / (0.09 + 0.18))
    assert npv == pytest.approx(0.72 / (0.72 + 0.01))


def test_paired_test_detects_a_real_difference_and_not_a_fake_one() -> None:
    labels, good = _random(7, n=400)
    rng = np.random.default_rng(1)
    noisy = np.clip(good + rng.normal(0, 0.4, len(good)), 0, 1)
    diff, (low, high), p = metrics.paired_auc_test(labels, good, noisy)
    assert low < diff < high
    assert diff > 0 and low > 0 and p < 0.01
    _, _, same = metrics.paired_auc_test(labels, good, good + 1e-9)
    assert same == 1.0


def test_calibration_and_brier() -> None:
    labels, probs = _random(9)
    predicted, observed, brier = metrics.calibration(labels, probs)
    assert brier == pytest.approx(sk.brier_score_loss(labels, probs))
    assert len(predicted) == len(observed) <= 10

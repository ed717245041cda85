"""ECE and temperature scaling against cases worked out by hand (the numbers are in the comments)."""

import math
from dataclasses import replace

import numpy as np
import pytest
from sklearn import metrics as sk

from pneumo.evaluation import calibration, metrics


def test_ece_by_hand_three_bins() -> None:
    # bins [0, 1/3], (1/3, 2/3], (2/3, 1]
    #   0.1 0.2 0.3 | labels 0 0 1: mean 0.2,  observed 1/3, gap 2/15, 3 of 8 predictions
    #   0.4 0.6     | labels 0 1:   mean 0.5,  observed 1/2, gap 0,    2 of 8
    #   0.7 0.9 1.0 | labels 1 1 0: mean 13/15, observed 2/3 = 10/15, gap 3/15, 3 of 8 (1.0 in the last bin)
    # ECE = 3/8 * 2/15 + 0 + 3/8 * 3/15 = 3/8 * 1/3 = 1/8
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9, 1.0])
    labels = np.array([0, 0, 1, 0, 1, 1, 1, 0])
    assert calibration.expected_calibration_error(labels, probs, bins=3) == pytest.approx(0.125)


def test_ece_puts_a_probability_on_an_edge_in_the_lower_bin() -> None:
    # two bins [0, 0.5], (0.5, 1]: 0.5 goes with 0.2 and 0.4
    #   0.2 0.4 0.5 | labels 0 1 0: mean 1.1/3, observed 1/3, gap 0.1/3, 3 of 4 -> 0.025
    #   0.8         | label 1:      mean 0.8,   observed 1,   gap 0.2,   1 of 4 -> 0.05
    # ECE = 0.075 (it would be 0.175 were 0.5 in the upper bin)
    probs, labels = np.array([0.2, 0.4, 0.5, 0.8]), np.array([0, 1, 0, 1])
    assert calibration.expected_calibration_error(labels, probs, bins=2) == pytest.approx(0.075)


def test_ece_is_the_weighted_gap_of_the_drawn_reliability_points() -> None:
    rng = np.random.default_rng(4)
    probs = np.round(rng.random(500), 1)  # many on bin edges
    labels = (rng.random(500) < probs ** 2).astype(int)
    predicted, observed, _ = metrics.calibration(labels, probs)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], probs), minlength=10)
    expected = np.sum(counts[counts > 0] * np.abs(observed - predicted)) / len(probs)
    assert calibration.expected_calibration_error(labels, probs) == pytest.approx(expected)


def test_ece_is_zero_when_every_bin_is_right() -> None:
    # 0.25 four times with one positive, 0.75 four times with three: observed = predicted in both bins
    probs = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert calibration.expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("share", "expected"), [(0.75, 2 / math.log(3)), (0.6, 2 / math.log(1.5))])
def test_temperature_with_a_known_optimum(share: float, expected: float) -> None:
    # Every logit is 2; a share q of the labels is 1. The NLL -[q log s(2/T) + (1-q) log(1 - s(2/T))]
    # is least where s(2/T) = q, i.e. T = 2 / logit(q): q = 0.75 -> 2 / ln 3 = 1.8205,
    # q = 0.6 -> 2 / ln 1.5 = 4.9326.
    n = 20
    labels = (np.arange(n) < share * n).astype(int)
    probs = np.full(n, 1 / (1 + math.exp(-2)))
    assert calibration.fit_temperature(labels, probs) == pytest.approx(expected, abs=1e-3)


def test_temperature_is_one_when_nothing_can_be_fitted() -> None:
    assert calibration.fit_temperature(np.ones(10, int), np.linspace(0.1, 0.9, 10)) == 1.0
    assert calibration.fit_temperature(np.array([1]), np.array([0.7])) == 1.0
    assert calibration.fit_temperature(np.array([], int), np.array([])) == 1.0


def test_temperature_one_leaves_probabilities_unchanged() -> None:
    probs = np.array([1e-6, 0.01, 0.2, 0.5, 0.73, 0.99, 1 - 1e-6])
    np.testing.assert_allclose(calibration.apply_temperature(probs, 1.0), probs, rtol=1e-9, atol=1e-12)
    # 0 and 1 are clipped to 1e-7 and 1 - 1e-7 before the logit
    np.testing.assert_allclose(calibration.apply_temperature(np.array([0.0, 1.0]), 1.0), [0, 1], atol=2e-7)


def test_temperature_by_hand() -> None:
    # logit(0.8) = ln 4; divided by T = 2: ln 2, and sigmoid(ln 2) = 2/3. logit(0.5) = 0 stays 0.5.
    # logit(0.2) = -ln 4 -> 1/3 (symmetric). With T = 1/2: 2 ln 4 = ln 16 -> 16/17.
    np.testing.assert_allclose(calibration.apply_temperature(np.array([0.8, 0.5, 0.2]), 2.0), [2 / 3, 0.5, 1 / 3])
    assert calibration.apply_temperature(np.array([0.8]), 0.5)[0] == pytest.approx(16 / 17)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True logits ~ N(0, 2) and labels drawn from Bernoulli(sigmoid(logit))."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return logits, labels


def test_a_calibrated_model_gets_a_temperature_near_one() -> None:
    # The MLE of 1/T has a standard error of about 1/sqrt(n * E[z^2 p (1 - p)]) ~ 0.011 at n = 20 000:
    # 0.05 is more than four of them.
    logits, labels = _synthetic(20_000, 0)
    probs = 1 / (1 + np.exp(-logits))
    assert calibration.fit_temperature(labels, probs) == pytest.approx(1.0, abs=0.05)


def test_an_over_confident_model_gets_a_temperature_near_three() -> None:
    # logits tripled: the fit should divide them by about 3 (standard error ~ 0.03).
    logits, labels = _synthetic(20_000, 1)
    probs = 1 / (1 + np.exp(-3 * logits))
    temperature = calibration.fit_temperature(labels, probs)
    assert temperature == pytest.approx(3.0, abs=0.15)
    scaled = calibration.apply_temperature(probs, temperature)
    ece = calibration.expected_calibration_error
    assert ece(labels, scaled) < ece(labels, probs) / 3  # and the calibration error shrinks with it


def test_scaling_keeps_the_auc_and_the_calls_at_the_mapped_threshold() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random(300) < 0.6).astype(int)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.001, 0.999)
    for temperature in (0.4, 1.7, 3.0):
        scaled = calibration.apply_temperature(probs, temperature)
        assert sk.roc_auc_score(labels, scaled) == pytest.approx(sk.roc_auc_score(labels, probs))
        for threshold in (0.2, 0.5, 0.83):
            mapped = calibration.apply_temperature(np.array([threshold]), temperature)[0]
            assert np.array_equal(scaled >= mapped, probs >= threshold)


def test_workbench_by_hand() -> None:
    # validation: every probability sigmoid(2), 3 in 4 positive -> T = 2 / ln 3 = 1.8205 (as above),
    # so a scaled probability is sigmoid(logit(p) * ln 3 / 2), ln 3 / 2 = 0.549306:
    #   0.2: logit -1.386294 -> -0.761500 -> 0.31832     0.6: 0.405465 -> 0.222727 -> 0.55545
    #   0.7: 0.847298 -> 0.465426 -> 0.61430             0.9: 2.197225 -> 1.206949 -> 0.76976
    # threshold 0.65: logit 0.619039 -> 0.340041 -> mapped threshold 0.58420
    val_labels, val_probs = np.array([1, 1, 1, 0] * 5), np.full(20, 1 / (1 + math.exp(-2)))
    test_labels, test_probs = np.array([0, 0, 1, 1]), np.array([0.2, 0.6, 0.7, 0.9])
    bench = calibration.workbench(val_labels, val_probs, test_labels, test_probs, 0.65)
    assert bench.fitted and bench.temperature == pytest.approx(1.8205, abs=1e-3)
    assert bench.threshold == 0.65 and bench.mapped_threshold == pytest.approx(0.58420, abs=1e-4)
    raw, same, moved = (bench.table.loc[row] for row in calibration.ROWS)
    # raw at 0.65: 0.7 and 0.9 called -> both positives caught, both negatives clear
    assert (raw["sensitivity"], raw["specificity"], raw["accuracy"]) == (1.0, 1.0, 1.0)
    # scaled at the same 0.65: only 0.76976 called -> sensitivity 1/2, specificity 1, accuracy 3/4
    assert same["threshold"] == 0.65
    assert (same["sensitivity"], same["specificity"], same["accuracy"]) == (0.5, 1.0, 0.75)
    # scaled at the mapped 0.58420: 0.61430 and 0.76976 called, as raw
    assert moved["threshold"] == pytest.approx(0.58420, abs=1e-4)
    assert (moved["sensitivity"], moved["specificity"], moved["accuracy"]) == (1.0, 1.0, 1.0)
    # raw: gaps to the labels 0.2, 0.6, 0.3, 0.1. Brier (0.04 + 0.36 + 0.09 + 0.01) / 4 = 0.125;
    # each probability alone in its bin of ten, so ECE = mean gap = 1.2 / 4 = 0.3
    assert raw["Brier"] == pytest.approx(0.125) and raw["ECE"] == pytest.approx(0.3)
    # scaled: gaps 0.31832, 0.55545, 0.38570, 0.23024, again one per bin (0.3-0.4, 0.5-0.6, 0.6-0.7, 0.7-0.8).
    # Brier (0.101328 + 0.308527 + 0.148764 + 0.053011) / 4 = 0.15291; ECE 1.48971 / 4 = 0.37243
    assert same["Brier"] == pytest.approx(0.15291, abs=1e-4) and same["ECE"] == pytest.approx(0.37243, abs=1e-4)
    assert moved["Brier"] == same["Brier"] and moved["ECE"] == same["ECE"]
    assert bench.before.ece == raw["ECE"] and bench.after.brier == same["Brier"]
    assert "over-confident" in bench.sentence() and "T = 1.82" in bench.sentence()


def test_workbench_without_two_validation_classes_fits_nothing() -> None:
    bench = calibration.workbench(np.ones(5, int), np.full(5, 0.9), np.array([0, 1, 1]), np.array([0.3, 0.6, 0.8]),
                                  0.5)
    assert not bench.fitted and bench.temperature == 1.0 and bench.mapped_threshold == 0.5
    assert bench.after.ece == bench.before.ece and "both classes" in bench.sentence()
    empty = calibration.workbench(np.array([], int), np.array([]), np.array([0, 1]), np.array([0.3, 0.6]), 0.5)
    assert not empty.fitted


def test_sentence_says_which_way_the_probabilities_move() -> None:
    logits, labels = _synthetic(5000, 3)
    soft = 1 / (1 + np.exp(-logits / 2))  # logits halved: under-confident, T near 1/2
    under = calibration.workbench(labels, soft, labels, soft, 0.5)
    assert under.temperature == pytest.approx(0.5, abs=0.05) and "under-confident" in under.sentence()
    assert "barely" in replace(under, temperature=1.004).sentence()
    assert "over-confident" in replace(under, temperature=1.3).sentence()

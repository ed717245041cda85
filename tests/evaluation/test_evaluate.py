"""Evaluating runs from their predictions tables: thresholds chosen on validation only, the metric
table, the error cells, comparisons and the paired test."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pneumo.evaluation import evaluate, metrics
from pneumo.evaluation.evaluate import ThresholdRule


def _predictions(seed: int, shift: float = 0.0, ids: str = "") -> pd.DataFrame:
    """val and test predictions; ``shift`` moves only the test probabilities."""
    rng = np.random.default_rng(seed)
    frames = []
    for split, n, offset in (("val", 120, 0.0), ("test", 200, shift)):
        labels = (np.arange(n) % 5 < 3).astype(int)
        probs = np.clip(0.3 + 0.35 * labels + offset + rng.normal(0, 0.15, n), 0, 1)
        frames.append(pd.DataFrame({"split": split, "id": [f"{ids}{split}/{i}" for i in range(n)], "label": labels,
                                    "prob": probs, "patient": [f"p{i}" for i in range(n)]}))
    return pd.concat(frames, ignore_index=True)


def test_strategies_look_only_at_validation() -> None:
    base, shifted = _predictions(0), _predictions(0, shift=0.3)  # same val, test moved
    val = evaluate.on_split(base, "val")
    rule = ThresholdRule("Youden's J")
    assert rule.threshold(base) == rule.threshold(shifted) == metrics.youden(val["label"], val["prob"])
    assert ThresholdRule("manual", manual=0.37).threshold(base) == 0.37
    sensitive = ThresholdRule("target sensitivity", target_sensitivity=0.9).threshold(base)
    assert metrics.confusion(val["label"], val["prob"], sensitive).metrics()["sensitivity"] >= 0.9


def test_metric_table_at_a_threshold() -> None:
    test = evaluate.on_split(_predictions(1), "test")
    labels, probs = test["label"].to_numpy(), test["prob"].to_numpy()
    fixed = evaluate.threshold_free(labels, probs)
    at = evaluate.at_threshold(labels, probs, 0.5, fixed)
    table = at.table.set_index("metric")
    assert list(table.index[:2]) == ["AUC", "sensitivity"]
    assert table.loc["AUC", "value"] == round(roc_auc_score(labels, probs), 3)
    tp = int(((probs >= 0.5) & (labels == 1)).sum())
    assert table.loc["sensitivity", "value"] == round(tp / labels.sum(), 3) and at.confusion.tp == tp
    low, high = (float(v) for v in table.loc["sensitivity", "95 % interval"].split(" – "))
    assert low <= table.loc["sensitivity", "value"] <= high


def test_error_cells_most_confident_first() -> None:
    test = evaluate.on_split(_predictions(2), "test")
    missed = evaluate.errors(test, 0.5, "missed pneumonia (false negatives)")
    assert (missed["label"] == 1).all() and (missed["prob"] < 0.5).all()
    assert missed["prob"].is_monotonic_increasing  # the surest "normal" call first
    alarms = evaluate.errors(test, 0.5, "false alarms (false positives)")
    assert (alarms["label"] == 0).all() and alarms["prob"].is_monotonic_decreasing
    total = sum(len(evaluate.errors(test, 0.5, cell)) for cell in evaluate.CELLS)
    assert total == len(test)


def test_comparison_uses_each_runs_own_threshold() -> None:
    frames = {"a": _predictions(3), "b": _predictions(4)}
    curves, table = evaluate.comparison(frames, {"a": 0.2, "b": 0.8}, "test")
    assert list(table["run"]) == ["a", "b"] and list(table["threshold"]) == [0.2, 0.8]
    assert table.loc[0, "sensitivity"] > table.loc[1, "sensitivity"]
    assert curves["a"].auc == pytest.approx(roc_auc_score(*(evaluate.on_split(frames["a"], "test")[c]
                                                           for c in ("label", "prob"))))


def test_paired_test_on_shared_images_only() -> None:
    good, bad = _predictions(5), _predictions(6)
    bad["prob"] = np.random.default_rng(0).random(len(bad))  # no skill
    result = evaluate.paired(good, bad, "test")
    assert result is not None and result.images == 200 and result.difference > 0 and result.p < 0.05
    assert "higher than **bad**" in result.sentence("good", "bad", "test")
    assert "rarely arise by chance" in result.sentence("good", "bad", "test")
    assert evaluate.paired(good, _predictions(7, ids="other-"), "test") is None  # no image in common
    one_class = good[good["label"] == 1]
    assert evaluate.paired(one_class, one_class, "test") is None


def test_a_bootstrap_p_of_zero_reads_as_under_one_in_a_thousand() -> None:
    sentence = evaluate.Paired(624, 0.05, (0.03, 0.07), 0.0).sentence("a", "b", "test")
    assert "p < 0.001" in sentence and "p = 0.000" not in sentence
    assert "p = 0.042" in evaluate.Paired(624, 0.01, (-0.01, 0.03), 0.042).sentence("a", "b", "test")

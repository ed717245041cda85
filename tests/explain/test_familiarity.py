"""The out-of-distribution check on features: a film from another set is flagged, one of the same
set rarely is; the stored summary reloads unchanged."""

from pathlib import Path

import numpy as np
import pytest

from pneumo.explain.familiarity import WARN_PERCENTILE, Familiarity, sentence


def _features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Correlated features, as pooled CNN features are."""
    mixing = np.random.default_rng(0).normal(size=(32, 32)) / 6
    return rng.normal(size=(n, 32)) @ mixing + shift


def test_held_out_films_pass_and_another_set_is_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    familiarity = Familiarity.fit(_features(rng, 600), _features(rng, 200))
    same = familiarity.distance(_features(rng, 500))
    other = familiarity.distance(_features(rng, 100, shift=1.5))
    flagged_same = np.mean([familiarity.unfamiliar(d) for d in same])
    flagged_other = np.mean([familiarity.unfamiliar(d) for d in other])
    assert flagged_same < 0.05 and flagged_other > 0.95
    path = tmp_path / "familiarity.npz"
    familiarity.save(path)
    again, probe = Familiarity.load(path), _features(rng, 5, shift=1.0)
    np.testing.assert_array_equal(again.distance(probe), familiarity.distance(probe))
    assert familiarity.percentile(0.0) == 0 and familiarity.percentile(1e9) == 100


def test_distance_is_mahalanobis() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(5000, 3)) * [1.0, 2.0, 4.0]
    familiarity = Familiarity.fit(train, train[:100])
    # One standard deviation along any axis is a distance of about 1, whatever the axis' scale.
    for axis, scale in enumerate((1.0, 2.0, 4.0)):
        point = np.zeros(3)
        point[axis] = scale
        assert familiarity.distance(point)[0] == pytest.approx(1.0, abs=0.05)


def test_sentence_warns_only_above_the_percentile() -> None:
    familiarity = Familiarity(np.zeros(2), np.eye(2), np.linspace(0, 10, 101))
    assert "unlike the films" in sentence(11.0, familiarity, "synthetic")
    assert "within the range" in sentence(5.0, familiarity, "synthetic")
    assert familiarity.percentile(9.85) <= WARN_PERCENTILE < familiarity.percentile(10.5)

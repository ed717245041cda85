"""The out-of-distribution check on features: a film from another set is flagged, one of the same
set rarely is; the stored summary reloads unchanged."""

from pathlib import Path

import numpy as np
import pytest

from pneumo.explain.familiarity import WARN_PERCENTILE, Familiarity, sentence
from tests.conftest import REAL_CHEST_XRAY


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


@pytest.mark.skipif(not REAL_CHEST_XRAY.is_dir(), reason="real data not present (../shared/data)")
def test_real_films_are_unfamiliar_to_a_model_trained_on_drawn_ones(trained_cnn: Path, synthetic_test_films,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """The case that prompted the check: a synthetic-trained CNN scores real films, NORMAL ones
    included, as pneumonia; the check flags nearly all of them, and few held-out drawn films."""
    from pneumo.data import cache, synthetic
    from pneumo.data.sources import FolderSource
    from pneumo.explain.model_file import load_file
    from pneumo.explain.predictor import Predictor

    predictor = Predictor(load_file(trained_cnn))
    cases = synthetic.cases(0)
    train = np.stack([synthetic.draw(c, 64)[0] for c in cases if c.split == "train"][:900])
    val = np.stack([synthetic.draw(c, 64)[0] for c in cases if c.split == "val"])
    summary = Familiarity.fit(predictor.features(train), predictor.features(val))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PNEUMO_CACHE", str(tmp_path_factory.mktemp("real-cache")))
        real = cache.load(FolderSource(REAL_CHEST_XRAY), 64)
    test = np.asarray(real.images[(real.records["split"] == "test").to_numpy()])
    def flagged(films: np.ndarray) -> float:
        return float(np.mean([summary.unfamiliar(d) for d in summary.distance(predictor.features(films))]))

    real_flagged, drawn_flagged = flagged(test), flagged(synthetic_test_films[0])
    assert real_flagged > 0.9 and drawn_flagged < 0.1, (real_flagged, drawn_flagged)

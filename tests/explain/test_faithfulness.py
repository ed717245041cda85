"""Deletion and insertion on a model whose evidence is known: a map pointing at it beats a random
map, a map pointing elsewhere does not; and the agreement between maps."""

import numpy as np
import pytest

from pneumo.explain import faithfulness
from pneumo.explain.faithfulness import Faithfulness, agreement, agreement_sentence, blurred, curves


@pytest.fixture
def film_and_evidence() -> tuple[np.ndarray, np.ndarray]:
    """A dark film with a bright patch: the patch is all a known "model" looks at."""
    rng = np.random.default_rng(0)
    film = np.clip(rng.normal(60, 10, (48, 48)), 0, 255).astype(np.uint8)
    evidence = np.zeros((48, 48), bool)
    evidence[10:22, 26:40] = True
    film[evidence] = 220
    return film, evidence


def _scorer(evidence: np.ndarray):
    def score(films: np.ndarray) -> np.ndarray:
        contrast = films[:, evidence].mean(axis=1) - films[:, ~evidence].mean(axis=1)
        return 1 / (1 + np.exp(-(contrast - 120) / 15))  # the film: 0.93; its blur: near 0
    return score


def test_a_map_on_the_evidence_beats_a_random_map(film_and_evidence) -> None:
    film, evidence = film_and_evidence
    score = _scorer(evidence)
    right = faithfulness.faithfulness(score, film, evidence.astype(np.float32))
    assert right.better_than_random
    assert right.map.deletion_area < 0.5 * right.random.deletion_area
    assert right.map.insertion_area > right.random.insertion_area + 0.2
    assert "better than a random map" in right.sentence() and "no better" not in right.sentence()
    assert len(right.randoms) == faithfulness.RANDOM_ORDERS
    wrong = faithfulness.faithfulness(score, film, (~evidence).astype(np.float32), randoms=right.randoms)
    assert not wrong.better_than_random and "read it with care" in wrong.sentence()


def test_curves_start_and_end_at_the_film_and_its_blur(film_and_evidence) -> None:
    film, evidence = film_and_evidence
    score = _scorer(evidence)
    c = curves(score, film, faithfulness.random_order(film.size), steps=10)
    full, empty = score(film[None])[0], score(blurred(film)[None])[0]
    assert len(c.shares) == 11 and c.shares[0] == 0 and c.shares[-1] == 1
    assert c.deletion[0] == pytest.approx(full) and c.insertion[-1] == pytest.approx(full)
    assert c.deletion[-1] == pytest.approx(empty) and c.insertion[0] == pytest.approx(empty)
    assert blurred(film).std() < film.std() and abs(blurred(film).mean() - film.mean()) < 10


def test_an_empty_map_gets_no_credit_for_scan_order(film_and_evidence) -> None:
    """A map of zeros ranks every pixel equal; ties must not fall in row order, which here would
    reach the evidence (top rows) early by luck."""
    film, evidence = film_and_evidence
    result = faithfulness.faithfulness(_scorer(evidence), film, np.zeros(film.shape, np.float32))
    assert abs(result.map.difference - result.random.difference) < 0.1


def test_agreement_between_maps() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((16, 16))
    pairs = agreement({"A": a, "B": a * 2, "C": -a})
    assert [(x, y) for x, y, _ in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    assert pairs[0][2] == pytest.approx(1.0) and pairs[1][2] == pytest.approx(-1.0)
    assert [(x, y) for x, y, _ in agreement({"A": a, "empty": np.zeros((16, 16)), "C": -a})] == [("A", "C")]
    assert "agree closely" in agreement_sentence("A", "B", 0.9)
    assert "do not agree" in agreement_sentence("A", "C", -0.2)
    assert isinstance(Faithfulness, type)


def test_grad_cam_of_a_trained_cnn_beats_a_random_map(trained_cnn, synthetic_test_films) -> None:
    """On synthetic pneumonia films, Grad-CAM's order beats a random one: insertion minus deletion
    is higher (measured: +0.06 against -0.00), and deleting its pixels first lowers the probability
    faster on most films. This small CNN calls a blurred film pneumonia too, so insertion alone
    barely moves (0.980 against 0.979)."""
    from pneumo.explain.model_file import load_file
    from pneumo.explain.predictor import Predictor
    from pneumo.explain.saliency import saliency

    predictor = Predictor(load_file(trained_cnn))
    images, labels, _ = synthetic_test_films
    films = images[labels == 1][:12]
    results = [faithfulness.faithfulness(predictor.probabilities, film, saliency(predictor, film, "Grad-CAM"))
               for film in films]
    difference = np.mean([r.map.difference for r in results])
    random_difference = np.mean([r.random.difference for r in results])
    assert difference > random_difference + 0.02, (difference, random_difference)
    assert np.mean([r.map.deletion_area < r.random.deletion_area for r in results]) > 0.5


def test_a_map_level_with_a_random_one_is_not_called_better() -> None:
    """The sentence shows two decimals: "+0.00 against +0.00" must not read "better"."""
    shares = np.linspace(0, 1, 5)

    def flat(deletion: float, insertion: float) -> faithfulness.Curves:
        return faithfulness.Curves(shares, np.full(5, deletion), np.full(5, insertion))

    level = Faithfulness(flat(0.5, 0.504), (flat(0.5, 0.501),))
    assert not level.better_than_random and "no better than a random map" in level.sentence()
    assert Faithfulness(flat(0.4, 0.6), (flat(0.5, 0.5),)).better_than_random


def test_a_map_must_beat_every_random_map_not_their_mean() -> None:
    """A random map's score is a draw (0.07 apart between orders on an untrained dense model): a map
    ahead of the random maps' mean but behind the luckiest is not called better."""
    shares = np.linspace(0, 1, 5)

    def flat(deletion: float, insertion: float) -> faithfulness.Curves:
        return faithfulness.Curves(shares, np.full(5, deletion), np.full(5, insertion))

    randoms = (flat(0.5, 0.47), flat(0.5, 0.48), flat(0.5, 0.53))  # differences -0.03, -0.02, +0.03
    close = Faithfulness(flat(0.5, 0.50), randoms)  # +0.00: ahead of the mean (-0.01), behind +0.03
    assert close.random.difference == pytest.approx(-0.0067, abs=1e-3)
    assert not close.better_than_random
    assert "against -0.01 for a random map (the best of 3 random maps: +0.03): no better" in close.sentence()
    assert Faithfulness(flat(0.5, 0.55), randoms).better_than_random

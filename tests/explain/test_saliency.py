"""Saliency on a really trained CNN: maps are well formed, land on known lesions more than chance,
and pass the model-randomisation sanity check."""

from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pneumo.explain.predictor import Predictor, load_file
from pneumo.explain.saliency import METHODS, outline, overlay, pointing, rank_similarity, saliency
from pneumo.training import models
from pneumo.training.augment import PRESETS
from pneumo.training.config import TrainConfig


@pytest.fixture(scope="module")
def predictor(trained_cnn: Path) -> Predictor:
    return Predictor(load_file(trained_cnn))


def _lesion_films(films, n: int = 16):
    images, labels, masks = films
    chosen = [i for i in np.flatnonzero(labels == 1) if masks[i].any()][:n]
    return images[chosen], masks[chosen]


def test_the_model_learned(predictor: Predictor, synthetic_test_films) -> None:
    images, labels, _ = synthetic_test_films
    probs = [predictor.probability(img) for img in images]
    assert roc_auc_score(labels, probs) > 0.8


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_map_in_range(predictor: Predictor, synthetic_test_films, method: str) -> None:
    images, _ = _lesion_films(synthetic_test_films, 1)
    out = saliency(predictor, images[0], method)
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 and out.max() > 0.5 and out.std() > 0.01


def test_target_layer_matters(predictor: Predictor, synthetic_test_films) -> None:
    images, _ = _lesion_films(synthetic_test_films, 1)
    assert predictor.detected.default_target == "block4_relu"
    coarse = saliency(predictor, images[0], "Grad-CAM")
    fine = saliency(predictor, images[0], "Grad-CAM", "block2_relu")
    assert rank_similarity(coarse, fine) < 0.95


def test_saliency_lands_on_lesions_more_than_a_random_map(predictor: Predictor, synthetic_test_films) -> None:
    images, masks = _lesion_films(synthetic_test_films)
    rng = np.random.default_rng(0)
    model_scores = [pointing(saliency(predictor, img, "Grad-CAM"), mask)
                    for img, mask in zip(images, masks, strict=True)]
    random_scores = [pointing(rng.random(mask.shape), mask) for mask in masks]
    share = np.mean([s["share"] for s in model_scores])
    random_share = np.mean([s["share"] for s in random_scores])
    chance = np.mean([s["chance"] for s in model_scores])
    assert random_share == pytest.approx(chance, rel=0.1)  # the measure itself: a random map scores chance
    assert share > 1.8 * random_share, f"Grad-CAM share in lesions {share:.3f} vs random {random_share:.3f}"


def test_maps_of_a_randomised_model_differ(predictor: Predictor, synthetic_test_films) -> None:
    """Adebayo et al. (2018): a map that survives randomising the weights explains the image, not the model."""
    keras.utils.set_random_seed(1)
    random_model = models.build_cnn(TrainConfig(image_size=64, cnn_blocks=4, augmentation=PRESETS["none"]))
    randomised = Predictor(random_model)
    images, _ = _lesion_films(synthetic_test_films, 6)
    for method in ("Grad-CAM", "SmoothGrad"):
        same = [rank_similarity(saliency(predictor, img, method), saliency(predictor, img, method)) for img in images]
        other = [rank_similarity(saliency(predictor, img, method), saliency(randomised, img, method))
                 for img in images]
        assert min(same) > 0.99  # maps are deterministic, and the measure can be high
        assert np.mean(other) < 0.5, f"{method}: maps barely change when the weights are random"


def test_overlay_and_outline() -> None:
    gray = np.full((8, 8), 100, np.uint8)
    sal = np.zeros((8, 8), np.float32)
    sal[2:4, 2:4] = 1.0
    out = overlay(gray, sal, opacity=0.5, colormap="Jet")
    assert out.shape == (8, 8, 3) and (out[0, 0] == 100).all()  # no saliency: the film untouched
    assert not (out[2, 2] == 100).all()
    assert (overlay(gray, sal, opacity=0.0) == 100).all()
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    drawn = outline(gray, mask)
    border = (drawn != 100).any(axis=-1)
    assert border[2, 2:6].all() and not border[3:5, 3:5].any() and not border[0].any()

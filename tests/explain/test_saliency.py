"""Saliency on a really trained CNN: maps are well formed, land on known lesions more than chance,
pass the model-randomisation sanity check, and stay informative when the model is saturated."""

from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from tf_keras_vis.gradcam import Gradcam

from pneumo.data.imaging import outline
from pneumo.explain.model_file import load_file
from pneumo.explain.predictor import Predictor
from pneumo.explain.saliency import (
    METHODS,
    empty_map_message,
    overlay,
    pointing,
    rank_similarity,
    saliency,
)
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


@pytest.fixture(scope="module")
def saturated(trained_cnn: Path, synthetic_test_films) -> tuple[Predictor, keras.Model, np.ndarray]:
    """The trained CNN with its output layer scaled until its float32 sigmoid is exactly 1.0 on a
    pneumonia film: the case a confident model reaches on some machines and not others, made
    certain here whatever the CPU's rounding. (predictor, saturated model, film)."""
    images, _ = _lesion_films(synthetic_test_films, 4)
    model = load_file(trained_cnn)
    head = model.get_layer("pneumonia")
    kernel, bias = head.get_weights()
    features = keras.Model(model.inputs, head.input)
    logits = [(keras.ops.convert_to_numpy(features(img[None, ..., None])) @ kernel + bias).item() for img in images]
    film = images[int(np.argmax(logits))]
    factor = 1.0
    while float(model(film[None, ..., None])[0, 0]) < 1.0:  # float32: exactly 1.0 once the logit passes ~17
        assert factor < 1e6, "the output layer could not be saturated"
        factor *= 2
        head.set_weights([kernel * factor, bias * factor])
    return Predictor(model), model, film


@pytest.mark.parametrize("method", METHODS)
def test_a_saturated_model_still_explains_its_call(saturated, method: str) -> None:
    """The probability is 1.0 in float32, so every gradient of it is 0; maps of the log-odds are not blank."""
    predictor, model, film = saturated
    assert float(model(film[None, ..., None])[0, 0]) == 1.0
    assert 15 < predictor.log_odds(film) < 80 and predictor.probability(film) > 0.999_999
    out = saliency(predictor, film, method)
    assert out.max() > 0.5 and out.std() > 0.01, f"{method}: blank map for a 100 % pneumonia call"


def test_empty_map_message_agrees_with_the_call() -> None:
    normal, pneumonia = empty_map_message(0.02, 0.5), empty_map_message(1.0, 0.5)
    assert "NORMAL call" in normal and "no evidence" in normal
    assert "calls PNEUMONIA (100.0%)" in pneumonia and "no evidence" not in pneumonia


def test_target_layer_matters(predictor: Predictor, synthetic_test_films) -> None:
    images, _ = _lesion_films(synthetic_test_films, 1)
    assert predictor.detected.default_target == "block4_relu"
    coarse = saliency(predictor, images[0], "Grad-CAM")
    fine = saliency(predictor, images[0], "Grad-CAM", "block2_relu")
    assert rank_similarity(coarse, fine) < 0.95


@pytest.mark.parametrize("layer", ["block4_relu", "block2_relu"])
def test_grad_cam_is_tf_keras_vis_grad_cam(predictor: Predictor, synthetic_test_films, layer: str) -> None:
    """pneumo compiles Grad-CAM for speed (bench/predict_speed.py); the map is tf-keras-vis' own."""
    images, _ = _lesion_films(synthetic_test_films, 3)
    for film in images:
        theirs = Gradcam(predictor.model)(predictor.score, predictor.prepare(film), penultimate_layer=layer,
                                          seek_penultimate_conv_layer=False, normalize_cam=False)[0]
        theirs = (theirs - theirs.min()) / (theirs.max() - theirs.min())
        np.testing.assert_allclose(saliency(predictor, film, "Grad-CAM", layer), theirs, atol=1e-4)


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
    """Adebayo et al. (2018): a map that survives randomising the weights explains the image, not the model.

    Pixel-gradient maps keep some of the film's edges under any weights (the first convolutions
    respond to edges whether trained or not: rank similarity 0.54 here, where Grad-CAM's is
    about 0), so SmoothGrad gets a looser similarity bar and must also find the lesions that
    only the trained model knows about.
    """
    keras.utils.set_random_seed(1)
    random_model = models.build_cnn(TrainConfig(image_size=64, cnn_blocks=4, augmentation=PRESETS["none"]))
    randomised = Predictor(random_model)
    images, masks = _lesion_films(synthetic_test_films)
    for method, most_similar in (("Grad-CAM", 0.5), ("SmoothGrad", 0.7)):
        same = [rank_similarity(saliency(predictor, img, method), saliency(predictor, img, method))
                for img in images[:6]]
        other = [rank_similarity(saliency(predictor, img, method), saliency(randomised, img, method))
                 for img in images[:6]]
        assert min(same) > 0.99  # maps are deterministic, and the measure can be high
        assert np.mean(other) < most_similar, f"{method}: maps barely change when the weights are random"
        trained = np.mean([pointing(saliency(predictor, img, method), mask)["share"]
                           for img, mask in zip(images, masks, strict=True)])
        untrained = np.mean([pointing(saliency(randomised, img, method), mask)["share"]
                             for img, mask in zip(images, masks, strict=True)])
        assert trained > 1.3 * untrained, f"{method}: lesion share {trained:.3f}, randomised model {untrained:.3f}"


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

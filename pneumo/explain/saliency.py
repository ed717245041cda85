"""Saliency maps with tf-keras-vis, overlays, and the checks that say whether to trust them.

Every map explains the log-odds of pneumonia of a ``Predictor`` for one film (not the
probability: a saturated sigmoid has no gradient) and is returned at the model's input size,
scaled to 0..1.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from functools import lru_cache

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale
from scipy.ndimage import zoom
from scipy.stats import spearmanr
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils import zoom_factor

from pneumo.explain.predictor import Predictor

CAM_METHODS = ("Grad-CAM", "Grad-CAM++", "Faster-ScoreCAM")  # weigh a target layer's feature maps
METHODS = (*CAM_METHODS, "SmoothGrad")
METHOD_HELP = {
    "Grad-CAM": "Feature maps of the target layer weighted by the mean gradient of the log-odds of pneumonia: coarse, "
                "fast, the usual first look.",
    "Grad-CAM++": "Like Grad-CAM with pixel-wise weights from higher-order gradients: spreads over several "
                  "regions when there are several.",
    "Faster-ScoreCAM": "No gradients: masks the film with the 10 strongest feature maps and weighs each by the "
                       "log-odds it keeps. Slower, less noisy.",
    "SmoothGrad": "Gradient of the log-odds with respect to each pixel, averaged over 20 noisy copies: fine-grained, "
                  "shows edges the model is sensitive to. The slowest on a CPU.",
}
COLORMAPS = ("Jet", "Turbo", "Inferno", "Viridis", "Hot")
FASTER_SCORECAM_MAPS = 10
SMOOTHGRAD_SAMPLES = 20


def saliency(predictor: Predictor, gray: np.ndarray, method: str, layer: str | None = None) -> np.ndarray:
    """The ``method`` map for one film at the model's input size, 0..1, explaining pneumonia.

    ``layer`` is the target of the CAM methods (default: the detected one); SmoothGrad works on
    pixels and ignores it.
    """
    x = predictor.prepare(gray)
    model, score = predictor.model, predictor.score
    layer = layer or predictor.detected.default_target
    if method in CAM_METHODS and not layer:
        raise ValueError(f"{method} needs a layer with feature maps, and this model has none: use SmoothGrad")
    target = model.get_layer(layer) if layer else None
    # tf-keras-vis prints Keras progress bars and trips a harmless input-structure warning.
    with predictor.lock, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if method == "Grad-CAM":
            cam = _grad_cam(predictor, target, x)
        elif method == "Grad-CAM++":
            cam = GradcamPlusPlus(model)(score, x, penultimate_layer=target, seek_penultimate_conv_layer=False,
                                         normalize_cam=False)
        elif method == "Faster-ScoreCAM":
            maps = min(FASTER_SCORECAM_MAPS, target.output.shape[-1])
            cam = Scorecam(model)(predictor.score_of_softmax, x, penultimate_layer=target,
                                  seek_penultimate_conv_layer=False, max_N=maps, normalize_cam=False)
        elif method == "SmoothGrad":
            cam = _smoothgrad(model, score, x)
        else:
            raise ValueError(f"unknown saliency method {method!r}; choose from {', '.join(METHODS)}")
    return _unit(np.nan_to_num(np.asarray(cam, dtype=np.float64)[0]))


def _grad_cam(predictor: Predictor, target: keras.layers.Layer, x: np.ndarray) -> np.ndarray:
    """tf-keras-vis' Gradcam, step for step (feature maps weighted by their mean gradient, ReLU,
    linear zoom to the input), in one compiled step built once per layer: ResNet50 at 224 takes
    0.07 s instead of tf-keras-vis' eager 0.95 s. tests/explain holds it to tf-keras-vis' maps."""
    key = ("Grad-CAM", predictor.index, target.name)
    if key not in predictor.compiled:
        both = keras.Model(predictor.model.inputs, [target.output, predictor.model.output])

        @tf.function(reduce_retracing=True)
        def step(films: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                features, output = both(films, training=False)
                score = predictor.score(output)
            features = tf.cast(features, tf.float32)
            grads = tf.cast(tape.gradient(score, features), tf.float32)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))

        predictor.compiled[key] = step
    cam = predictor.compiled[key](tf.constant(x)).numpy()
    return zoom(cam, zoom_factor(cam.shape, x.shape), order=1)


def empty_map_message(probability: float, threshold: float) -> str:
    """Why a map is empty, in words that agree with the model's call on the film.

    An empty CAM means no region of the target layer raises the log-odds of pneumonia. That is
    the model's own NORMAL verdict when it calls the film normal; when it calls pneumonia, the
    evidence lies elsewhere (another layer, the bias), and saying "no evidence" would
    contradict the probability shown above the map.
    """
    if probability < threshold:
        return (f"Empty map: no region raises the log-odds of pneumonia at this layer. The model finds no "
                f"evidence for pneumonia here, in line with its NORMAL call ({probability:.1%}).")
    return (f"Empty map: the model calls PNEUMONIA ({probability:.1%}), but no region of this layer raises "
            "its log-odds: the evidence lies in another layer. Try another target layer or method.")


def _unit(values: np.ndarray) -> np.ndarray:
    """Scaled to 0..1 by its own range. tf-keras-vis' normalize adds 1e-7 to the range, which
    flattens the maps of a model whose gradients are that small (a standardised input)."""
    values = values - values.min()
    top = values.max()
    return (values / top if top > 0 else values).astype(np.float32)


def _smoothgrad(model, score, x: np.ndarray) -> np.ndarray:
    """SmoothGrad (Smilkov et al., 2017) with tf-keras-vis' Saliency, its noisy copies given as one
    batch: one forward and backward pass instead of one per copy (tf-keras-vis loops), and a
    seeded noise so the same film gives the same map."""
    rng = np.random.default_rng(0)
    sigma = 0.2 * (x.max() - x.min())
    noisy = (x + rng.normal(0.0, sigma, (SMOOTHGRAD_SAMPLES, *x.shape[1:]))).astype(np.float32)
    grads = Saliency(model)(score, noisy, keepdims=True, normalize_map=False)  # |gradient| of each copy
    return np.max(np.mean(grads, axis=0), axis=-1)[None]


@lru_cache(maxsize=len(COLORMAPS))
def _lut(colormap: str) -> np.ndarray:
    """256 RGB colours of a plotly colour scale."""
    colours = sample_colorscale(get_colorscale(colormap), np.linspace(0, 1, 256))
    return np.array([[float(v) for v in c[c.index("(") + 1:-1].split(",")] for c in colours]).astype(np.uint8)


def overlay(gray: np.ndarray, saliency_map: np.ndarray, opacity: float = 0.45, colormap: str = "Jet") -> np.ndarray:
    """The film in grey with the map laid over it in colour: (H, W, 3) uint8.

    Opacity scales with the map, so where the map is zero the film shows through untouched.
    """
    colours = _lut(colormap)[np.round(saliency_map * 255).astype(np.uint8)].astype(np.float32)
    film = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    alpha = opacity * saliency_map[..., None]
    return np.round(film * (1 - alpha) + colours * alpha).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An overlay as a PNG file, for download."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def pointing(saliency_map: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How much of a map falls on a known lesion, against what a random map would score.

    ``share``: the map's mass inside the lesion; ``chance``: the lesion's share of the image,
    which is what a map of random noise scores on average; ``hit``: 1 when the map's peak lies
    in the lesion (the pointing game of Zhang et al., 2016).
    """
    mask = mask.astype(bool)
    total = float(saliency_map.sum())
    peak = np.unravel_index(np.argmax(saliency_map), saliency_map.shape)
    return {"share": float(saliency_map[mask].sum()) / total if total > 0 else 0.0,
            "chance": float(mask.mean()),
            "hit": float(mask[peak])}


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps: the measure of Adebayo et al. (2018)'s sanity checks."""
    rho = spearmanr(a.ravel(), b.ravel()).statistic
    return 0.0 if np.isnan(rho) else float(rho)

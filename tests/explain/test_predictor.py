"""Models from anywhere: run models, nested bases, two softmax outputs, .h5 files, code refused."""

from pathlib import Path

import keras
import numpy as np
import pytest

from pneumo.explain.predictor import ModelLoadError, Predictor, flatten, load_bytes, load_file
from pneumo.explain.saliency import saliency
from pneumo.training.models import IMAGENET_BGR_MEAN


def _nested_softmax_rgb() -> keras.Model:
    """The shape of many models trained elsewhere: a conv base as a sub-model, 3 channels, 2 softmax outputs."""
    inputs = keras.Input((40, 48, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(name="pool_a")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(x)
    base = keras.Model(inputs, x, name="base")
    outer_in = keras.Input((40, 48, 3))
    y = keras.layers.GlobalAveragePooling2D()(base(outer_in))
    y = keras.layers.Dense(2, activation="softmax", name="classes")(y)
    return keras.Model(outer_in, y, name="outer")


def _save(model: keras.Model, path: Path) -> bytes:
    model.save(path)
    return path.read_bytes()


def test_nested_two_output_model_is_detected_and_flattened(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = _nested_softmax_rgb()
    predictor = Predictor(load_bytes(_save(model, tmp_path / "m.keras")))
    d = predictor.detected
    assert (d.height, d.width, d.channels, d.outputs, d.output_activation) == (40, 48, 3, 2, "softmax")
    assert d.nested == ["base"] and d.builtin_preprocessing == [] and d.suggested_preprocessing == "unit"
    assert d.default_target == "conv_b" and predictor.layer_title("conv_b") == "base/conv_b"
    assert any("nested" in line for line in d.describe())
    # The flat copy computes what the original does, for either choice of pneumonia output.
    gray = np.random.default_rng(0).integers(0, 256, (100, 90), dtype=np.uint8)
    x = predictor.prepare(gray)
    assert x.shape == (1, 40, 48, 3) and x.max() <= 1.0
    expected = model.predict(x, verbose=0)[0]
    assert predictor.probability(gray) == pytest.approx(expected[1], abs=1e-5)
    assert predictor.configured("unit", 0).probability(gray) == pytest.approx(expected[0], abs=1e-5)
    assert predictor.index == 1  # configured() leaves the shared predictor alone
    # Saliency reaches the conv layer inside the nested base.
    cam = saliency(predictor, gray, "Grad-CAM")
    assert cam.shape == (40, 48)


def test_sequential_with_nested_sequential_as_h5(tmp_path: Path) -> None:
    base = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(4, 3, name="c1"),
                             keras.layers.ReLU(name="r1")], name="features")
    model = keras.Sequential([keras.Input((32, 32, 1)), base, keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    predictor = Predictor(load_bytes(_save(model, tmp_path / "m.h5")))
    assert predictor.detected.nested == ["features"] and predictor.detected.default_target == "r1"
    gray = np.full((32, 32), 128, np.uint8)
    assert predictor.probability(gray) == pytest.approx(float(model(predictor.prepare(gray))[0, 0]), abs=1e-5)


def test_flatten_copies_weights_and_keeps_originals() -> None:
    model = _nested_softmax_rgb()
    flat, nested, _ = flatten(model)
    x = np.random.default_rng(1).random((2, 40, 48, 3)).astype("float32")
    np.testing.assert_allclose(flat(x), model(x), atol=1e-6)
    assert nested == ["base"] and all(layer not in model.layers for layer in flat.layers)


def _conv_features(inputs: keras.KerasTensor) -> keras.KerasTensor:
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    return keras.layers.GlobalAveragePooling2D()(x)


def _head(kind: str) -> tuple[keras.Model, int]:
    """Output heads found in published models; (model, index of the pneumonia column in its output)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 1))
    x = _conv_features(inputs)
    if kind == "sigmoid":
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)), 0
    if kind == "Activation layer":
        return keras.Model(inputs, keras.layers.Activation("sigmoid")(keras.layers.Dense(1)(x))), 0
    if kind == "softmax":
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)), 1
    if kind == "Softmax layer":
        return keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(2)(x))), 1
    if kind == "list input":  # keras.Model([inp], out), as tf.keras 2 saved many models
        return keras.Model([inputs], keras.layers.Dense(1, activation="sigmoid")(x)), 0
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["sigmoid", "Activation layer", "softmax", "Softmax layer", "list input"])
def test_every_head_gives_the_models_probability_and_finite_log_odds(kind: str, tmp_path: Path) -> None:
    model, column = _head(kind)
    predictor = Predictor(load_bytes(_save(model, tmp_path / "m.keras")), preprocessing="unit")
    gray = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    p = predictor.probability(gray)
    assert p == pytest.approx(float(model(predictor.prepare(gray))[0, column]), abs=1e-6)
    assert predictor.log_odds(gray) == pytest.approx(np.log(p / (1 - p)), abs=1e-4)
    # Scaled until the float32 probability is exactly 0 or 1: the log-odds stay finite and exact.
    head = next(layer for layer in reversed(predictor.model.layers) if layer.weights)
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 1000, bias * 1000])
    assert np.isfinite(predictor.log_odds(gray)) and abs(predictor.log_odds(gray)) > 50


def test_logit_outputs_get_their_activation(tmp_path: Path) -> None:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="logit")(x))
    predictor = Predictor(model, preprocessing="unit")
    gray = np.full((16, 16), 200, np.uint8)
    logit = float(model(predictor.prepare(gray))[0, 0])
    assert predictor.probability(gray) == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    assert any("activation is linear" in note for note in predictor.detected.notes)


def test_preprocessing_choices() -> None:
    model = _nested_softmax_rgb()
    predictor = Predictor(model)
    gray = np.full((40, 48), 255, np.uint8)
    assert predictor.configured("none").prepare(gray).max() == 255
    assert predictor.configured("unit").prepare(gray).max() == 1
    assert predictor.configured("symmetric").prepare(gray).max() == 1
    caffe = predictor.configured("caffe").prepare(gray)[0, 0, 0]
    np.testing.assert_allclose(caffe, 255 - np.array(IMAGENET_BGR_MEAN), rtol=1e-5)
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        predictor.configured("sideways")


def test_run_model_holds_its_own_preprocessing(trained_cnn: Path) -> None:
    predictor = Predictor(load_file(trained_cnn))
    assert predictor.detected.builtin_preprocessing == ["rescale"] and predictor.preprocessing == "none"
    assert predictor.size == (64, 64) and predictor.prepare(np.full((64, 64), 255, np.uint8)).max() == 255


def test_code_in_a_model_file_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    with pytest.raises(ModelLoadError, match="contains code"):
        load_bytes(_save(model, tmp_path / "lambda.keras"))


@pytest.mark.parametrize(("data", "reason"), [
    (b"not a model at all", "neither"),
    (b"PK\x03\x04" + b"\0" * 100, "not a loadable Keras model"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "not a loadable Keras model"),
], ids=["text", "broken-zip", "broken-h5"])
def test_broken_model_files_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ModelLoadError, match=reason):
        load_bytes(data)


def test_unusable_shapes_are_refused() -> None:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ModelLoadError, match="one sigmoid unit or two softmax units"):
        Predictor(keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x)))
    flat_in = keras.Input((10,))
    with pytest.raises(ModelLoadError, match="height x width x 1 or 3"):
        Predictor(keras.Model(flat_in, keras.layers.Dense(1, activation="sigmoid")(flat_in)))

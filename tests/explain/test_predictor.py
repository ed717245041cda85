"""Models from anywhere: run models, nested bases, list inputs, every output head, .h5 files, code
refused, files too big or inflating too far refused before Keras opens them, architecture guesses."""

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from pneumo.explain import predictor as predictor_module
from pneumo.explain.model_file import ModelLoadError, load_bytes, load_file
from pneumo.explain.predictor import Predictor, flatten
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
    if kind == "logit":
        return keras.Model(inputs, keras.layers.Dense(1)(x)), 0
    if kind == "softmax":
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)), 1
    if kind == "Softmax layer":
        return keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(2)(x))), 1
    if kind == "two logits":  # a final linear Dense(2), trained with from_logits=True
        return keras.Model(inputs, keras.layers.Dense(2)(x)), 1
    if kind == "list input":  # keras.Model([inp], out), as tf.keras 2 saved many models
        return keras.Model([inputs], keras.layers.Dense(1, activation="sigmoid")(x)), 0
    raise ValueError(kind)


_SAID = {  # what the page says of each head
    "sigmoid": "output: one sigmoid probability (Dense(1, sigmoid))",
    "Activation layer": "output: one sigmoid probability (an Activation(sigmoid) layer)",
    "logit": "output: one logit (a linear Dense(1)): pneumo applies the sigmoid",
    "softmax": "output: two softmax probabilities (Dense(2, softmax)), one per class",
    "Softmax layer": "output: two softmax probabilities (a Softmax layer), one per class",
    "two logits": "output: two logits (a linear Dense(2)): pneumo applies softmax",
    "list input": "output: one sigmoid probability (Dense(1, sigmoid))",
}


def _reference(model: keras.Model, x: np.ndarray, kind: str, column: int) -> float:
    """The model's own probability of pneumonia, squashed here where it outputs logits."""
    out = np.asarray(model([x] if isinstance(model.input, list) else x), dtype=np.float64)[0]
    if kind == "logit":
        return float(1 / (1 + np.exp(-out[0])))
    if kind == "two logits":
        return float(np.exp(out[column]) / np.exp(out).sum())
    return float(out[column])


@pytest.mark.parametrize(("kind", "suffix"), [(kind, ".keras") for kind in _SAID] + [("list input", ".h5")])
def test_every_head_gives_the_models_probability_and_finite_log_odds(kind: str, suffix: str, tmp_path: Path) -> None:
    model, column = _head(kind)
    predictor = Predictor(load_bytes(_save(model, tmp_path / f"m{suffix}")), preprocessing="unit")
    assert _SAID[kind] in predictor.detected.describe()
    gray = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    p = predictor.probability(gray)
    assert p == pytest.approx(_reference(model, predictor.prepare(gray), kind, column), abs=1e-6)
    assert predictor.log_odds(gray) == pytest.approx(np.log(p / (1 - p)), abs=1e-4)
    # Scaled until the float32 probability is exactly 0 or 1: the log-odds stay finite and exact.
    head = next(layer for layer in reversed(predictor.model.layers) if layer.weights)
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 1000, bias * 1000])
    assert np.isfinite(predictor.log_odds(gray)) and abs(predictor.log_odds(gray)) > 50


def _list_input_nested(name: str = "base") -> keras.Model:
    """tf.keras 2 style all the way down: list inputs, a base holding a nested Sequential block, two logits."""
    keras.utils.set_random_seed(5)
    block = keras.Sequential([keras.Input((14, 14, 4)), keras.layers.Conv2D(4, 3, name="deep_conv"),
                              keras.layers.ReLU(name="deep_relu")], name="block")
    base_in = keras.Input((16, 16, 3))
    base = keras.Model([base_in], block(keras.layers.Conv2D(4, 3, name="first_conv")(base_in)), name=name)
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(base(inputs)))
    return keras.Model([inputs], outputs, name="classifier")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_list_inputs_and_nested_bases_survive_a_save_and_reload(suffix: str, tmp_path: Path) -> None:
    model = _list_input_nested()
    model.save(tmp_path / f"m{suffix}")
    reloaded = load_file(tmp_path / f"m{suffix}")
    assert isinstance(reloaded.input, list)  # the reloaded model keeps its input as a list
    predictor = Predictor(reloaded, preprocessing="unit")
    d = predictor.detected
    assert d.nested == ["base", "block"] and d.default_target == "deep_relu"
    assert predictor.layer_title("deep_relu") == "base/block/deep_relu"
    assert "output: two logits (a linear Dense(2)): pneumo applies softmax" in d.describe()
    gray = np.random.default_rng(2).integers(0, 256, (30, 20), dtype=np.uint8)
    assert predictor.probability(gray) == pytest.approx(
        _reference(model, predictor.prepare(gray), "two logits", 1), abs=1e-6)
    assert saliency(predictor, gray, "Grad-CAM").shape == (16, 16)


def test_logit_outputs_get_their_activation() -> None:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="logit")(x))
    predictor = Predictor(model, preprocessing="unit")
    gray = np.full((16, 16), 200, np.uint8)
    logit = float(model(predictor.prepare(gray))[0, 0])
    assert predictor.probability(gray) == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    assert any("explain the log-odds of pneumonia (the logit; pneumo applies the sigmoid" in note
               for note in predictor.detected.notes)


def test_preprocessing_choices() -> None:
    model = _nested_softmax_rgb()
    predictor = Predictor(model)
    gray = np.full((40, 48), 255, np.uint8)
    assert predictor.configured("none").prepare(gray).max() == 255
    assert predictor.configured("unit").prepare(gray).max() == 1
    assert predictor.configured("symmetric").prepare(gray).max() == 1
    caffe = predictor.configured("caffe").prepare(gray)[0, 0, 0]
    np.testing.assert_allclose(caffe, 255 - np.array(IMAGENET_BGR_MEAN), rtol=1e-5)
    torch = predictor.configured("torch").prepare(np.zeros((40, 48), np.uint8))[0, 0, 0]  # black: -mean / std
    np.testing.assert_allclose(torch, [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5)
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        predictor.configured("sideways")


def test_run_model_holds_its_own_preprocessing(trained_cnn: Path) -> None:
    predictor = Predictor(load_file(trained_cnn))
    assert predictor.detected.builtin_preprocessing == ["rescale"] and predictor.preprocessing == "none"
    assert predictor.resize == "bilinear"  # as the run's films were squashed (imaging.decode_gray)
    assert predictor.size == (64, 64) and predictor.prepare(np.full((64, 64), 255, np.uint8)).max() == 255


def test_unusable_shapes_are_refused() -> None:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ModelLoadError, match=r"the model gives 1 output\(s\) of 5 values; pneumo needs one output"):
        Predictor(keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x)))
    flat_in = keras.Input((10,))
    with pytest.raises(ModelLoadError, match="the model's input is 10; pneumo needs an image of height x width"):
        Predictor(keras.Model(flat_in, keras.layers.Dense(1, activation="sigmoid")(flat_in)))


def test_a_model_without_feature_maps_is_explained_by_smoothgrad_only() -> None:
    inputs = keras.Input((12, 12, 1))
    flat = keras.layers.Flatten()(inputs)
    predictor = Predictor(keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(flat)))
    assert predictor.detected.targets == [] and predictor.detected.default_target == ""
    assert any("no layer with feature maps" in note for note in predictor.detected.notes)
    film = np.linspace(0, 255, 144, dtype=np.float32).reshape(12, 12).astype(np.uint8)
    assert saliency(predictor, film, "SmoothGrad").shape == (12, 12)
    with pytest.raises(ValueError, match="Grad-CAM needs a layer with feature maps, and this model has none"):
        saliency(predictor, film, "Grad-CAM")


def test_graphs_pneumo_cannot_flatten_are_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = keras.Input((16, 16, 1)), keras.Input((16, 16, 1))
    features = keras.layers.Conv2D(2, 3)(keras.layers.Add()([a, b]))
    head = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(features))
    with pytest.raises(ModelLoadError, match="the model has 2 inputs; pneumo needs one image input"):
        Predictor(keras.Model([a, b], head))
    pair = keras.Model([a, b], features, name="pair")  # a nested model fed two tensors
    x = keras.Input((16, 16, 1))
    y = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(pair([x, x])))
    with pytest.raises(ModelLoadError, match="the nested model pair takes 2 inputs"):
        Predictor(keras.Model(x, y))
    # Whatever else breaks while copying a graph from elsewhere is a message too, never a traceback.
    monkeypatch.setattr(predictor_module, "flatten", lambda model: 1 / 0)
    with pytest.raises(ModelLoadError, match=r"cannot rebuild this model's graph \(ZeroDivisionError"):
        Predictor(_nested_softmax_rgb())


def test_resize_filter_is_a_choice(tmp_path: Path) -> None:
    predictor = Predictor(_nested_softmax_rgb())
    assert predictor.resize == "bilinear"
    gray = np.random.default_rng(4).integers(0, 256, (100, 90), dtype=np.uint8)
    nearest = predictor.configured("unit", resize="nearest")
    np.testing.assert_array_equal(nearest.as_seen(gray), np.asarray(Image.fromarray(gray).resize((48, 40),
                                                                                               Image.NEAREST)))
    seen = {name: predictor.configured("unit", resize=name).prepare(gray) for name in ("nearest", "bilinear",
                                                                                      "bicubic")}
    assert not np.array_equal(seen["nearest"], seen["bilinear"])
    assert not np.array_equal(seen["bilinear"], seen["bicubic"])
    assert predictor.resize == "bilinear"  # configured() leaves the shared predictor alone
    with pytest.raises(ValueError, match="resize must be one of"):
        predictor.configured("unit", resize="lanczos")


def _named_base(name: str, scaling: bool = False) -> keras.Model:
    """A tiny model whose nested conv base is named like a keras.applications model."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs) if scaling else inputs
    base = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(x), name=name)
    outer = keras.Input((16, 16, 3))
    return keras.Model(outer, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(base(outer))), name="classifier")


@pytest.mark.parametrize(("name", "expected", "family"), [
    ("mobilenetv2_1.00_224", "symmetric", "MobileNetV2"),
    ("mobilenet_1.00_224", "symmetric", "MobileNet"),
    ("xception", "symmetric", "Xception"),
    ("inception_v3", "symmetric", "InceptionV3"),
    ("inception_resnet_v2", "symmetric", "InceptionResNetV2"),
    ("NASNet", "symmetric", "NASNet"),
    ("resnet50v2", "symmetric", "ResNetV2"),
    ("resnet50", "caffe", "ResNet50/101/152"),
    ("resnet152", "caffe", "ResNet50/101/152"),
    ("vgg16", "caffe", "VGG16/19"),
    ("densenet121", "torch", "DenseNet"),
    ("efficientnetb0", "none", "EfficientNet"),
])
def test_preprocessing_is_guessed_from_the_architectures_name(name: str, expected: str, family: str) -> None:
    detected = Predictor(_named_base(name)).detected
    assert detected.suggested_preprocessing == expected
    assert f"guessed from a nested model named {name}: {family}" in detected.preprocessing_reason
    assert any(line.startswith("no preprocessing layer inside the model: pixel scaling guessed from a nested "
                               f"model named {name}") for line in detected.describe())


def test_preprocessing_guess_from_layer_names_scaling_layers_or_nothing() -> None:
    # Model(base.input, head) keeps no base name, only its layers' names.
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv5_block3_3_conv")(inputs)
    flat = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x)))
    detected = Predictor(flat).detected
    assert detected.suggested_preprocessing == "caffe"
    assert "a layer named conv5_block3_3_conv, as ResNet50/101/152 names its layers" in detected.preprocessing_reason
    # A scaling layer inside wins over the name: the model scales its input itself.
    detected = Predictor(_named_base("efficientnetb0", scaling=True)).detected
    assert detected.suggested_preprocessing == "none" and detected.builtin_preprocessing == ["rescaling"]
    detected = Predictor(_named_base("my_base")).detected
    assert detected.suggested_preprocessing == "unit" and "no known architecture" in detected.preprocessing_reason


def test_a_real_mobilenetv2_base_is_guessed_symmetric() -> None:
    base = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, include_top=False)
    model = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    predictor = Predictor(model)
    assert predictor.preprocessing == "symmetric" and predictor.detected.nested == [base.name]
    assert "MobileNetV2 expects −1…1" in predictor.detected.preprocessing_reason
    assert predictor.layer_title(predictor.detected.default_target).startswith("mobilenetv2_0.35_32/")

"""One model, whatever its origin, turning one grayscale film into a probability of pneumonia.

A run's ``best.keras`` takes raw 0-255 grey and holds its own preprocessing. A model trained
elsewhere may want 3 channels, another size, its inputs scaled outside the model (guessed from
its architecture's name), two outputs (softmax probabilities or logits), and keep its conv base
as a nested sub-model. ``Predictor`` detects all of this (and says what it found), copies the
model into one flat graph so saliency methods can reach any conv layer, and serialises calls so
browser sessions sharing it get their own answers.

A model file is checked before Keras opens it (``check_file``): its size, and what a .keras zip
or an .h5 file would inflate to, so a small file that unpacks to gigabytes is refused at once.

The flat graph stops before the model's final sigmoid or softmax: it outputs the **log-odds**
of pneumonia. A confident model's sigmoid saturates (exactly 1.0 in float32), and every
gradient of a saturated probability is 0, so maps of the probability go blank exactly when
the model is surest. Saliency explains the log-odds, the standard practice (tf-keras-vis'
``ReplaceToLinear`` does the same, by cloning the model on every call); the probability is
the sigmoid of the log-odds, taken in float64.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from PIL import Image

from pneumo.explain.familiarity import feature_extractor
from pneumo.explain.model_file import ModelLoadError
from pneumo.training.models import IMAGENET_BGR_MEAN

# How pixels 0-255 become the model's input when the model does not do it itself.
PREPROCESSING = {
    "none": "none: raw 0–255 (the model scales its input itself)",
    "unit": "0–1 (divide by 255)",
    "symmetric": "−1…1 (divide by 127.5, subtract 1)",
    "caffe": 'ImageNet "caffe" (subtract the BGR channel means: keras.applications ResNet50/VGG)',
    "torch": 'ImageNet "torch" (0–1, then each channel\'s ImageNet mean and spread: keras.applications DenseNet)',
}
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)  # keras.applications' "torch" mode, on 0-1 pixels
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)

# Architectures known by the names keras.applications gives them and their layers (tf.keras 2
# spellings too), with the scaling their ``preprocess_input`` applies: what a model built on one
# most likely expects. A model names its base when the base is nested (``Sequential([ResNet50(...),
# ...])``); ``Model(base.input, head)`` keeps only the base's layer names, hence the second
# pattern, one layer name no other family uses. Read in order, the first match wins (ResNetV2
# before ResNet). Consulted only when the model holds no scaling layer: EfficientNet, ConvNeXt and
# MobileNetV3 carry theirs inside (Rescaling / Normalization), which is found first.
ARCHITECTURES: tuple[tuple[str, str | None, str, str], ...] = (
    # (model name pattern, layer name pattern, family, preprocessing)
    (r"inception_?resnet_?v2", r"^block(35|17|8)_\d+_mixed$", "InceptionResNetV2", "symmetric"),
    (r"inception_?v3", r"^mixed10$", "InceptionV3", "symmetric"),
    (r"xception", r"^block\d+_sepconv\d$", "Xception", "symmetric"),
    (r"mobilenet_?v3", None, "MobileNetV3 without its Rescaling layer", "symmetric"),
    (r"mobilenet_?v2", r"^block_\d+_project$", "MobileNetV2", "symmetric"),
    (r"mobilenet", r"^conv_pw_\d+$", "MobileNet", "symmetric"),
    (r"nasnet", r"^normal_concat_\d+$", "NASNet", "symmetric"),
    (r"resnet(50|101|152)_?v2", r"^conv\d_block\d+_preact_bn$", "ResNetV2", "symmetric"),
    (r"resnet(50|101|152)", r"^conv\d_block\d+_3_conv$", "ResNet50/101/152", "caffe"),
    (r"vgg_?(16|19)", r"^block5_conv3$", "VGG16/19", "caffe"),
    (r"densenet", r"^conv\d_block\d+_concat$", "DenseNet", "torch"),
    (r"efficientnet", None, "EfficientNet (keras.applications: raw 0–255, scaled inside)", "none"),
    (r"convnext", None, "ConvNeXt (keras.applications: raw 0–255, scaled inside)", "none"),
)

# How the film is shrunk to the model's input size (PIL filters). Use what the model was trained
# with: on real films the probability moved by up to 0.3 between nearest and bilinear.
RESIZE = {
    "bilinear": "bilinear (pneumo's runs)",  # imaging.decode_gray squashes every cached film this way
    "nearest": "nearest (flow_from_directory)",  # Keras' ImageDataGenerator default
    "bicubic": "bicubic",
}
_PIL_FILTERS = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}

DEFAULT_SIZE = 224  # for a model whose input size is not fixed
BATCH = 32  # films per forward pass when many go through at once


def _compiled_predict(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    """Through Keras' compiled predict step, ``BATCH`` films at a time: on a CPU, ResNet50 answers
    in a third of the time an eager call takes. ``predict_on_batch``, not ``predict``: called from
    Streamlit's ever-new threads, ``predict`` grew the server by about 45 KiB a call (its data
    adapter and callbacks); ``predict_on_batch`` stays flat."""
    return np.concatenate([np.asarray(model.predict_on_batch(batch[i:i + BATCH]))
                           for i in range(0, len(batch), BATCH)])
_SCALING_LAYERS = (keras.layers.Rescaling, keras.layers.Normalization)
_NOT_DEFAULT_TARGET = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout)
_SQUASHING = ("sigmoid", "softmax")
_TINY = 1e-38  # keeps log(0) finite where ScoreCAM's softmax underflows in float32


@dataclass(frozen=True)
class Detected:
    """What was found in a model, for the page to show."""

    height: int
    width: int
    channels: int
    outputs: int  # 1 (sigmoid or one logit) or 2 (softmax, two logits or two sigmoids)
    output_activation: str  # the final activation found in the model, taken off the flat graph (or "linear")
    head: str  # the last layer in words: "a linear Dense(2)", "Dense(1, sigmoid)", "a Softmax layer"
    builtin_preprocessing: list[str]  # names of scaling layers inside the model
    nested: list[str]  # sub-models inlined into the flat copy
    targets: list[str]  # layers with spatial (H x W x C) output, saliency targets, graph order; may be none
    default_target: str  # "" where there is none
    notes: list[str]
    suggested_preprocessing: str  # a key of PREPROCESSING
    preprocessing_reason: str  # why, in words

    @property
    def output_kind(self) -> str:
        """What the model outputs, in plain words: probabilities, or logits pneumo squashes itself."""
        kind, head = self.output_activation, self.head
        if self.outputs == 1:
            if kind == "sigmoid":
                return f"one sigmoid probability ({head})"
            taken = "one logit" if kind == "linear" else f"one {kind} output, taken as a logit"
            return f"{taken} ({head}): pneumo applies the sigmoid"
        if kind in _SQUASHING:
            return f"two {kind} probabilities ({head}), one per class" + (
                ", each on its own" if kind == "sigmoid" else "")
        taken = "two logits" if kind == "linear" else f"two {kind} outputs, taken as logits"
        return f"{taken} ({head}): pneumo applies softmax"

    def describe(self) -> list[str]:
        out = [f"input {self.height} x {self.width} x {self.channels} "
               f"({'grey' if self.channels == 1 else 'RGB: the grey film is copied into 3 channels'})",
               f"output: {self.output_kind}",
               ("preprocessing inside the model: " + ", ".join(self.builtin_preprocessing))
               if self.builtin_preprocessing else
               f"no preprocessing layer inside the model: {self.preprocessing_reason}. Change it if the model "
               "was trained otherwise"]
        if self.nested:
            out.append(f"nested sub-model(s) {', '.join(self.nested)}: flattened so their conv layers can be reached")
        return out + self.notes


def guess_preprocessing(names: list[tuple[str, str]], layers: list[str]) -> tuple[str, str]:
    """The scaling a model without scaling layers most likely expects, and why, matched against
    ``ARCHITECTURES``: first the names of the model and its nested sub-models (``(what, name)``
    pairs: "the model's name", "a nested model named"), then its layer names."""
    for what, name in names:
        for pattern, _, family, preprocessing in ARCHITECTURES:
            if re.search(pattern, name, re.IGNORECASE):
                return preprocessing, (f"pixel scaling guessed from {what} {name}: {family} expects "
                                       f"{PREPROCESSING[preprocessing]}")
    for _, pattern, family, preprocessing in ARCHITECTURES:
        layer = next((layer for layer in layers if pattern and re.search(pattern, layer)), None)
        if layer is not None:
            return preprocessing, (f"pixel scaling guessed from a layer named {layer}, as {family} names its "
                                   f"layers: {family} expects {PREPROCESSING[preprocessing]}")
    return "unit", (f"no known architecture in its names, so pixel scaling is guessed "
                    f"{PREPROCESSING['unit']}, the most common")


class Predictor:
    """A loaded model made flat, with the preprocessing and pneumonia output it needs.

    ``model`` outputs two columns, ``[-s/2, s/2]`` where ``s`` is the log-odds of pneumonia:
    a softmax over them gives back the probability, so tf-keras-vis' ScoreCAM (which applies a
    softmax to the output itself) and the gradient methods see the same score.
    """

    def __init__(self, model: keras.Model, preprocessing: str | None = None, pneumonia_index: int = 1,
                 resize: str = "bilinear") -> None:
        try:
            flat, nested, self.layer_paths = flatten(model)  # layer_paths: layer name -> "sub-model/layer"
            logits, activation, head = _logits(flat)
            names = [("the model's name", model.name), *(("a nested model named", name) for name in nested)]
            self.detected = _detect(flat, nested, activation, head, names)
            # One log-odds model per choice of pneumonia output, built once and shared by every copy.
            self._models = {i: _log_odds_model(flat.inputs[0], logits, self.detected, i)
                            for i in ((0,) if self.detected.outputs == 1 else (0, 1))}
            self._features = feature_extractor(flat)
        except ModelLoadError:
            raise
        except Exception as exc:  # a graph from elsewhere may break the copy in any way: say so
            raise ModelLoadError(f"pneumo cannot rebuild this model's graph ({type(exc).__name__}: "
                                 f"{str(exc)[:300]})") from exc
        self.lock = threading.Lock()  # Keras models are shared by every browser session
        self.compiled: dict[tuple, Callable] = {}  # saliency's compiled steps, shared by every copy too
        self._choose(preprocessing or self.detected.suggested_preprocessing, pneumonia_index, resize)

    def configured(self, preprocessing: str, pneumonia_index: int = 1, resize: str = "bilinear") -> Predictor:
        """The same model (and lock) with other user choices: what each browser session holds."""
        other = copy.copy(self)
        other._choose(preprocessing, pneumonia_index, resize)
        return other

    def _choose(self, preprocessing: str, pneumonia_index: int, resize: str) -> None:
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING)}")
        if pneumonia_index not in (0, 1):
            raise ValueError("the pneumonia output is 0 or 1")
        if resize not in RESIZE:
            raise ValueError(f"resize must be one of {', '.join(RESIZE)}")
        self.preprocessing = preprocessing
        self.resize = resize
        self.index = 0 if self.detected.outputs == 1 else pneumonia_index
        self.model = self._models[self.index]

    @property
    def size(self) -> tuple[int, int]:
        return self.detected.height, self.detected.width

    def as_seen(self, gray: np.ndarray) -> np.ndarray:
        """The film squashed to the model's input size with the chosen filter, as uint8 grey: what
        the model sees. Bilinear is what pneumo's runs were trained on (``imaging.decode_gray``)."""
        h, w = self.size
        if gray.shape == (h, w):
            return gray
        return np.asarray(Image.fromarray(gray).resize((w, h), _PIL_FILTERS[self.resize], reducing_gap=2.0))

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """The model input for one film: (1, H, W, C) float32."""
        x = self.as_seen(gray).astype(np.float32)[None, :, :, None]
        if self.detected.channels == 3:
            x = np.repeat(x, 3, axis=-1)
        if self.preprocessing == "unit":
            return x / 255.0
        if self.preprocessing == "symmetric":
            return x / 127.5 - 1.0
        if self.preprocessing == "caffe":
            mean = np.array(IMAGENET_BGR_MEAN if self.detected.channels == 3 else [np.mean(IMAGENET_BGR_MEAN)])
            return (x - mean).astype(np.float32)
        if self.preprocessing == "torch":
            mean, std = np.array(IMAGENET_RGB_MEAN), np.array(IMAGENET_RGB_STD)
            if self.detected.channels == 1:
                mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
            return ((x / 255.0 - mean) / std).astype(np.float32)
        return x

    def log_odds(self, gray: np.ndarray) -> float:
        """log(p / (1 - p)) of pneumonia for one film: finite where the probability rounds to 1."""
        return float(self._log_odds([gray])[0])

    def probability(self, gray: np.ndarray) -> float:
        """Probability of pneumonia for one film."""
        return float(1 / (1 + np.exp(-self.log_odds(gray))))

    def probabilities(self, films: Sequence[np.ndarray]) -> np.ndarray:
        """Probability of pneumonia for many films in batches: the steps of a deletion curve."""
        return 1 / (1 + np.exp(-self._log_odds(films)))

    def _log_odds(self, films: Sequence[np.ndarray]) -> np.ndarray:
        with self.lock:
            output = _compiled_predict(self.model, self._batch(films)).astype(np.float64)
        return self.score(output)

    def features(self, films: Sequence[np.ndarray]) -> np.ndarray:
        """What the model's output layer reads, per film: where the familiarity check measures."""
        with self.lock:
            return _compiled_predict(self._features, self._batch(films))

    def _batch(self, films: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.prepare(film) for film in films])

    @staticmethod
    def score(output):
        """What the gradient methods explain: the log-odds of pneumonia (any array or tensor)."""
        return output[:, 1] - output[:, 0]

    @staticmethod
    def score_of_softmax(probabilities):
        """The same log-odds from ScoreCAM's view, which applies a softmax to the output first."""
        return keras.ops.log(probabilities[:, 1] + _TINY) - keras.ops.log(probabilities[:, 0] + _TINY)

    def layer_title(self, layer: str) -> str:
        """A layer's name as the page shows it: "sub-model/layer" when it came from a nested model."""
        return self.layer_paths.get(layer, layer)


def flatten(model: keras.Model) -> tuple[keras.Model, list[str], dict[str, str]]:
    """A copy of ``model`` with every nested sub-model inlined, and the copied weights.

    Keras gives a layer used in two graphs two outputs, and tf-keras-vis reads ``layer.output``,
    so the flat graph is built from fresh copies of the layers, not shared ones. Returns the
    flat model, the names of the inlined sub-models and, for their layers, "sub/layer" labels.
    """
    if len(model.inputs) != 1:
        raise ModelLoadError(f"the model has {len(model.inputs)} inputs; pneumo needs one image input")
    copies: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []
    nested: list[str] = []
    labels: dict[str, str] = {}
    taken: set[str] = set()

    def copy(layer: keras.layers.Layer, within: str) -> keras.layers.Layer:
        config = layer.get_config()
        name = layer.name if layer.name not in taken else f"{within or 'outer'}_{layer.name}"
        taken.add(name)
        config["name"] = name
        new = layer.__class__.from_config(config)
        copies.append((layer, new))
        if within:
            labels[name] = f"{within}/{layer.name}"
        return new

    def fresh(layer: keras.layers.Layer, within: str) -> keras.layers.Layer:
        return layer if isinstance(layer, keras.Model) else copy(layer, within)

    def run(sub: keras.Model, x, within: str):
        if isinstance(sub, keras.Sequential):
            for layer in sub.layers:
                x = call(fresh(layer, within), within, x)
            return x
        # A model built as keras.Model([inp], out) (or saved by tf.keras 2) keeps its input as a list.
        structured = [x] if isinstance(sub.input, list | tuple) else x
        outputs = keras.models.clone_model(
            sub, input_tensors=structured, clone_function=lambda layer: fresh(layer, within),
            call_function=lambda layer, *args, **kwargs: call(layer, within, *args, **kwargs)).outputs
        return outputs[0] if len(outputs) == 1 else outputs

    def call(layer, within: str, *args, **kwargs):
        if isinstance(layer, keras.Model):  # a nested model, never copied: inline its layers
            if len(layer.inputs) != 1:
                raise ModelLoadError(f"the nested model {layer.name} takes {len(layer.inputs)} inputs; pneumo can "
                                     "only inline nested models of one input")
            nested.append(layer.name)
            return run(layer, args[0], f"{within}/{layer.name}" if within else layer.name)
        return layer(*args, **kwargs)

    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    outputs = run(model, inputs, "")
    flat = keras.Model(inputs, outputs, name=f"{model.name}_flat")
    for original, new in copies:
        new.set_weights(original.get_weights())
    return flat, nested, labels


def _dims(shape: tuple) -> str:
    """A tensor shape without the batch, as a reader writes it: 224 x 224 x 3 (any: not fixed)."""
    return " x ".join("any" if d is None else str(d) for d in shape) or "1"


def _detect(model: keras.Model, nested: list[str], activation: str, head: str, names: list[tuple[str, str]]
            ) -> Detected:
    notes = []
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ModelLoadError(f"the model's input is {_dims(shape)}; pneumo needs an image of height x width x 1 or 3")
    height, width = shape[0] or DEFAULT_SIZE, shape[1] or DEFAULT_SIZE
    if None in shape[:2]:
        notes.append(f"input size not fixed: images are given at {height} x {width}")
    if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) not in ((1,), (2,)):
        found = " and ".join(_dims(tuple(o.shape[1:])) for o in model.outputs)
        raise ModelLoadError(f"the model gives {len(model.outputs)} output(s) of {found} values; pneumo needs one "
                             "output of 1 value (a sigmoid or a logit) or of 2 (softmax probabilities or logits)")
    outputs = model.outputs[0].shape[-1]
    squash = "sigmoid" if outputs == 1 else "softmax"
    taken = (f"before the {activation}" if activation in _SQUASHING else
             "the logit" if outputs == 1 else "the difference of the logits")
    notes.append(f"saliency maps explain the log-odds of pneumonia ({taken}; pneumo applies the {squash} itself "
                 "for the number shown): they stay informative where the probability rounds to 100 %")
    targets, default = _targets(model)
    if not targets:  # a dense-only model (e.g. a small MLP on 28 x 28 films) still gives a probability
        notes.append("no layer with feature maps (height x width x channels): the CAM methods have nothing to "
                     "weigh; SmoothGrad, which works on the pixels, explains this model")
    scaling = [layer.name for layer in model.layers if isinstance(layer, _SCALING_LAYERS)]
    preprocessing, reason = (("none", "the model scales its input itself") if scaling else
                             guess_preprocessing(names, [layer.name for layer in model.layers]))
    return Detected(int(height), int(width), int(shape[-1]), int(outputs), activation, head, scaling, nested,
                    targets, default, notes, preprocessing, reason)


def _targets(model: keras.Model) -> tuple[list[str], str]:
    """Layers after the first conv whose output is a feature map; the default is the last one
    that is not pooling (a map at the finest resolution the decision still depends on)."""
    layers = model.layers
    first_conv = next((i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)), None)
    if first_conv is None:
        return [], ""
    maps = [layer for layer in layers[first_conv:] if len(layer.output.shape) == 4 and
            min(layer.output.shape[1] or 2, layer.output.shape[2] or 2) > 1]
    default = next((layer for layer in reversed(maps) if not isinstance(layer, _NOT_DEFAULT_TARGET)),
                   maps[-1] if maps else None)
    return [layer.name for layer in maps], default.name if default else ""


def _logits(flat: keras.Model) -> tuple[keras.KerasTensor, str, str]:
    """The flat model's output before its final sigmoid or softmax, that activation's name, and
    the last layer in words.

    The last layer's own copy is made linear (an ``Activation`` or ``Softmax`` layer is simply
    left out); the flat graph itself is left as it is.
    """
    output = flat.outputs[0]
    last = output._keras_history.operation
    units = output.shape[-1]
    kind = type(last).__name__
    if isinstance(last, keras.layers.Softmax):
        return last.input, "softmax", "a Softmax layer"
    name = getattr(getattr(last, "activation", None), "__name__", "linear")
    if isinstance(last, keras.layers.Activation):
        head = f"an Activation({name}) layer"
    elif not hasattr(last, "activation"):
        head = f"a {kind} layer"
    else:
        head = f"a linear {kind}({units})" if name == "linear" else f"{kind}({units}, {name})"
    if name not in _SQUASHING:
        return output, name, head
    if isinstance(last, keras.layers.Activation):
        return last.input, name, head
    linear = last.__class__.from_config({**last.get_config(), "activation": "linear"})
    logits = linear(last.input)
    linear.set_weights(last.get_weights())
    return logits, name, head


def _log_odds_model(inputs: keras.KerasTensor, logits: keras.KerasTensor, detected: Detected, index: int
                    ) -> keras.Model:
    """A model over the flat graph whose output is ``[-s/2, s/2]``, ``s`` the log-odds of pneumonia."""
    if detected.outputs == 1:
        s = logits[:, :1]
    elif detected.output_activation == "sigmoid":  # two independent sigmoid units: one is pneumonia
        s = logits[:, index:index + 1]
    else:  # softmax: log(p_i / p_j) = z_i - z_j
        s = logits[:, index:index + 1] - logits[:, 1 - index:2 - index]
    pair = keras.layers.Concatenate(name="log_odds_pair")([-0.5 * s, 0.5 * s])
    return keras.Model(inputs, pair, name="pneumonia_log_odds")

"""One model, whatever its origin, turning one grayscale film into a probability of pneumonia.

A run's ``best.keras`` takes raw 0-255 grey and holds its own preprocessing. A model trained
elsewhere may want 3 channels, another size, its inputs scaled outside the model, two softmax
outputs, and keep its conv base as a nested sub-model. ``Predictor`` detects all of this (and
says what it found), copies the model into one flat graph so saliency methods can reach any
conv layer, and serialises calls so browser sessions sharing it get their own answers.

The flat graph stops before the model's final sigmoid or softmax: it outputs the **log-odds**
of pneumonia. A confident model's sigmoid saturates (exactly 1.0 in float32), and every
gradient of a saturated probability is 0, so maps of the probability go blank exactly when
the model is surest. Saliency explains the log-odds, the standard practice (tf-keras-vis'
``ReplaceToLinear`` does the same, by cloning the model on every call); the probability is
the sigmoid of the log-odds, taken in float64.
"""

from __future__ import annotations

import copy
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from pneumo.training.models import IMAGENET_BGR_MEAN

# How pixels 0-255 become the model's input when the model does not do it itself.
PREPROCESSING = {
    "none": "none: raw 0–255 (the model scales its input itself)",
    "unit": "0–1 (divide by 255)",
    "symmetric": "−1…1 (divide by 127.5, subtract 1)",
    "caffe": 'ImageNet "caffe" (subtract the BGR channel means: keras.applications ResNet50/VGG)',
}
DEFAULT_SIZE = 224  # for a model whose input size is not fixed
_SCALING_LAYERS = (keras.layers.Rescaling, keras.layers.Normalization)
_NOT_DEFAULT_TARGET = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout)
_SQUASHING = ("sigmoid", "softmax")
_TINY = 1e-38  # keeps log(0) finite where ScoreCAM's softmax underflows in float32


class ModelLoadError(ValueError):
    """A model file pneumo cannot use; the message says why, for the user."""


@dataclass(frozen=True)
class Detected:
    """What was found in a model, for the page to show."""

    height: int
    width: int
    channels: int
    outputs: int  # 1 (sigmoid) or 2 (softmax)
    output_activation: str  # the final activation found in the model, taken off the flat graph (or "linear")
    builtin_preprocessing: list[str]  # names of scaling layers inside the model
    nested: list[str]  # sub-models inlined into the flat copy
    targets: list[str]  # layers with spatial (H x W x C) output, saliency targets, graph order
    default_target: str
    notes: list[str]

    @property
    def suggested_preprocessing(self) -> str:
        if self.builtin_preprocessing:
            return "none"
        if any(name.startswith(("resnet", "vgg")) for name in self.nested):
            return "caffe"
        return "unit"

    def describe(self) -> list[str]:
        out = [f"input {self.height} x {self.width} x {self.channels} "
               f"({'grey' if self.channels == 1 else 'RGB: the grey film is copied into 3 channels'})",
               "output: one sigmoid unit (probability of pneumonia)" if self.outputs == 1 else
               f"output: two {self.output_activation} units (one per class)",
               ("preprocessing inside the model: " + ", ".join(self.builtin_preprocessing))
               if self.builtin_preprocessing else "no preprocessing layer inside the model: choose how to scale pixels"]
        if self.nested:
            out.append(f"nested sub-model(s) {', '.join(self.nested)}: flattened so their conv layers can be reached")
        return out + self.notes


def load_file(path: Path) -> keras.Model:
    """Load a .keras or .h5 model with ``safe_mode=True``: code hidden in a file is refused."""
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text or "arbitrary code" in text:
            raise ModelLoadError("the model contains code (a Lambda layer or a custom function), which pneumo does "
                                 "not run from an uploaded file (Keras safe_mode). Rebuild it with built-in layers."
                                 ) from exc
        if "Unknown layer" in text or "Could not locate" in text:
            raise ModelLoadError(f"the model uses a layer Keras does not know ({text.splitlines()[0][:200]}); "
                                 "custom layers cannot be loaded here") from exc
        raise ModelLoadError(f"not a loadable Keras model ({type(exc).__name__}: {text[:300]})") from exc


def load_bytes(data: bytes) -> keras.Model:
    """Load uploaded model bytes. They go to a private temporary folder under a fixed name
    chosen by their content (a .keras file is a zip, .h5 is HDF5), never the upload's name."""
    if data.startswith(b"PK\x03\x04"):
        suffix = ".keras"
    elif data.startswith(b"\x89HDF\r\n\x1a\n"):
        suffix = ".h5"
    else:
        raise ModelLoadError("not a Keras model file: a .keras file is a zip archive and an .h5 file is HDF5, "
                             "and this is neither")
    with tempfile.TemporaryDirectory(prefix="pneumo-upload-") as folder:
        path = Path(folder) / f"model{suffix}"
        path.write_bytes(data)
        return load_file(path)


class Predictor:
    """A loaded model made flat, with the preprocessing and pneumonia output it needs.

    ``model`` outputs two columns, ``[-s/2, s/2]`` where ``s`` is the log-odds of pneumonia:
    a softmax over them gives back the probability, so tf-keras-vis' ScoreCAM (which applies a
    softmax to the output itself) and the gradient methods see the same score.
    """

    def __init__(self, model: keras.Model, preprocessing: str | None = None, pneumonia_index: int = 1) -> None:
        flat, nested, self.layer_paths = flatten(model)  # layer_paths: layer name -> "sub-model/layer"
        logits, activation = _logits(flat)
        self.detected = _detect(flat, nested, activation)
        # One log-odds model per choice of pneumonia output, built once and shared by every copy.
        self._models = {i: _log_odds_model(flat.inputs[0], logits, self.detected, i)
                        for i in ((0,) if self.detected.outputs == 1 else (0, 1))}
        self.lock = threading.Lock()  # Keras models are shared by every browser session
        self._choose(preprocessing or self.detected.suggested_preprocessing, pneumonia_index)

    def configured(self, preprocessing: str, pneumonia_index: int = 1) -> Predictor:
        """The same model (and lock) with other user choices: what each browser session holds."""
        other = copy.copy(self)
        other._choose(preprocessing, pneumonia_index)
        return other

    def _choose(self, preprocessing: str, pneumonia_index: int) -> None:
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING)}")
        if pneumonia_index not in (0, 1):
            raise ValueError("the pneumonia output is 0 or 1")
        self.preprocessing = preprocessing
        self.index = 0 if self.detected.outputs == 1 else pneumonia_index
        self.model = self._models[self.index]

    @property
    def size(self) -> tuple[int, int]:
        return self.detected.height, self.detected.width

    def as_seen(self, gray: np.ndarray) -> np.ndarray:
        """The film squashed to the model's input size, as uint8 grey: what the model sees."""
        h, w = self.size
        if gray.shape == (h, w):
            return gray
        return np.asarray(Image.fromarray(gray).resize((w, h), Image.BILINEAR, reducing_gap=2.0))

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
        return x

    def log_odds(self, gray: np.ndarray) -> float:
        """log(p / (1 - p)) of pneumonia for one film: finite where the probability rounds to 1."""
        with self.lock:
            output = np.asarray(self.model(self.prepare(gray), training=False), dtype=np.float64)
        return float(self.score(output)[0])

    def probability(self, gray: np.ndarray) -> float:
        """Probability of pneumonia for one film."""
        return float(1 / (1 + np.exp(-self.log_odds(gray))))

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
            nested.append(layer.name)
            return run(layer, args[0], f"{within}/{layer.name}" if within else layer.name)
        return layer(*args, **kwargs)

    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    outputs = run(model, inputs, "")
    flat = keras.Model(inputs, outputs, name=f"{model.name}_flat")
    for original, new in copies:
        new.set_weights(original.get_weights())
    return flat, nested, labels


def _detect(model: keras.Model, nested: list[str], activation: str) -> Detected:
    notes = []
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ModelLoadError(f"the model's input is {shape}; pneumo needs an image of height x width x 1 or 3")
    height, width = shape[0] or DEFAULT_SIZE, shape[1] or DEFAULT_SIZE
    if None in shape[:2]:
        notes.append(f"input size not fixed: images are given at {height} x {width}")
    if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) not in ((1,), (2,)):
        found = [tuple(o.shape[1:]) for o in model.outputs]
        raise ModelLoadError(f"the model's output is {found}; pneumo needs one sigmoid unit or two softmax units")
    outputs = model.outputs[0].shape[-1]
    expected = "sigmoid" if outputs == 1 else "softmax"
    if activation in _SQUASHING:
        notes.append(f"the final {activation} is applied by pneumo, so saliency maps explain the log-odds of "
                     "pneumonia, which stay informative where the probability rounds to 100 %")
    else:
        notes.append(f"the last layer's activation is {activation}, not {expected}: its outputs are taken as "
                     f"logits and pneumo applies {expected} to them")
    targets, default = _targets(model)
    if not targets:
        raise ModelLoadError("the model has no layer with a spatial (height x width x channels) output, "
                             "so there is nothing for saliency maps to look at")
    scaling = [layer.name for layer in model.layers if isinstance(layer, _SCALING_LAYERS)]
    return Detected(int(height), int(width), int(shape[-1]), int(outputs), activation, scaling, nested, targets,
                    default, notes)


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


def _logits(flat: keras.Model) -> tuple[keras.KerasTensor, str]:
    """The flat model's output before its final sigmoid or softmax, and that activation's name.

    The last layer's own copy is made linear (an ``Activation`` or ``Softmax`` layer is simply
    left out); the flat graph itself is left as it is.
    """
    output = flat.outputs[0]
    last = output._keras_history.operation
    if isinstance(last, keras.layers.Softmax):
        return last.input, "softmax"
    name = getattr(getattr(last, "activation", None), "__name__", "linear")
    if name not in _SQUASHING:
        return output, name
    if isinstance(last, keras.layers.Activation):
        return last.input, name
    linear = last.__class__.from_config({**last.get_config(), "activation": "linear"})
    logits = linear(last.input)
    linear.set_weights(last.get_weights())
    return logits, name


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

"""Model builders: a custom CNN and ResNet50 transfer learning.

Every model takes the raw grayscale image (0-255, H x W x 1): augmentation, rescaling, grey to
RGB and the ImageNet normalisation are layers inside it, all built-in and serializable, so a
saved ``.keras`` file loads with ``safe_mode=True`` and nothing else needs to know how it
was fed. ResNet50 is built flat (``input_tensor``), so its conv layers are layers of the
model itself and saliency methods can reach them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import keras
import pandas as pd

from pneumo.training.augment import augmentation_layers
from pneumo.training.config import TrainConfig

RESNET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + RESNET_WEIGHTS_FILE)
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)  # keras.applications.resnet50.preprocess_input ("caffe")
_BASE_LAYER = re.compile(r"^(conv\d|pool\d)_")  # the names keras.applications gives ResNet50's layers


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be loaded; the message says what to do instead."""


def imagenet_weights_path() -> Path:
    """Where Keras looks for (and downloads) the ResNet50 ImageNet weights."""
    return Path(keras.src.backend.config.keras_home()) / "models" / RESNET_WEIGHTS_FILE


def build(config: TrainConfig) -> keras.Model:
    """The model a config asks for, compiled by the caller."""
    if config.model == "cnn":
        return build_cnn(config)
    return build_resnet50(config)


def _input_and_augment(config: TrainConfig) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input((config.image_size, config.image_size, 1), name="image")
    x = inputs
    for layer in augmentation_layers(config.augmentation, config.seed):
        x = layer(x)
    return inputs, x


def build_cnn(config: TrainConfig) -> keras.Model:
    """Conv blocks (Conv2D + BatchNorm + ReLU + MaxPool), filters doubling, then a small head."""
    inputs, x = _input_and_augment(config)
    x = keras.layers.Rescaling(1 / 255, name="rescale")(x)
    # Each film standardised by its own mean and spread: exposure and contrast differ between
    # the Kermany train and test films more than within train; this alone took the default
    # CNN's test AUC from 0.959 to 0.969 (README, Performance).
    x = keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, name="standardize")(x)
    for block in range(config.cnn_blocks):
        filters = min(512, config.cnn_filters * 2**block)
        # A strided first conv halves the side where pooling would, without the full-size
        # activations that make the first block the slowest on a CPU.
        stride = 2 if block == 0 and config.cnn_strided_stem else 1
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                                name=f"block{block + 1}_conv")(x)
        # momentum 0.9, not Keras' 0.99: the moving statistics start at variance 1 and must reach
        # the real (much smaller) variance within the first epoch, or early validation scores are
        # those of a saturated model (every prediction 1.0).
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{block + 1}_bn")(x)
        x = keras.layers.ReLU(name=f"block{block + 1}_relu")(x)
        if stride == 1:
            x = keras.layers.MaxPooling2D(name=f"block{block + 1}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    if config.cnn_dense:
        x = keras.layers.Dense(config.cnn_dense, activation="relu", name="dense")(x)
        x = keras.layers.Dropout(config.dropout, name="dropout_dense")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="pneumo_cnn")


def build_resnet50(config: TrainConfig) -> keras.Model:
    """ResNet50 base (frozen for phase 1) + GlobalAveragePooling -> Dense(L2) -> Dropout -> sigmoid.

    Raises WeightsUnavailable at once when ImageNet weights are asked for and cannot be had:
    training from scratch while the UI says "transfer" would be a silent lie.
    """
    inputs, x = _input_and_augment(config)
    x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = keras.layers.Normalization(mean=list(IMAGENET_BGR_MEAN), variance=[1.0, 1.0, 1.0], name="imagenet_norm")(x)
    weights = {"imagenet": "imagenet", "none": None}.get(config.weights, config.weights)
    try:
        base = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=x)
    except Exception as exc:  # download and file errors come in many types
        raise WeightsUnavailable(_weights_message(config.weights, exc)) from exc
    features = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
    features = keras.layers.Dense(256, activation="relu", kernel_regularizer=keras.regularizers.L2(config.l2),
                                  name="head_dense")(features)
    features = keras.layers.Dropout(config.dropout, name="head_dropout")(features)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="pneumonia")(features)
    model = keras.Model(inputs, outputs, name="pneumo_resnet50")
    set_unfrozen(model, 0)
    return model


def _weights_message(weights: str, exc: Exception) -> str:
    if weights == "imagenet":
        return (f"ImageNet weights for ResNet50 could not be downloaded ({type(exc).__name__}: {exc}). "
                f"Offline? Download {RESNET_WEIGHTS_URL} elsewhere and place it as {imagenet_weights_path()}, "
                "or give the path of that .h5 file as the weights, or choose weights 'none' to train from scratch.")
    return f"Could not load ResNet50 weights from {weights}: {exc}"


def base_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """ResNet50's own layers inside a flat model, in graph order."""
    return [layer for layer in model.layers if _BASE_LAYER.match(layer.name)]


def set_unfrozen(model: keras.Model, k: int) -> None:
    """Freeze the ResNet50 base except its top ``k`` layers; the head always trains.

    BatchNormalization layers stay frozen whatever ``k`` is: a frozen Keras 3 BN runs in
    inference mode, and letting BN statistics update on small batches is the known cause
    of collapsed transfer runs.
    """
    base = base_layers(model)
    base_ids = {id(layer) for layer in base}
    top = {id(layer) for layer in base[len(base) - k:]} if k > 0 else set()
    for layer in model.layers:
        if id(layer) in base_ids:
            layer.trainable = id(layer) in top and not isinstance(layer, keras.layers.BatchNormalization)
        elif layer.weights:
            layer.trainable = True


def trainable_blocks(model: keras.Model, k: int) -> pd.DataFrame:
    """Per ResNet50 block (conv1, conv2_block1 ... conv5_block3) and the head: does it train at depth ``k``?

    ``trains`` is "all", "some" or "none" of the block's trainable-capable layers. Sets the
    model's trainable flags to depth ``k``.
    """
    set_unfrozen(model, k)
    groups: dict[str, list[keras.layers.Layer]] = {}
    for layer in base_layers(model):
        groups.setdefault(re.sub(r"^(conv\d(?:_block\d+)?|pool\d)_.*$", r"\1", layer.name), []).append(layer)
    groups["head"] = [la for la in model.layers if la.weights and not _BASE_LAYER.match(la.name)]
    rows = []
    for block, layers in groups.items():
        if not any(la.weights for la in layers):
            continue  # pool1_pad, pool1_pool: nothing to train
        learnable = [la for la in layers if la.weights and not isinstance(la, keras.layers.BatchNormalization)]
        training = sum(la.trainable for la in learnable)
        rows.append({
            "block": block,
            "stage": block.split("_")[0],
            "params": sum(_count(la.weights) for la in layers),
            "trainable params": sum(_count(la.trainable_weights) for la in layers),
            "trains": "none" if not training else "all" if training == len(learnable) else "some",
        })
    return pd.DataFrame(rows)


def trainable_params(model: keras.Model) -> int:
    return _count(model.trainable_weights)


def _count(weights: list) -> int:
    return int(sum(math.prod(w.shape) for w in weights))

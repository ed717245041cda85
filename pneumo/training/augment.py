"""Data augmentation as Keras preprocessing layers: seeded, and active only in training.

The layers sit at the front of the model, so the same pixels reach the network however it is
fed (tf.data, arrays, the Predict page) and a saved model carries no augmentation at
inference: Keras' random layers are the identity unless ``training=True``.

Keras is imported only where layers are made: the settings here are read by every page and
by ``python -m pneumo runs``, which should not wait for TensorFlow to load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Transform:
    """One augmentation transform as the form and the CLI offer it and ``Augmentation.problems`` checks it."""

    help: str
    high: float | None = None  # the largest magnitude accepted (the smallest is 0); None: an on/off switch


# Magnitudes are Keras' own factors: rotation as a fraction of a full turn, zoom and shift as a
# fraction of the image side, brightness as a fraction of the value range, contrast as a factor.
# Keys are Augmentation's fields, in the order the form shows them.
TRANSFORMS: dict[str, Transform] = {
    "rotation": Transform("Random rotation, as a fraction of a full turn (0.07 = ±25°).", 0.5),
    "zoom": Transform("Random zoom in or out, as a fraction of the image size.", 0.9),
    "shift": Transform("Random shift up/down/left/right, as a fraction of the image size.", 0.5),
    "brightness": Transform("Random brightness change, as a fraction of the grey range.", 0.9),
    "contrast": Transform("Random contrast change (0.2 = contrast scaled by 0.8 to 1.2).", 0.9),
    "flip": Transform("Mirror left-right; best left off: it moves the heart to the wrong side, which never "
                      "happens on a real chest film."),
}


@dataclass(frozen=True)
class Augmentation:
    """Each transform is off at 0 (flip: False)."""

    rotation: float = 0.0
    zoom: float = 0.0
    shift: float = 0.0
    flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Augmentation:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name, value in values.items():
            if isinstance(value, str) or not isinstance(value, int | float):
                raise ValueError(f"augmentation {name} should be a number, not {value!r}")
        return cls(**values)

    def problems(self) -> list[str]:
        out = []
        for name, transform in TRANSFORMS.items():
            value = getattr(self, name)
            if transform.high is not None and not 0 <= value <= transform.high:
                out.append(f"augmentation {name} must be between 0 and {transform.high}, got {value}")
        return out

    @property
    def active(self) -> bool:
        return any(asdict(self).values())


PRESETS: dict[str, Augmentation] = {
    "none": Augmentation(),
    "light": Augmentation(rotation=0.02, zoom=0.1, shift=0.05, brightness=0.1, contrast=0.1),
    # The original ResNet50 pneumonia study: rotation ±25 % of 360°, zoom 25 %, shift 20 %.
    "heavy": Augmentation(rotation=0.25, zoom=0.25, shift=0.2, brightness=0.2, contrast=0.2),
}


def preset_name(augmentation: Augmentation) -> str:
    """The preset an augmentation equals, or 'custom'."""
    return next((name for name, preset in PRESETS.items() if preset == augmentation), "custom")


def augmentation_layers(augmentation: Augmentation, seed: int) -> list[keras.layers.Layer]:
    """The preprocessing layers for the chosen transforms, in a fixed order, each seeded."""
    import keras

    a = augmentation
    candidates = [
        (a.flip, lambda s: keras.layers.RandomFlip("horizontal", seed=s, name="aug_flip")),
        (a.rotation, lambda s: keras.layers.RandomRotation(a.rotation, fill_mode="constant", seed=s,
                                                           name="aug_rotation")),
        (a.zoom, lambda s: keras.layers.RandomZoom(a.zoom, a.zoom, fill_mode="constant", seed=s, name="aug_zoom")),
        (a.shift, lambda s: keras.layers.RandomTranslation(a.shift, a.shift, fill_mode="constant", seed=s,
                                                           name="aug_shift")),
        (a.brightness, lambda s: keras.layers.RandomBrightness(a.brightness, value_range=(0, 255), seed=s,
                                                               name="aug_brightness")),
        (a.contrast, lambda s: keras.layers.RandomContrast(a.contrast, value_range=(0, 255), seed=s,
                                                           name="aug_contrast")),
    ]
    return [make(seed + i) for i, (on, make) in enumerate(candidates) if on]


def preview(image: np.ndarray, augmentation: Augmentation, count: int = 8, seed: int = 0) -> np.ndarray:
    """``count`` augmented copies of one uint8 image, exactly as training would draw them."""
    import keras

    batch = np.repeat(np.asarray(image, np.float32)[None, ..., None], count, axis=0)
    for layer in augmentation_layers(augmentation, seed):
        batch = layer(batch, training=True)
    return np.clip(keras.ops.convert_to_numpy(batch)[..., 0], 0, 255).astype(np.uint8)

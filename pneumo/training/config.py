"""A training run's configuration: one dataclass, validated before anything starts.

The same object backs the Train page form, the CLI options and the run's ``config.json``,
so every option exists in all three and a run folder says how to reproduce it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from pneumo.training.augment import PRESETS, Augmentation

MODELS = ("cnn", "resnet50")
IMAGE_SIZES = (64, 96, 128, 160, 192, 224)
RESNET50_BASE_LAYERS = 174  # layers of keras.applications.ResNet50(include_top=False), input excluded


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a run. Defaults are the recommended classroom settings."""

    dataset: str = "synthetic"
    image_size: int = 160
    val_fraction: float = 0.1
    model: str = "cnn"
    # Custom CNN: blocks of Conv2D + BatchNorm + ReLU + MaxPool, filters doubling each block.
    cnn_filters: int = 16
    cnn_blocks: int = 5
    cnn_dense: int = 0  # units of an extra dense layer before the output; 0 = none (learns fastest)
    dropout: float = 0.3
    # ResNet50 transfer learning.
    weights: str = "imagenet"  # "imagenet", "none" or a path to a .h5 weights file
    unfreeze: int = 0  # top K base layers trained in phase 2; 0 skips phase 2
    l2: float = 1e-4
    # Optimisation.
    epochs: int = 8  # phase 1 (the only phase for the CNN)
    fine_tune_epochs: int = 5  # phase 2 (ResNet50 with unfreeze > 0)
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    class_weights: bool = True
    early_stopping: int = 5  # patience in epochs; 0 = off
    restore_best: bool = True
    reduce_lr: int = 2  # ReduceLROnPlateau patience in epochs; 0 = off
    cyclical_lr: bool = False
    clr_min: float = 1e-5
    clr_max: float = 1e-4
    clr_step: int = 500  # batches per half cycle
    augmentation: Augmentation = field(default_factory=lambda: PRESETS["light"])
    seed: int = 0
    mixed_precision: bool = True  # used only on a GPU
    name: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild from ``to_dict`` output; unknown keys are ignored, wrong types raise ValueError."""
        defaults = cls()
        values = {}
        for f in fields(cls):
            if f.name not in data or f.name == "augmentation":
                continue
            value, expected = data[f.name], type(getattr(defaults, f.name))
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if not ok or (expected is not bool and isinstance(value, bool)):
                raise ValueError(f"{f.name} should be {expected.__name__}, not {value!r}")
            values[f.name] = value
        augmentation = data.get("augmentation") or {}
        if not isinstance(augmentation, dict):
            raise ValueError(f"augmentation should be an object, not {augmentation!r}")
        return cls(**values, augmentation=Augmentation.from_dict(augmentation))

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)

    @property
    def two_phase(self) -> bool:
        return self.model == "resnet50" and self.unfreeze > 0 and self.fine_tune_epochs > 0

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune_epochs if self.two_phase else 0)

    def problems(self) -> list[str]:
        """Everything wrong with this config, in words for the user; empty when it is valid."""
        out = []
        if not self.dataset.strip():
            out.append("choose a data set")
        if self.model not in MODELS:
            out.append(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not 32 <= self.image_size <= 512:
            out.append(f"image size must be between 32 and 512 px, got {self.image_size}")
        if not 0 <= self.val_fraction <= 0.5:
            out.append("the validation share must be between 0 and 50 %")
        if not 1 <= self.cnn_blocks <= 6:
            out.append("the CNN needs 1 to 6 conv blocks")
        elif self.model == "cnn" and self.image_size < 2**self.cnn_blocks:
            out.append(f"{self.cnn_blocks} conv blocks need images of at least {2**self.cnn_blocks} px")
        if not 4 <= self.cnn_filters <= 256:
            out.append("the CNN's first block needs 4 to 256 filters")
        if not 0 <= self.cnn_dense <= 2048:
            out.append("the dense layer must have 0 to 2048 units")
        if not 0 <= self.dropout < 1:
            out.append("dropout must be at least 0 and below 1")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).expanduser().is_file():
            out.append(f"weights must be 'imagenet', 'none' or an existing .h5 file; {self.weights!r} not found")
        if not 0 <= self.unfreeze <= RESNET50_BASE_LAYERS:
            out.append(f"unfreeze depth must be between 0 and {RESNET50_BASE_LAYERS} (all of ResNet50's layers)")
        if self.epochs < 1 or self.fine_tune_epochs < 0:
            out.append("train for at least one epoch (fine-tune epochs may be 0)")
        if not 1 <= self.batch_size <= 1024:
            out.append("batch size must be between 1 and 1024")
        for name in ("learning_rate", "fine_tune_learning_rate", "clr_min", "clr_max"):
            if not 0 < getattr(self, name) < 1:
                out.append(f"{name.replace('_', ' ')} must be between 0 and 1")
        if self.cyclical_lr and (self.clr_min >= self.clr_max or self.clr_step < 1):
            out.append("cyclical learning rate needs min < max and a step of at least 1 batch")
        if self.early_stopping < 0 or self.reduce_lr < 0:
            out.append("patience values cannot be negative")
        out.extend(self.augmentation.problems())
        return out

"""A training run's configuration: one dataclass, validated before anything starts.

The same object backs the Train page form, the CLI options and the run's ``config.json``,
so every option exists in all three and a run folder says how to reproduce it. ``OPTIONS``
holds each field's label, help and accepted values, read by the form, the CLI and
``TrainConfig.problems``, so none of them can disagree with another.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from pneumo.training.augment import PRESETS, Augmentation

MODELS = ("cnn", "resnet50")
LR_SCHEDULES = ("plateau", "one-cycle", "triangular")
FORM_IMAGE_SIZES = (64, 96, 128, 160, 192, 224)  # the training image sizes the Train form offers
MAX_NAME_CHARS = 80  # a run name: a label, not a document
RESNET50_BASE_LAYERS = 174  # layers of keras.applications.ResNet50(include_top=False), input excluded


@dataclass(frozen=True)
class Option:
    """How one TrainConfig field is offered (form label, help) and what values a run accepts.

    Numbers have ``low``..``high``, inclusive: what ``TrainConfig.problems`` accepts and the range of
    the form's number input, or of its slider when ``step`` is set. ``choices`` are what the form's
    select-slider offers, often fewer than the range accepts; a field with choices and no range
    accepts only its choices. Defaults are not here: they are TrainConfig's own.
    """

    label: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    step: float | None = None
    format: str | None = None  # printf-style, for number inputs whose values need more than two decimals

    def accepted(self) -> str:
        """The values a run accepts, in words ("between 1 and 6"); empty when any value is."""
        if self.low is not None:
            return f"between {self.low} and {self.high}"
        return f"one of {', '.join(map(str, self.choices))}" if self.choices else ""

    def problem(self, value: object) -> str | None:
        """What is wrong with ``value``, in words for the user; None when it is accepted."""
        ok = self.low <= value <= self.high if self.low is not None else not self.choices or value in self.choices
        if ok:
            return None
        # Mid-sentence: lower-case, unless the label starts with an acronym ("L2 on ...").
        noun = self.label if self.label[:2].isupper() else self.label[0].lower() + self.label[1:]
        return f"{noun} must be {self.accepted()}, got {value!r}"


_LEARNING_RATE = {"low": 1e-7, "high": 0.1}

OPTIONS: dict[str, Option] = {
    "dataset": Option("Data set", "Where the images come from: synthetic, synthetic:SEED, pneumoniamnist:SIZE, "
                                  "a .npz file or a Kaggle-layout folder."),
    "image_size": Option("Image size (px)", "Images are squashed to this square size: larger shows finer detail "
                                            "but trains slower.", 32, 512, choices=FORM_IMAGE_SIZES),
    "val_fraction": Option("Validation share", "Share of train carved off as validation, grouped by patient "
                                               "(0 keeps the data set's own val split).", 0.0, 0.5),
    "model": Option("Model", "A small CNN trained from scratch, or ImageNet's ResNet50 with a new head.",
                    choices=MODELS),
    "cnn_filters": Option("Filters in the first block", "Filters of the CNN's first conv block; each next block "
                                                        "doubles them.", 4, 256, choices=(8, 16, 32, 64)),
    "cnn_blocks": Option("Conv blocks", "Conv2D + BatchNorm + ReLU + MaxPool each; each block halves the image side.",
                         1, 6, step=1),
    "cnn_dense": Option("Dense units before the output", "An extra dense layer before the output; 0 = none, the "
                                                         "pooled features feed the output directly (learns fastest).",
                        0, 2048, choices=(0, 32, 64, 128, 256)),
    "cnn_strided_stem": Option("Strided first block", "The first conv block steps two pixels at a time instead "
                                                      "of pooling: about half the training time at the same size."),
    "dropout": Option("Dropout", "Share of features dropped in training, against overfitting.", 0.0, 0.8, step=0.05),
    "weights": Option("Start from", "ResNet50's starting weights: imagenet, none (from scratch) or a path to a .h5 "
                                    "weights file."),
    "unfreeze": Option("Unfreeze depth (top layers trained in phase 2)",
                       "ResNet50 layers unfrozen from the top in phase 2; 0 trains only the new head (the original "
                       "study unfroze 100; BatchNorm layers always stay frozen).", 0, RESNET50_BASE_LAYERS, step=1),
    "l2": Option("L2 on the head's dense layer", "Weight decay on the new head's dense layer, against overfitting.",
                 0.0, 0.1, choices=(0.0, 1e-5, 1e-4, 1e-3, 1e-2)),
    "epochs": Option("Epochs", "Epochs of phase 1 (the only phase for the CNN).", 1, 500),
    "fine_tune_epochs": Option("Fine-tuning epochs (phase 2)", "Epochs of phase 2 (ResNet50 with an unfreeze depth "
                                                               "above 0); 0 skips it.", 0, 500),
    "batch_size": Option("Batch size", "Images per gradient step; larger is faster per epoch but needs more memory.",
                         1, 1024, choices=(8, 16, 32, 64, 128)),
    "learning_rate": Option("Learning rate (Adam)", "Adam's step size in phase 1.", **_LEARNING_RATE,
                            choices=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)),
    "fine_tune_learning_rate": Option("Fine-tuning learning rate", "Adam's step size in phase 2: small, so the "
                                                                   "unfrozen ImageNet features are only nudged.",
                                      **_LEARNING_RATE, choices=(1e-6, 3e-6, 1e-5, 3e-5, 1e-4)),
    "class_weights": Option("Class weights from counts", "Weigh the rarer class (NORMAL) up so both count equally."),
    "early_stopping": Option("Early stopping patience (epochs, 0 = off)",
                             "Stop when val AUC has not improved for this many epochs.", 0, 50),
    "restore_best": Option("Restore the best weights when stopping early",
                           "Keep the epoch with the best val AUC rather than the last one."),
    "lr_schedule": Option("Learning-rate schedule",
                          "plateau: the learning rate, halved when val loss stops improving; one-cycle: up from "
                          "a 25th of it over the first fifth of the steps, then cosine down to zero by the last "
                          "epoch (Smith 2018), a good model in fewer epochs; triangular: up and down between two "
                          "bounds (Smith 2017).", choices=LR_SCHEDULES),
    "reduce_lr": Option("Learning-rate halving patience (epochs, 0 = off)",
                        "Plateau schedule: halve the learning rate when val loss has not improved for this many "
                        "epochs.", 0, 50),
    "clr_min": Option("Cycle's lowest rate", "The cyclical learning rate's bottom.", **_LEARNING_RATE, format="%.0e"),
    "clr_max": Option("Cycle's highest rate", "The cyclical learning rate's top.", **_LEARNING_RATE, format="%.0e"),
    "clr_step": Option("Half cycle (batches)", "Batches from the lowest rate to the highest.", 1, 10_000),
    "seed": Option("Seed", "Same seed, same split and same run.", 0, 2**31 - 1),
    "mixed_precision": Option("Mixed precision on a GPU", "Float16 arithmetic on a GPU, faster and lighter; "
                                                          "ignored on a CPU."),
    "name": Option("Run name (optional)", "How the run is listed; empty lists it by its id."),
}

# The form's starting point where it depends on the model: ResNet50 at ImageNet's own size, and
# fewer head-only epochs since phase 2 trains more. TrainConfig's defaults are the CNN's.
MODEL_DEFAULTS: dict[str, dict] = {"cnn": {}, "resnet50": {"image_size": 224, "epochs": 5}}
# Named starting points for a CNN run, picked on the Train page or with ``--preset``: each sets some
# fields, the others keep TrainConfig's defaults. "demo" is for starting during a lesson: test AUC
# >= 0.95 on the real Kermany set within a quarter of a seed-epoch (README, bench/training_auc.py).
RUN_PRESETS: dict[str, dict] = {"recommended": {}, "demo": {"image_size": 96, "epochs": 2, "lr_schedule": "one-cycle"}}


# Fields added with a default other than how runs saved before them were trained: a config.json
# without the field means this value (a resumed or repeated old run trains as it did).
ABSENT_MEANT: dict[str, object] = {"cnn_strided_stem": False}


def _schedule_of_old_runs(data: dict) -> dict:
    """Runs saved before ``lr_schedule`` said it with two switches, ``one_cycle`` and ``cyclical_lr``."""
    if "lr_schedule" in data or not ({"one_cycle", "cyclical_lr"} & data.keys()):
        return {}
    return {"lr_schedule": "one-cycle" if data.get("one_cycle") else
            "triangular" if data.get("cyclical_lr") else "plateau"}


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
    cnn_strided_stem: bool = True  # first block: a stride-2 conv instead of conv + max-pool
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
    lr_schedule: str = "plateau"  # one of LR_SCHEDULES
    reduce_lr: int = 2  # the plateau schedule's ReduceLROnPlateau patience in epochs; 0 = off
    clr_min: float = 1e-5  # the triangular schedule's bounds and half cycle
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
        """Rebuild from ``to_dict`` output; unknown keys are ignored, wrong types raise ValueError, a
        missing key takes the default, or what its absence meant (``ABSENT_MEANT``)."""
        data = {**ABSENT_MEANT, **_schedule_of_old_runs(data), **data}
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

    @classmethod
    def for_model(cls, model: str, preset: str = "recommended") -> TrainConfig:
        """The settings a run of ``model`` starts from: the defaults with ``MODEL_DEFAULTS`` and, for
        the CNN, the preset's settings applied."""
        return cls(model=model, **MODEL_DEFAULTS[model], **(RUN_PRESETS[preset] if model == "cnn" else {}))

    def settings_key(self) -> str:
        """What makes two runs repeats of one experiment: every setting but the seed and the name."""
        return json.dumps({k: v for k, v in self.to_dict().items() if k not in ("seed", "name")}, sort_keys=True)

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
        out = [] if self.dataset.strip() else ["choose a data set"]
        if len(self.name) > MAX_NAME_CHARS:
            out.append(f"a run name is at most {MAX_NAME_CHARS} characters")
        out.extend(p for name, option in OPTIONS.items() if (p := option.problem(getattr(self, name))))
        blocks_valid = OPTIONS["cnn_blocks"].problem(self.cnn_blocks) is None
        if self.model == "cnn" and blocks_valid and self.image_size < 2**self.cnn_blocks:
            out.append(f"{self.cnn_blocks} conv blocks need images of at least {2**self.cnn_blocks} px")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).expanduser().is_file():
            out.append(f"weights must be 'imagenet', 'none' or an existing .h5 file; {self.weights!r} not found")
        if self.lr_schedule == "triangular" and self.clr_min >= self.clr_max:
            out.append("the triangular schedule needs its lowest rate below its highest")
        out.extend(self.augmentation.problems())
        return out

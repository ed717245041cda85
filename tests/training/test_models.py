import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pneumo.training import models  # noqa: E402
from pneumo.training.augment import PRESETS, Augmentation, augmentation_layers, preset_name  # noqa: E402
from pneumo.training.config import TrainConfig  # noqa: E402

RESNET = TrainConfig(model="resnet50", weights="none", image_size=64, augmentation=PRESETS["light"])


@pytest.fixture(scope="module")
def resnet() -> keras.Model:
    return models.build(RESNET)


def _images(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 1)).astype("float32")


@pytest.mark.parametrize("config", [TrainConfig(image_size=64, cnn_blocks=3), TrainConfig(image_size=96)])
def test_cnn_shapes_and_range(config: TrainConfig) -> None:
    model = models.build(config)
    assert model.input_shape == (None, config.image_size, config.image_size, 1)
    out = model.predict(_images(4, config.image_size), verbose=0)
    assert out.shape == (4, 1) and ((out >= 0) & (out <= 1)).all()
    assert sum(isinstance(la, keras.layers.Conv2D) for la in model.layers) == config.cnn_blocks


def test_resnet_is_flat_with_a_sigmoid_head(resnet: keras.Model) -> None:
    assert not any(isinstance(la, keras.Model) for la in resnet.layers)  # flat: conv layers reachable
    assert resnet.get_layer("conv5_block3_out") is not None
    assert resnet.layers[-1].activation.__name__ == "sigmoid"
    assert resnet.get_layer("head_dense").kernel_regularizer is not None
    out = resnet.predict(_images(2, 64), verbose=0)
    assert out.shape == (2, 1) and ((out >= 0) & (out <= 1)).all()


def test_unfreeze_depth_controls_trainable_layers(resnet: keras.Model) -> None:
    base = models.base_layers(resnet)
    assert len(base) == 174
    frozen = models.trainable_blocks(resnet, 0)
    assert frozen.set_index("block").loc["head", "trains"] == "all"
    assert (frozen["trains"] == "none").sum() == len(frozen) - 1
    head_params = int(frozen["trainable params"].sum())
    assert head_params == models.trainable_params(resnet)
    previous = head_params
    for k in (10, 40, 100, 174):
        blocks = models.trainable_blocks(resnet, k)
        total = int(blocks["trainable params"].sum())
        assert total == models.trainable_params(resnet) > previous
        previous = total
        top = base[-k:]
        assert all(la.trainable == (not isinstance(la, keras.layers.BatchNormalization)) for la in top)
        assert not any(la.trainable for la in base[:-k])
    by_stage = models.trainable_blocks(resnet, 10).groupby("stage")["trainable params"].sum()
    assert by_stage["conv4"] == 0 and by_stage["conv5"] > 0
    assert models.trainable_blocks(resnet, 174).set_index("block").loc["conv1", "trains"] == "all"


def test_batchnorm_stays_frozen_and_in_inference_mode(resnet: keras.Model) -> None:
    models.set_unfrozen(resnet, 174)
    bns = [la for la in models.base_layers(resnet) if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and not any(bn.trainable for bn in bns)
    before = [bn.moving_mean.numpy().copy() for bn in bns[:3]]
    resnet.compile(optimizer="adam", loss="binary_crossentropy", run_eagerly=True)  # one step: tracing costs more
    resnet.fit(_images(8, 64), np.array([0, 1] * 4, "float32"), epochs=1, verbose=0)
    for bn, mean in zip(bns[:3], before, strict=True):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)


@pytest.mark.parametrize("config", [TrainConfig(image_size=64, augmentation=PRESETS["heavy"]),
                                    pytest.param(RESNET, marks=pytest.mark.slow)])
def test_saved_model_reloads_in_safe_mode_with_same_outputs(tmp_path, config: TrainConfig) -> None:
    model = models.build(config)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = _images(3, 64)
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0), atol=1e-5)


def test_augmentation_changes_images_only_in_training() -> None:
    layers = augmentation_layers(PRESETS["heavy"], seed=1)
    assert {la.name for la in layers} == {"aug_rotation", "aug_zoom", "aug_shift", "aug_brightness", "aug_contrast"}
    pipe = keras.Sequential(layers)
    x = _images(2, 32)
    np.testing.assert_array_equal(pipe(x, training=False), x)
    assert np.abs(np.asarray(pipe(x, training=True)) - x).mean() > 1
    assert augmentation_layers(PRESETS["none"], 0) == []
    assert preset_name(Augmentation(flip=True)) == "custom" and preset_name(PRESETS["light"]) == "light"
    assert not Augmentation().flip  # off by default: it puts the heart on the wrong side


def test_offline_imagenet_fails_at_once_with_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import keras.src.backend.config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))  # no cached weights here

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")  # what keras raises offline

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    with pytest.raises(models.WeightsUnavailable) as err:
        models.build(RESNET.with_(weights="imagenet"))
    message = str(err.value)
    assert models.RESNET_WEIGHTS_FILE in message and str(tmp_path / "models") in message
    assert "weights 'none' to train from scratch" in message


def test_config_problems() -> None:
    assert TrainConfig().problems() == []
    bad = TrainConfig(model="vgg", image_size=10, epochs=0, batch_size=0, weights="/no/such.h5", unfreeze=500,
                      lr_schedule="triangular", clr_min=1e-3, clr_max=1e-4, augmentation=Augmentation(rotation=2))
    text = "; ".join(bad.problems())
    for expected in ("model must be", "image size", "epochs must be between 1", "batch size", "not found", "unfreeze",
                     "triangular", "rotation"):
        assert expected in text
    assert TrainConfig.from_dict(TrainConfig(augmentation=PRESETS["heavy"]).to_dict()).augmentation == PRESETS["heavy"]

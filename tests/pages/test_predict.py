"""AppTest of the Predict page: a run's model on examples, uploaded films good and bad, uploaded models
(what was detected, their options, refusals), and the upload limits."""

import io
import shutil
import tomllib
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pneumo.access import LOCAL
from pneumo.data import cache, radiograph
from pneumo.data.sources import parse_spec
from pneumo.explain import familiarity, model_file
from pneumo.explain.model_file import MAX_MODEL_BYTES, load_file
from pneumo.explain.predictor import Predictor
from pneumo.explain.saliency import saliency
from pneumo.files import write_json
from pneumo.runs.store import Run, RunStore
from pneumo.training.config import TrainConfig
from tests import films
from tests.conftest import ROOT, as_read, page_app
from ui import predict as predict_ui


@pytest.fixture
def run(trained_cnn: Path) -> Run:
    """A finished run on the synthetic set whose model is the trained test CNN."""
    run = RunStore().create(TrainConfig(name="tiny cnn", dataset="synthetic", image_size=64, cnn_blocks=4))
    write_json(run.file("status.json"), {**run.status(), "state": "finished"})
    shutil.copy(trained_cnn, run.file("best.keras"))
    return run


def _page(**state) -> AppTest:
    return page_app("predict", **state).run()


def _probability(at: AppTest) -> float:
    return float(at.metric[0].value.rstrip("%")) / 100


def test_no_model_says_what_to_do() -> None:
    at = _page()
    assert not at.exception and "No run has a saved model yet" in at.info[0].value


def test_run_model_on_an_example_with_the_evaluate_threshold(run: Run, trained_cnn: Path) -> None:
    at = _page(thresholds={run.id: 0.3})
    assert not at.exception
    example = at.selectbox(key="pr_example")
    images = cache.load(parse_spec("synthetic"), 64)
    first = images.images[images.records.index[images.records["id"] == example.value][0]]
    empty = not saliency(Predictor(load_file(trained_cnn)), first, "Grad-CAM").any()
    assert empty == any(c.value.startswith("Empty map") for c in at.caption)  # an empty map is explained
    pneumonia = next(o for o in example.options if "PNEUMONIA" in o).split(" · ")[0]
    at = example.set_value(pneumonia).run()
    i = images.records.index[images.records["id"] == pneumonia][0]
    expected = Predictor(load_file(trained_cnn)).probability(images.images[i])
    assert _probability(at) == pytest.approx(expected, abs=0.0006)
    decision = "PNEUMONIA" if expected >= 0.3 else "NORMAL"
    assert any(f"Decision: **{decision}** at threshold 0.300 (tried on the Evaluate page in this browser, not "
               "saved: other browsers decide with the default 0.5)" in m.value for m in at.markdown)
    assert any("of the map lies on it" in c.value for c in at.caption)  # the lesion is known: scored
    assert "Grad-CAM" in [img.caption for img in _images(at)]
    at.button_group(key="pr_methods").set_value(["Grad-CAM", "SmoothGrad"]).run()
    assert not at.exception and {"Grad-CAM", "SmoothGrad"} <= {img.caption for img in _images(at)}


@pytest.mark.parametrize(("tried", "note"), [
    (None, "at threshold 0.400 (saved with the run on the Evaluate page: manual)"),
    (0.4, "at threshold 0.400 (saved with the run on the Evaluate page: manual)"),
    (0.3, "at threshold 0.300 (tried on the Evaluate page in this browser, not saved: other browsers decide with "
          "0.400, the one saved with the run)"),
])
def test_the_threshold_says_whether_other_browsers_decide_alike(run: Run, tried: float | None, note: str) -> None:
    run.save_threshold(0.4, "manual", by=LOCAL)
    try:
        at = _page(thresholds={} if tried is None else {run.id: tried})
        assert not at.exception
        assert any(note in m.value for m in at.markdown), [m.value for m in at.markdown]
    finally:
        run.file("threshold.json").unlink()


def test_what_the_model_knows_and_how_far_to_trust_its_maps(run: Run, trained_cnn: Path) -> None:
    """The run's data set beside the prediction, the familiarity check on an example and on an odd
    upload, the synthetic warning on uploads, deletion/insertion under each map, agreement between maps."""
    images = cache.load(parse_spec("synthetic"), 64)
    split = images.records["split"].to_numpy()
    predictor = Predictor(load_file(trained_cnn))
    familiarity.Familiarity.fit(predictor.features(images.images[split == "train"][:800]),
                                predictor.features(images.images[split == "val"])).save(run.file(familiarity.FILE))
    at = _page()
    text = " ".join(m.value for m in [*at.markdown, *at.caption, *at.warning])
    assert "Model trained on: **Synthetic" in text and "within the range of the run's training films" in text
    assert "Deletion/insertion:" in text and "Insertion minus deletion" in text
    at.button_group(key="pr_methods").set_value(["Grad-CAM", "Grad-CAM++"]).run()
    assert any(c.value.startswith("Grad-CAM and Grad-CAM++ ") for c in at.caption)
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    at.file_uploader(key="pr_image_upload").set_value(("odd.jpg", films.jpeg(), "image/jpeg")).run()  # a ramp, no chest
    warnings = " ".join(w.value for w in at.warning)
    assert not at.exception
    assert "This model was trained on synthetic data" in warnings
    assert "This film is unlike the films the model was trained on" in warnings


def test_a_run_without_a_familiarity_summary_says_so(run: Run) -> None:
    at = _page()
    assert not at.exception and any("No check of how familiar" in c.value for c in at.caption)


def _images(at: AppTest) -> list:
    return [img for element in at.get("image") for img in element.proto.imgs]


def test_uploaded_films_good_and_bad(run: Run) -> None:
    at = _page()
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    at.file_uploader(key="pr_image_upload").set_value(("notes.png", b"hello, not an image", "image/png")).run()
    assert not at.exception
    assert "notes.png** cannot be read: not a JPEG, PNG or DICOM file" in as_read(at.error[0].value)
    dicom = films.dicom(films.gradient().astype(np.uint16) * 16, "MONOCHROME1")
    at.file_uploader(key="pr_image_upload").set_value(("film.dcm", dicom, "application/dicom")).run()
    assert not at.exception and not at.error
    assert 0 <= _probability(at) <= 1
    assert any("MONOCHROME1 inverted" in c.value for c in at.caption)
    assert any("default: no threshold was chosen" in m.value for m in at.markdown)


def test_choices_outlive_the_views_that_hide_them(run: Run) -> None:
    """The example, the target layer and the last upload come back after the other image source was
    shown (as after another page: Streamlit forgets the widgets a run does not draw)."""
    at = _page()
    example = at.selectbox(key="pr_example")
    second = example.options[1].split(" · ")[0]  # options are shown as "id · class"
    example.set_value(second).run()
    layer = at.selectbox(key="pr_layer").options[-1]  # layer names are shown as they are
    at.selectbox(key="pr_layer").set_value(layer).run()
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    at.file_uploader(key="pr_image_upload").set_value(("mine.png", films.png(), "image/png")).run()
    at.segmented_control(key="pr_image_source").set_value("Example").run()
    assert not at.exception and at.selectbox(key="pr_example").value == second
    assert at.selectbox(key="pr_layer").value == layer
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    assert not at.exception and not at.error
    assert any(as_read(c.value).startswith("Your last upload, mine.png (PNG)") for c in at.caption)
    assert any("mine.png (PNG), as the model sees it" in as_read(i.caption) for i in _images(at))


def test_uploaded_nested_two_output_model(tmp_path: Path) -> None:
    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    base = keras.Model(inputs, x, name="base")
    outer = keras.Input((48, 48, 3))
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base(outer)))
    model = keras.Model(outer, y)
    model.save(tmp_path / "m.keras")
    at = _page()
    at.segmented_control(key="pr_source").set_value("Upload a model file").run()
    at.file_uploader(key="pr_model_upload").set_value(("m.keras", (tmp_path / "m.keras").read_bytes(),
                                                       "application/octet-stream")).run()
    assert not at.exception and not at.error
    detected = next(m.value for m in at.markdown if m.value.startswith("**Detected**"))
    assert "nested sub-model(s) base" in detected and "two softmax probabilities" in detected
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    at.file_uploader(key="pr_image_upload").set_value(("x.png", films.png(), "image/png")).run()
    assert not at.exception
    predictor = Predictor(model)
    expected = predictor.configured("unit", 1).probability(films.gradient())
    assert _probability(at) == pytest.approx(expected, abs=0.0006)
    radio = next(r for r in at.radio if r.label == "Which output is pneumonia?")
    at = radio.set_value(0).run()
    assert _probability(at) == pytest.approx(1 - expected, abs=0.0006)


def test_uploaded_model_with_code_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(keras.layers.Lambda(lambda t: -t)(inputs)))
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)).save(tmp_path / "evil.keras")
    at = _page()
    at.segmented_control(key="pr_source").set_value("Upload a model file").run()
    at.file_uploader(key="pr_model_upload").set_value(("evil.keras", (tmp_path / "evil.keras").read_bytes(),
                                                       "application/octet-stream")).run()
    assert not at.exception and "contains code" in at.error[0].value


def test_upload_limit_in_the_config_is_the_largest_library_limit() -> None:
    """config.toml cannot import Python: the server's limit is kept equal to the largest one here."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == max(MAX_MODEL_BYTES, radiograph.MAX_BYTES)


def _upload_model(at: AppTest, name: str, data: bytes) -> AppTest:
    return at.file_uploader(key="pr_model_upload").set_value((name, data, "application/octet-stream")).run()


def _detected(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Detected**"))


def test_uploaded_list_input_and_logit_models_say_what_was_detected(tmp_path: Path) -> None:
    keras.utils.set_random_seed(7)
    inputs = keras.Input((48, 48, 3))
    base = keras.Model([inputs], keras.layers.Conv2D(4, 3, name="conv")(inputs), name="mobilenetv2_1.00_224")
    outer = keras.Input((48, 48, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(outer))
    listed = keras.Model([outer], keras.layers.Dense(1, activation="sigmoid")(pooled))  # as tf.keras 2 saved it
    logits = keras.Model(outer, keras.layers.Dense(2)(pooled))  # trained with from_logits=True
    listed.save(tmp_path / "listed.h5")
    logits.save(tmp_path / "logits.keras")
    at = _page()
    at.segmented_control(key="pr_source").set_value("Upload a model file").run()
    uploader = at.file_uploader(key="pr_model_upload")
    assert "up to 500 MB" in uploader.label and uploader.proto.max_upload_size_mb == MAX_MODEL_BYTES // 2**20
    at = _upload_model(at, "listed.h5", (tmp_path / "listed.h5").read_bytes())
    assert not at.exception and not at.error
    detected = _detected(at)
    assert "output: one sigmoid probability (Dense(1, sigmoid))" in detected
    assert ("pixel scaling guessed from a nested model named mobilenetv2_1.00_224: MobileNetV2 expects −1…1"
            in detected)
    assert _selectbox(at, "Pixel scaling before the model").value == "symmetric"
    at = _upload_model(at, "logits.keras", (tmp_path / "logits.keras").read_bytes())
    assert not at.exception and not at.error
    assert "output: two logits (a linear Dense(2)): pneumo applies softmax" in _detected(at)
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    at = at.file_uploader(key="pr_image_upload").set_value(("x.png", films.png(), "image/png")).run()
    predictor = Predictor(logits)
    expected = {resize: predictor.configured("symmetric", 1, resize).probability(films.gradient())
                for resize in ("bilinear", "nearest")}
    assert _probability(at) == pytest.approx(expected["bilinear"], abs=0.0006)
    at = _selectbox(at, "Resize filter").set_value("nearest").run()
    assert not at.exception and _probability(at) == pytest.approx(expected["nearest"], abs=0.0006)


def _selectbox(at: AppTest, label: str):
    return next(box for box in at.selectbox if box.label == label)


def test_a_model_is_loaded_once_and_a_refusal_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Reruns (a choice changed, a film picked) neither load the model again nor re-check a refused file."""
    calls = []
    load_bytes = predict_ui.load_bytes

    def counted(data: bytes):
        calls.append(len(data))
        return load_bytes(data)

    monkeypatch.setattr(predict_ui, "load_bytes", counted)
    inputs = keras.Input((24, 24, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x), name="loaded_once").save(tmp_path / "m.keras")
    at = _page()
    at.segmented_control(key="pr_source").set_value("Upload a model file").run()
    at = _upload_model(at, "m.keras", (tmp_path / "m.keras").read_bytes())
    at = _selectbox(at, "Pixel scaling before the model").set_value("symmetric").run()
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    assert not at.exception and not at.error and len(calls) == 1
    # A zip that would inflate past the limit (lowered here, rather than writing gigabytes): a message, once.
    monkeypatch.setattr(model_file, "MAX_UNPACKED_BYTES", 2**20)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.weights.h5", bytes(3 * 2**20 + 17))
    at = _upload_model(at, "bomb.keras", bomb.read_bytes())
    assert not at.exception and "**bomb.keras** cannot be used: the" in as_read(at.error[0].value)
    assert "would inflate to 3.0 MB; pneumo opens at most 1.0 MB" in as_read(at.error[0].value)
    at.run()
    assert "would inflate to 3.0 MB" in as_read(at.error[0].value) and len(calls) == 2


def test_uploaded_dense_only_model_gives_a_probability_and_smoothgrad(tmp_path: Path) -> None:
    """A model with no feature maps (a small MLP on 28 x 28 films, as PneumoniaMNIST tutorials train):
    its probability, and the one map that needs no feature maps; the CAM methods say why they cannot."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.save(tmp_path / "mlp.keras")
    at = _page()
    at.segmented_control(key="pr_source").set_value("Upload a model file").run()
    at = _upload_model(at, "mlp.keras", (tmp_path / "mlp.keras").read_bytes())
    assert not at.exception and not at.error
    assert "no layer with feature maps" in _detected(at)
    at.segmented_control(key="pr_image_source").set_value("Upload an image").run()
    at = at.file_uploader(key="pr_image_upload").set_value(("x.png", films.png(), "image/png")).run()
    assert not at.exception and not at.error
    expected = Predictor(model).configured("none", 1).probability(films.gradient())
    assert _probability(at) == pytest.approx(expected, abs=0.0006)
    assert [img.caption for img in _images(at)][-1:] == ["SmoothGrad"]
    at.button_group(key="pr_methods").set_value(["Grad-CAM", "SmoothGrad"]).run()
    assert not at.exception and not at.error
    assert any("Grad-CAM weighs a layer's feature maps, and this model has none" in i.value for i in at.info)
    assert "SmoothGrad" in [img.caption for img in _images(at)]
    assert not any("chest films are at most about 3:1" in w.value for w in at.warning)
    strip = io.BytesIO()
    Image.fromarray(np.full((30, 3000), 128, np.uint8)).save(strip, "PNG")  # 100:1, no record to compare with
    at = at.file_uploader(key="pr_image_upload").set_value(("strip.png", strip.getvalue(), "image/png")).run()
    assert not at.exception
    assert any("This image is 30 x 3000 pixels (100:1)" in w.value for w in at.warning)  # as the caption: h x w

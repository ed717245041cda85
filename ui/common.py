"""Streamlit glue shared by the pages: the sidebar data set picker, cached loading, run pickers
and showing typed text as plain text.

Everything that is not about widgets lives in ``pneumo``; this module only decides what is
shown, remembered in session state, and cached per server.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import script_runner

from pneumo.access import Forbidden, Policy
from pneumo.data import cache, labelled, mnist
from pneumo.data.sources import DatasetError, FolderSource, ImageSet, NpzSource, Source, parse_spec, short_name
from pneumo.paths import default_dataset_spec
from pneumo.runs.store import Run
from pneumo.training.config import TrainConfig

T = TypeVar("T")
KINDS = ("Synthetic", "PneumoniaMNIST", "Folder", "CSV")
CSV_ROLES = {"path": "Image path column", "label": "Label column", "split": "Split column (optional)",
             "patient": "Patient column (optional)"}
NO_COLUMN = "(none)"
WORKING_SIZES = (64, 128, 160, 224)  # the sizes the sidebar decodes a data set at
# Seconds after the first page is drawn before TensorFlow is imported in the background: the
# browser is still drawing that page for a second or two (``import_tensorflow_soon``).
IMPORT_TENSORFLOW_AFTER_S = 4.0


# Charts and tables placed side by side keep at least this width each and wrap onto the next line
# when the screen is narrower: a projector at 1024x768 shows one chart per line, readable, where
# fixed columns squeezed three into 180 px each; a 1920 screen still shows three in a row.
MIN_PLACE_PX = 400
MIN_PICTURE_PX = 300  # pictures (saliency maps) need no axes: two fit beside each other at 1024x768
_STYLE = f"""<style>
[class*="st-key-side_by_side_"] > div {{
  flex: 1 1 {MIN_PLACE_PX}px !important; min-width: min({MIN_PLACE_PX}px, 100%); }}
[class*="st-key-side_by_side_pictures_"] > div {{
  flex: 1 1 {MIN_PICTURE_PX}px !important; min-width: min({MIN_PICTURE_PX}px, 100%); }}
@media (max-width: 1100px) {{ [data-testid="stMainBlockContainer"] {{ padding-left: 1.5rem; padding-right: 1.5rem; }} }}
</style>"""


def page_style() -> None:
    """The app's few layout rules (wrapping rows, narrower margins on a small screen), drawn once
    per rerun by the frame. They hang on Streamlit's documented ``st-key-<key>`` classes."""
    st.html(_STYLE)


def keep_keras_session() -> None:
    """Stops Streamlit clearing Keras' session after every script run. That clearing is a full
    garbage collection, 0.25 s or more of server CPU once TensorFlow is loaded, paid by every rerun of
    every session (a slider move, each Watch poll); pneumo's models are Keras 3 objects in eager mode,
    held in caches, with no graph to clear, and it draws no matplotlib figures for it to close.
    Streamlit offers no setting for this, so its private hook is replaced (tests/pages check it)."""
    script_runner._clean_problem_modules = _nothing_to_clean


def _nothing_to_clean() -> None:
    """Streamlit's end-of-run clean-up, in pneumo: nothing (``keep_keras_session``)."""


@functools.cache
def import_tensorflow_soon() -> threading.Timer:
    """Imports TensorFlow in the background, once per server, a few seconds after the first page
    is drawn. The import takes 5 to 8 s here, and Train (device line, augmentation preview) and
    Predict would otherwise make their first visitor wait for all of it; started at once, it held
    up the first page's own drawing (3.6 -> 5.5 s, bench/app_start.py). It also asks for the GPUs,
    which starts CUDA on a machine that has one. A failed import is left for the page that needs
    TensorFlow to report, with its own message."""
    timer = threading.Timer(IMPORT_TENSORFLOW_AFTER_S, _import_tensorflow)
    timer.name, timer.daemon = "pneumo-import-tensorflow", True
    timer.start()
    return timer


def _import_tensorflow() -> None:
    try:
        from pneumo import device
    except ImportError:
        return
    device.gpus()


def kept(key: str, start: T, draw: Callable[..., T], on_change: Callable[[], None] | None = None,
         options: Collection | None = None) -> T:
    """Draws the widget keyed ``key`` (``draw`` makes it, with that key and no starting value), so
    that its value outlives the runs that do not draw it. Streamlit forgets a widget's value in any
    run that skips it (another page, another view, an upload with no file yet), and a keyed widget
    ignores a new default; so the widget's value is set through session state, which also sets the
    browser's copy: its value now, else its value when last drawn or changed (kept as
    ``<key>_kept``), else ``start``. Set on every run, not only when missing: a run ended by
    ``st.stop()`` keeps the server's value while the browser drops the widget and draws it anew at
    its empty default. Deleting both keys starts it from ``start`` again. ``on_change`` runs after
    a change is kept. ``options``: what the widget offers now, where that changes (another model's
    layers, another run's films): a value kept from before that is not among them is forgotten."""
    if options is not None:
        for name in (key, f"{key}_kept"):
            if name in st.session_state and st.session_state[name] not in options:
                del st.session_state[name]
    st.session_state[key] = st.session_state[key] if key in st.session_state else st.session_state.get(
        f"{key}_kept", start)
    st.session_state[f"{key}_kept"] = value = draw(on_change=_keep, args=(key, on_change))
    return value


def _keep(key: str, then: Callable[[], None] | None) -> None:
    """A widget's change, kept at once: Streamlit calls this before the run that follows the change,
    even a run that will not draw the widget (a click on another view cut short the run the change
    started, and the change arrives with the click). A widget left on screen from a view no longer
    drawn can report a "change" after Streamlit forgot it: nothing to keep then."""
    if key not in st.session_state:
        return
    st.session_state[f"{key}_kept"] = st.session_state[key]
    if then is not None:
        then()


def side_by_side(key: str, count: int, pictures: bool = False) -> list:
    """``count`` places in a row, each at least ``MIN_PLACE_PX`` wide (``MIN_PICTURE_PX`` for
    pictures), wrapping on a narrow screen."""
    row = st.container(horizontal=True, key=f"side_by_side_{'pictures_' * pictures}{key}", gap="medium")
    return [row.container() for _ in range(count)]


def policy() -> Policy:
    """The server's rules (``pneumo.access``). Loading the secrets file also exports its top-level
    keys (``PNEUMO_TEACHER_PASSCODE`` …) as environment variables, which the policy reads."""
    login = st.secrets.load_if_toml_exists() and "auth" in st.secrets
    return Policy.from_env(login=login)


@dataclass(frozen=True)
class DatasetChoice:
    """What the sidebar picked: a source spec, the working image size and the val split."""

    spec: str
    size: int
    val_fraction: float
    seed: int = 0


def _initial_state() -> str | None:
    """Seed the picker from ``PNEUMO_DATA``; keys already in session state are kept.

    Returns why ``PNEUMO_DATA`` cannot be used, if it cannot: the picker then opens on Synthetic.
    """
    spec = default_dataset_spec()
    defaults = {"ds_kind": "Synthetic", "ds_folder": "", "ds_mnist_size": 128, "ds_npz": "", "ds_csv": "",
                "ds_size": TrainConfig().image_size, "ds_val_pct": 10}
    problem = None
    try:
        source: Source | None = parse_spec(spec)
    except DatasetError as exc:
        source, problem = None, f"PNEUMO_DATA={spec!r} cannot be used: {exc}. Opened on the synthetic set."
    if isinstance(source, labelled.CsvSource):
        defaults.update(ds_kind="CSV", ds_csv=str(source.path), **{f"ds_csv_{r}": c for r, c in source.columns.items()})
    elif isinstance(source, FolderSource | labelled.RsnaSource):
        defaults.update(ds_kind="Folder", ds_folder=source.spec)
    elif isinstance(source, NpzSource) and source.path is not None:
        defaults.update(ds_kind="PneumoniaMNIST", ds_npz=source.spec)
    elif isinstance(source, NpzSource):
        defaults.update(ds_kind="PneumoniaMNIST", ds_mnist_size=source.mnist_size)
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    return problem


def dataset_picker() -> DatasetChoice:
    """Sidebar widgets; their state lives in session state, so it survives page changes."""
    problem = _initial_state()
    with st.sidebar:
        st.subheader("Data set")
        if problem:
            st.error(plain(problem))
        kind = st.radio("Source", KINDS, key="ds_kind", horizontal=True,
                        help="Synthetic works offline; PneumoniaMNIST is downloaded once; Folder: your own "
                             "Kaggle chest-xray-pneumonia or RSNA Pneumonia Challenge download; CSV: a table "
                             "naming each image file and its label.")
        if kind == "Folder":
            folder = st.text_input("Folder path", key="ds_folder", placeholder="/data/chest_xray",
                                   help="The folder holding train/ val/ test/ (or chest_xray/), or the RSNA "
                                        "challenge's stage_2_train_images/ and stage_2_train_labels.csv.")
            spec = folder
        elif kind == "CSV":
            spec = _csv_picker()
        elif kind == "PneumoniaMNIST":
            local = bool(st.session_state.get("ds_npz", "").strip())
            st.selectbox("Size (px)", mnist.SIZES, key="ds_mnist_size", disabled=local,
                         help="Of the download. A local file is read at its own size." if local else "Of the download.")
            npz = st.text_input("…or a local .npz file", key="ds_npz",
                                help="Use this when the download is not possible (offline); it is read at its own "
                                     "size, then decoded at the working image size.")
            spec = npz.strip() or f"pneumoniamnist:{st.session_state.ds_mnist_size}"
            if npz.strip() and not npz.strip().lower().endswith(".npz"):
                st.error(f"{plain(Path(npz.strip()).name)} is not a .npz file: PneumoniaMNIST comes as "
                         "pneumoniamnist.npz (or pneumoniamnist_128.npz …).")
                spec = ""
        else:
            spec = "synthetic"
        size = st.selectbox("Working image size (px)", WORKING_SIZES, key="ds_size",
                            help="Images are decoded once at this square size and cached on disk.")
        val_pct = st.slider("Validation carved from train (%)", 0, 30, key="ds_val_pct",
                            help="Patient-grouped and stratified by class. 0 keeps the data set's own "
                                 "val split (only 16 images in the Kaggle set).")
    return DatasetChoice(spec.strip(), int(size), val_pct / 100)


def _csv_picker() -> str:
    """A CSV path and which of its columns hold what (guessed first); the data set spec they make."""
    path = st.text_input("CSV file", key="ds_csv", placeholder="/data/labels.csv",
                         help="One row per image: its path (relative to the CSV's folder) and its label; "
                              "optionally its split (train/val/test) and patient.").strip()
    if not path:
        return ""
    try:
        policy().check_path(path)  # first: outside the data roots, nothing is said about the file
        header = labelled.csv_columns(Path(path).expanduser())
    except (Forbidden, DatasetError) as exc:
        st.error(plain(str(exc)))
        return ""  # no data set: the path must not be read as something else (a folder)
    guess = labelled.guess_columns(header)
    columns = {}
    for role, label in CSV_ROLES.items():
        options = header if role in ("path", "label") else [NO_COLUMN, *header]
        start = guess.get(role, options[0] if options else None)
        key = f"ds_csv_{role}"
        if st.session_state.get(key) not in options:  # a new CSV: its guessed columns, not the last one's
            st.session_state[key] = start
        chosen = st.selectbox(label, options, key=key)
        if chosen and chosen != NO_COLUMN:
            columns[role] = chosen
    return labelled.csv_spec(path, columns)


def current_choice() -> DatasetChoice:
    """The sidebar's choice. Normally set by streamlit_app.py; a page run from its own script
    (as the page tests do) draws the picker itself."""
    if "dataset_choice" not in st.session_state:
        st.session_state["dataset_choice"] = dataset_picker()
    return st.session_state["dataset_choice"]


_MARKDOWN = re.compile(r"([\\`*_{}@\[\]()<>#+\-.!|~:$&=\"'])")
_LINK_MARKS = re.compile(r"(?i)(:(?=//)|\bwww\.|@)")  # where GFM starts a link: https://, www., a@b
WORD_JOINER = "\u2060"  # invisible; put after those, it stops an address from becoming a link


def plain(text: str) -> str:
    """``text`` as it was typed, for inside Streamlit markdown (st.markdown, st.error, captions…):
    every punctuation mark escaped, so a run named ``[x](http://…)`` shows as those characters,
    not as a link, an image, an icon, a colour or a formula. Escapes do not stop bare addresses
    (``https://…``, ``www.…``, ``a@b.c``) from being linked, so those are broken by an invisible
    word joiner."""
    text = _LINK_MARKS.sub(r"\1" + WORD_JOINER, " ".join(str(text).split()))
    return _MARKDOWN.sub(r"\\\1", text)


def file_stamp(path: Path) -> tuple[int, int] | None:
    """A file's size and change time, to key a cache by, so it is read again only when it changes;
    None when it is not there (or cannot be read)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def run_labels(runs: list[Run]) -> dict[str, str]:
    """Each run's name and data set ("CNN (synthetic)"), with its id added where two runs share
    both: Streamlit's pickers merge options whose labels are equal."""
    labels = {run.id: f"{run.name} ({short_name(_spec(run))})" for run in runs}
    taken = list(labels.values())
    return {i: label if taken.count(label) == 1 else f"{label} · {i}" for i, label in labels.items()}


def _spec(run: Run) -> str:
    try:
        return run.config().dataset
    except (OSError, ValueError, TypeError):
        return "?"


def run_picker(label: str, names: dict[str, str], state_key: str) -> str:
    """A selectbox of run ids shown by ``names``, whose labels may change while it is on screen.

    A keyed selectbox keeps showing the labels it was first drawn with (a run stays "running"
    after it finished, a renamed run keeps its old name), so this one has no key: the choice is
    kept in session state under ``state_key`` and survives the new labels.
    """
    ids = list(names)
    chosen = st.session_state.get(state_key)
    run_id = st.selectbox(label, ids, index=ids.index(chosen) if chosen in ids else 0, format_func=names.get)
    st.session_state[state_key] = run_id
    return run_id


@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_set(spec: str, size: int, key: str) -> ImageSet:
    return cache.load(parse_spec(spec), size, key=key)


def load_image_set(choice: DatasetChoice) -> ImageSet:
    """The chosen data set, decoded; a first scan shows a progress bar with an ETA.

    Stops the page with a clear message when the data set cannot be used.
    """
    if not choice.spec:
        wanted = {"CSV": "a CSV file naming each image and its label", "PneumoniaMNIST": "a PneumoniaMNIST .npz file"
                  }.get(st.session_state.get("ds_kind"), "a folder in the Kaggle or RSNA layout")
        st.info(f"Enter the path of {wanted} in the sidebar.")
        st.stop()
    try:
        policy().check_dataset(choice.spec)
        source = parse_spec(choice.spec)
        key = cache.entry_key(source, choice.size)  # lists a folder: the only time on this rerun
        if not cache.is_cached(key):
            _build_with_progress(source, choice.size, key)
        return _cached_set(choice.spec, choice.size, key)
    except (DatasetError, Forbidden) as exc:
        st.error(plain(str(exc)))
        if link := getattr(exc, "link", None):  # plain() keeps addresses from being links: this one is whole
            st.code(link, language=None, wrap_lines=True)
        st.stop()


def _build_with_progress(source: Source, size: int, key: str) -> None:
    bar = st.progress(0.0, text=f"First scan of {source.name}: decoding images once…")
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - start
        eta = elapsed / done * (total - done) if done else 0
        bar.progress(done / total,
                     text=f"Decoding {done:,} / {total:,} images · {elapsed:.0f} s elapsed · ETA {eta:.0f} s")

    cache.load(source, size, progress=progress, key=key)
    bar.empty()


def synthetic_banner(image_set: ImageSet | None = None, spec: str = "") -> None:
    """Every page that shows data (or a run trained on it) says so when it is synthetic."""
    if (image_set is not None and image_set.synthetic) or spec.startswith("synthetic"):
        st.warning("**Synthetic data**: these images are drawn by a program to look like chest "
                   "X-rays. They are not real radiographs and say nothing about real patients.",
                   icon=":material/science:")


@st.cache_resource(show_spinner="Loading the run's images…", max_entries=4)
def run_image_set(spec: str, size: int) -> ImageSet | None:
    """The image set a run trained on (its data set decoded), or None when it is not available here."""
    try:
        return cache.load(parse_spec(spec), size)
    except DatasetError:
        return None

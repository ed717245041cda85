"""The three views of the Train page. Streamlit widgets only; the work is in ``pneumo``.

The form's labels, help, ranges, choices and starting values all come from ``pneumo.training``
(``OPTIONS``, ``TRANSFORMS`` and TrainConfig's defaults), so the form cannot drift from the CLI
or from what ``TrainConfig.problems`` accepts.
"""

from __future__ import annotations

import contextlib
from functools import partial

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pneumo import charts
from pneumo.access import Forbidden, Mode, User, owner_name
from pneumo.data.sources import DatasetError, ImageSet
from pneumo.runs import backends, jobs, monitoring
from pneumo.runs.store import Run, RunState, RunStore
from pneumo.training.augment import PRESETS, TRANSFORMS, Augmentation, preset_name, preview
from pneumo.training.config import MAX_NAME_CHARS, MODEL_DEFAULTS, MODELS, OPTIONS, RUN_PRESETS, TrainConfig
from ui.common import DatasetChoice, kept, plain, policy, run_labels, run_picker, side_by_side, synthetic_banner
from ui.identity import current_user

POLL_SECONDS = 2.0
PREVIEW_DRAWS, PREVIEW_COLUMNS, PREVIEW_PX = 8, 4, 110  # two full rows, 440 px: fits a projector's page
MODEL_NAMES = {"cnn": "Custom CNN", "resnet50": "ResNet50 transfer learning"}
PRESET_NAMES = {"recommended": "Recommended", "demo": "Demo (quick, for a lesson)"}
PRESET_HELP = ("Recommended: the best test AUC this CNN reaches in about a seed-epoch. Demo: a smaller, shorter run "
               "that reaches a useful model while the class waits (README, Performance).")
WEIGHT_SOURCES = {"imagenet": "ImageNet weights", "none": "scratch (no weights)", "file": "a .h5 weights file"}


@st.cache_resource(show_spinner="Looking for a GPU…")
def _device() -> str:
    from pneumo import device

    return device.describe()


@st.cache_resource(show_spinner="Building ResNet50 to count its layers…")
def _resnet_skeleton():
    from pneumo.training import models

    return models.build(TrainConfig(model="resnet50", weights="none", image_size=64))


def _imagenet_status() -> tuple[bool, str]:
    from pneumo.training import models

    path = models.imagenet_weights_path()
    if path.exists():
        return True, f"ImageNet weights found ({path})."
    return False, (f"ImageNet weights are not on this machine yet: the run downloads them first (needs internet). "
                   f"Offline, put `{models.RESNET_WEIGHTS_FILE}` in `{path.parent}`, give a .h5 path below, or "
                   "choose weights 'none' to train from scratch.")


# --- New run ---------------------------------------------------------------------------


def _input(name: str, default: TrainConfig, key: str = "", suffix: str = "") -> object:
    """The widget for one TrainConfig field, built from its ``OPTIONS`` entry and starting at ``default``.

    On/off fields get a toggle, named choices a row of radio buttons, numbers with choices a
    select-slider, numbers with a step a slider, other numbers a number input over the accepted
    range. The key is ``tr_<field>`` unless given.
    """
    option, value, key = OPTIONS[name], getattr(default, name), key or f"tr_{name}"
    label, common = option.label + suffix, {"help": option.help, "key": key}
    kind = type(value)
    if isinstance(value, bool):
        draw = partial(st.toggle, label, **common)
    elif isinstance(value, str):
        draw = partial(st.radio, label, option.choices, horizontal=True, **common)
    elif option.choices:
        draw = partial(st.select_slider, label, option.choices, **common)
    elif option.step is not None:
        draw = partial(st.slider, label, kind(option.low), kind(option.high), step=kind(option.step), **common)
    else:
        draw = partial(st.number_input, label, kind(option.low), kind(option.high), format=option.format, **common)
    return kept(key, value, draw)


def _forget_form() -> None:
    """A new preset: the form's fields start again from its settings (``kept``: their state and
    kept values are dropped, so each is set anew, in the browser too)."""
    spared = {"tr_model", "tr_preset", "tr_model_kept", "tr_preset_kept"}
    for key in [k for k in st.session_state if str(k).startswith("tr_") and k not in spared]:
        del st.session_state[key]


def new_run(choice: DatasetChoice, image_set: ImageSet) -> None:
    st.caption(f"Data: **{plain(image_set.name)}**, validation carved from train: {choice.val_fraction:.0%} "
               "(set both in the sidebar).")
    model = kept("tr_model", TrainConfig().model, partial(
        st.radio, OPTIONS["model"].label, MODELS, horizontal=True, key="tr_model", format_func=MODEL_NAMES.get,
        help=OPTIONS["model"].help))
    preset = "recommended"
    if model == "cnn":
        preset = kept("tr_preset", "recommended", partial(
            st.segmented_control, "Start from", list(RUN_PRESETS), key="tr_preset", format_func=PRESET_NAMES.get,
            help=PRESET_HELP), on_change=_forget_form) or "recommended"
    default = TrainConfig.for_model(model, preset)
    left, right = st.columns(2)
    with left:
        st.markdown("**Model and data**")
        # Starts at the sidebar's working size, unless the model has its own (ResNet50: ImageNet's).
        follows_sidebar = ("image_size" not in {**MODEL_DEFAULTS[model], **RUN_PRESETS[preset]}
                           and choice.size in OPTIONS["image_size"].choices)
        size_start = default.with_(image_size=choice.size) if follows_sidebar else default
        values: dict = {"model": model, "image_size": _input("image_size", size_start, key=f"tr_size_{model}")}
        if model == "cnn":
            for name in ("cnn_blocks", "cnn_filters", "cnn_dense", "cnn_strided_stem"):
                values[name] = _input(name, default)
        else:
            values.update(_resnet_options(default))
        values["dropout"] = _input("dropout", default)
    with right:
        st.markdown("**Optimisation**")
        # Keyed per model: a keyed widget keeps its value when only its default changes.
        values["epochs"] = _input("epochs", default, key=f"tr_epochs_{model}",
                                  suffix=" (phase 1: head only)" if model == "resnet50" else "")
        for name in ("batch_size", "learning_rate", "class_weights", "early_stopping", "restore_best",
                     "lr_schedule"):
            values[name] = _input(name, default)
        if values["lr_schedule"] == "triangular":
            for column, name in zip(st.columns(3), ("clr_min", "clr_max", "clr_step"), strict=True):
                with column:
                    values[name] = _input(name, default)
        elif values["lr_schedule"] == "plateau":
            values["reduce_lr"] = _input("reduce_lr", default)
        values["seed"] = _input("seed", default)
        values["mixed_precision"] = _input("mixed_precision", default)
        values["name"] = kept("tr_name", default.name, partial(
            st.text_input, OPTIONS["name"].label, key="tr_name", help=OPTIONS["name"].help, max_chars=MAX_NAME_CHARS,
            placeholder="e.g. CNN light augmentation"))

    values["augmentation"] = _augmentation_controls(image_set, default.augmentation)
    config = TrainConfig(dataset=choice.spec, val_fraction=choice.val_fraction, **values)
    _start_panel(config)


def _resnet_options(default: TrainConfig) -> dict:
    values = {}
    sources = list(WEIGHT_SOURCES)
    weights = kept("tr_weights", default.weights, partial(
        st.radio, OPTIONS["weights"].label, sources, horizontal=True, key="tr_weights",
        format_func=WEIGHT_SOURCES.get, help=OPTIONS["weights"].help))
    if weights == "file":
        weights = kept("tr_weights_path", "", partial(st.text_input, "Path of the .h5 file", key="tr_weights_path"))
        weights = weights.strip()
    values["weights"] = weights
    if weights == "imagenet":
        found, message = _imagenet_status()
        (st.success if found else st.warning)(message)
    k = values["unfreeze"] = _input("unfreeze", default)
    from pneumo.training import models

    blocks = models.trainable_blocks(_resnet_skeleton(), k)
    st.plotly_chart(charts.unfreeze_diagram(blocks), width="stretch")
    st.caption(f"Trainable parameters in phase 2: **{int(blocks['trainable params'].sum()):,}** of "
               f"{int(blocks['params'].sum()):,}.")
    if k:
        values["fine_tune_epochs"] = _input("fine_tune_epochs", default)
        values["fine_tune_learning_rate"] = _input("fine_tune_learning_rate", default)
    values["l2"] = _input("l2", default)
    return values


def _augmentation_controls(image_set: ImageSet, default: Augmentation) -> Augmentation:
    st.markdown("**Augmentation** (training only; a saved model never augments)")
    preset = kept("tr_aug_preset", preset_name(default),
                   partial(st.segmented_control, "Preset", [*PRESETS, "custom"], key="tr_aug_preset"))
    if preset == "custom":
        values = {}
        for column, (name, transform) in zip(st.columns(len(TRANSFORMS)), TRANSFORMS.items(), strict=True):
            key, label = f"tr_aug_{name}", name.capitalize()
            if transform.high is None:
                draw = partial(column.toggle, label, help=transform.help, key=key)
            else:  # from 0 (off) to the largest magnitude accepted
                draw = partial(column.slider, label, 0.0, transform.high, step=0.01, help=transform.help, key=key)
            values[name] = kept(key, getattr(default, name) if transform.high is None
                                 else float(getattr(default, name)), draw)
        augmentation = Augmentation(**values)
    else:
        augmentation = PRESETS.get(preset, default)  # preset is None when the user unselects it
        st.caption(", ".join(f"{k} {v}" for k, v in augmentation.to_dict().items() if v) or "no augmentation")
    train = np.flatnonzero((image_set.records["split"] == "train").to_numpy())
    if len(train) and augmentation.active:
        seed = st.session_state.get("tr_preview_seed", 0)
        pictures = preview(np.asarray(image_set.images[train[seed % len(train)]]), augmentation, PREVIEW_DRAWS, seed)
        st.image(_grid(pictures, PREVIEW_COLUMNS), width=PREVIEW_COLUMNS * PREVIEW_PX,
                 caption=f"{PREVIEW_DRAWS} draws of this augmentation on one training film, as training makes them")
        if st.button("Another image", icon=":material/refresh:"):
            st.session_state["tr_preview_seed"] = seed + 1
            st.rerun()
    return augmentation


def _grid(pictures: np.ndarray, columns: int, gap: int = 4) -> np.ndarray:
    """Equal uint8 pictures as one, in rows of ``columns`` with white gaps: the same full rows on a
    projector and a wide screen (separate pictures wrap wherever the width runs out)."""
    rows = -(-len(pictures) // columns)
    height, width = pictures.shape[1:3]
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), 255, np.uint8)
    for i, picture in enumerate(pictures):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        grid[top:top + height, left:left + width] = picture
    return grid


def _start_panel(config: TrainConfig) -> None:
    st.divider()
    backend = backends.chosen()
    if backend.name == backends.LOCAL:
        st.markdown(f"**Device**: {_device()}")
    else:
        with contextlib.suppress(backends.Unavailable):  # cannot_start below says why
            st.markdown(f"**Runs train** {plain(backend.describe())}.")
    user, rules, store = current_user(), policy(), RunStore()
    try:
        rules.check_config(config)  # first: outside the data roots, nothing is said about the files
        problems = config.problems()
    except (Forbidden, DatasetError) as exc:
        problems = [str(exc)]
    for problem in problems:
        st.error(plain(problem[:1].upper() + problem[1:]))  # capitalize() would lower a path's case
    reason = "Type your name in the sidebar to start a run." if user is None else jobs.cannot_start(store, user, rules)
    if reason and not problems:
        st.info(reason)
    if st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=bool(problems or reason)):
        try:
            run = jobs.submit(config, store, by=user, policy=rules)
        except jobs.Refused as exc:
            st.error(plain(str(exc)))
            return
        st.session_state["watch_run"] = run.id
        st.session_state["train_view_next"] = "Watch"  # applied before the view switch is drawn
        st.rerun()


# --- Watch -----------------------------------------------------------------------------


def _active_runs(store: RunStore) -> list[Run]:
    return [r for r in store.runs() if r.damage is None]


def watch() -> None:
    store = RunStore()
    runs = _active_runs(store)
    if not runs:
        st.info("No runs yet: start one in *New run*, or from the command line (`python -m pneumo train`).")
        return
    labels = run_labels(runs)
    run_id = run_picker("Run", {r.id: f"{labels[r.id]} · {monitoring.state_label(r)}" for r in runs}, "watch_run")
    run = store.get(run_id)
    synthetic_banner(spec=run.config().dataset)
    user = current_user()
    if run.damage is None and run.state.active:
        _live(run, user)
    else:  # an ended run's files no longer change: its curves are drawn once, only its state is polled
        _run_view(run, user)
        _follow_state(run)


@st.fragment(run_every=POLL_SECONDS)
def _live(run: Run, user: User | None) -> None:
    """Re-reads a queued or running run's files every few seconds; never blocks, survives page changes."""
    store = RunStore(run.path.parent)
    jobs.schedule(store)  # notices dead workers, starts queued runs
    _rerun_on_change(store)
    _run_view(run, user)


@st.fragment(run_every=POLL_SECONDS)
def _follow_state(run: Run) -> None:
    """An ended run may be resumed or deleted by someone else: reading the states every few seconds
    notices that, where redrawing its charts each time, for each watcher, keeps a class's server busy."""
    _rerun_on_change(RunStore(run.path.parent))


def _rerun_on_change(store: RunStore) -> None:
    """Draws the whole page again (run picker, live or still view) once a run comes, goes or
    changes state: the picker names every run with its state."""
    now = monitoring.states(store)
    if st.session_state.setdefault("watch_seen", now) != now:
        st.session_state["watch_seen"] = now
        st.rerun()


def _run_view(run: Run, user: User | None) -> None:
    """The run's state, progress, curves and log."""
    if run.damage:
        st.error(f"This run folder is damaged: {plain(run.damage)}")
        return
    status, config, history = run.status(), run.config(), run.history()
    state = RunState(status["state"])
    _status_line(run, state, status, user)
    prog = monitoring.progress(run)
    eta = f" · about {monitoring.duration(prog.eta)} to go" if prog.eta is not None else ""
    cut = (f", cut short at batch {prog.batch} of {prog.batches}"
           if not state.active and prog.epoch and 0 < prog.batch < prog.batches else "")
    st.progress(prog.epoch_fraction, text=f"Epoch {prog.epoch} of {prog.epochs}{cut} · "
                                          f"{monitoring.duration(prog.elapsed)} elapsed{eta}")
    if state == RunState.RUNNING and not prog.batches:  # the worker is still loading data and building the model
        st.caption("Starting: loading the data and building the model…")
    elif state == RunState.RUNNING:
        st.progress(prog.batch_fraction, text=f"Batch {prog.batch} of {prog.batches}")
    if history.empty:
        st.info("Waiting for the first epoch to finish…" if state.active else "No epochs ran.")
    else:
        phase2 = status.get("phase2_start") if config.two_phase else None
        for place, metric in zip(side_by_side("epochs", 3), ("loss", "accuracy", "auc"), strict=True):
            place.plotly_chart(_epoch_figure(history, metric, phase2), width="stretch", key=f"curve_{metric}")
    batches = run.batches()
    if not batches.empty:
        left, right = side_by_side("batches", 2)
        weight = left.slider("Smoothing", 0.0, 0.99, 0.8, 0.01, key="smoothing")
        loss, rate = _batch_figures(batches, weight)
        left.plotly_chart(loss, width="stretch", key="curve_batches")
        right.plotly_chart(rate, width="stretch", key="curve_lr")
    with st.expander("Log (last lines)"):
        st.code(policy().redact(jobs.log_tail(run, 30)) or "(empty)", language=None)


# Building Plotly figures was most of a Watch poll's server time (0.36 s per watcher every 2 s on a
# running run): each is built once per new epoch or batch, and shared by everyone watching that run.
# Keyed by the data itself (Streamlit hashes the frames); Streamlit's chart copies a figure, never changes it.
@st.cache_resource(max_entries=64, show_spinner=False)
def _epoch_figure(history: pd.DataFrame, metric: str, phase2: int | None) -> go.Figure:
    return charts.epoch_curves(history, metric, phase2, monitoring.best_epoch(history))


@st.cache_resource(max_entries=32, show_spinner=False)
def _batch_figures(batches: pd.DataFrame, weight: float) -> tuple[go.Figure, go.Figure]:
    return charts.batch_loss(batches, monitoring.smooth(batches["loss"], weight)), charts.learning_rate(batches)


def _status_line(run: Run, state: RunState, status: dict, user: User | None) -> None:
    device, name = status.get("device", ""), plain(run.name)
    if status.get("backend") == backends.RAY and status.get("job"):
        device += f" · Ray job {status['job']}" + (f" on {status['host']}" if status.get("host") else "")
    allowed = user is not None and user.may_manage(run.owner)
    if not allowed and policy().mode != Mode.SOLO:
        st.caption(f"Started by {plain(owner_name(run.owner))}: only they or the teacher can stop, resume or "
                   "delete it.")
    if state.active:
        c1, c2 = st.columns([4, 1])
        label = monitoring.state_label(run)
        c1.markdown(" · ".join(part for part in (f"**{name}**", label, plain(device), _queue_place(run, state))
                               if part))  # a queued run has no device yet
        if label == "stopping":  # asked already: a second Stop would only look as if the first did nothing
            c1.caption("Stopping after the current batch: the model so far is being saved and the test films "
                       "scored.")
        elif allowed and c2.button("Stop", icon=":material/stop:", key="stop_run"):
            jobs.stop(run, by=user)
            st.toast("Stopping after the current batch; the model so far is kept.")
    elif state == RunState.FAILED:
        st.error(f"**This run failed.** {plain(policy().redact(status.get('error') or ''))}", icon=":material/error:")
        st.code(policy().redact(jobs.log_tail(run, 12)) or "(no log)", language=None)
        if allowed and st.button("Resume from the last checkpoint", icon=":material/replay:", key="resume_run"):
            _resume(run, user)
    elif state == RunState.STOPPED:
        st.warning(f"**{name}** stopped. {plain(status.get('note') or '')}")
        if allowed and st.button("Resume", icon=":material/replay:", key="resume_run"):
            _resume(run, user)
    else:
        note = status.get("note")
        st.success(f"**{name}** finished on {plain(device)}." + (f" ({plain(note)})" if note else ""))


def _queue_place(run: Run, state: RunState) -> str:
    """Where a queued run waits, in words (owners take turns: see ``jobs.queue_order``)."""
    if state != RunState.QUEUED:
        return ""
    order = [r.id for r in jobs.queue_order(_active_runs(RunStore(run.path.parent)))]
    if run.id not in order:
        return ""
    ahead = order.index(run.id)
    return "next to start" if ahead == 0 else f"{ahead} run{'s' * (ahead > 1)} ahead of it in the queue"


def _resume(run: Run, user: User) -> None:
    try:
        jobs.resume(run, by=user, policy=policy())
    except jobs.Refused as exc:
        st.error(plain(str(exc)))


# --- Runs table and comparison -----------------------------------------------------------


def runs_table() -> None:
    store = RunStore()
    jobs.schedule(store)
    runs = store.runs()
    if not runs:
        st.info("No runs yet.")
        return
    table = pd.DataFrame([monitoring.summary(r) for r in runs])
    colors = charts.run_colors({r.id: r.number for r in runs})
    table.insert(0, "", "●")
    problems = table.pop("problem").fillna("")
    if problems.any():  # why a run is damaged or failed, next to its status: on screen on a projector
        table.insert(table.columns.get_loc("status") + 1, "problem", problems)
    solo = policy().mode == Mode.SOLO
    shown = table.drop(columns=["run", "owner"] if solo else ["run"])
    st.dataframe(shown.style.apply(lambda _: [f"color: {colors[i]}" for i in table["run"]], subset=[""])
                 .format(precision=3), hide_index=True, width="stretch", placeholder="")  # unknown: blank
    usable = [r for r in runs if r.damage is None]
    names = run_labels(usable)

    st.subheader("Compare runs")
    by_id = {r.id: r for r in usable}
    recorded = {r.id: history for r in usable if not (history := r.history()).empty}  # a queued run: no curve
    picked = st.multiselect("Runs to overlay", list(names), default=list(recorded)[:2], format_func=names.get)
    if unrecorded := [names[i] for i in picked if i not in recorded]:
        st.caption(f"No epoch recorded for {plain(', '.join(unrecorded))}: nothing to draw for it.")
    histories = {names[i]: recorded[i] for i in picked if i in recorded}
    if histories:
        overlay = charts.run_colors({names[i]: by_id[i].number for i in picked})
        for place, column in zip(side_by_side("compare", 2), ("val_auc", "val_loss"), strict=True):
            place.plotly_chart(charts.compare_runs(histories, column, overlay), width="stretch")
        st.caption("Validation curves of runs on other data sets (in brackets) are scored on other images: compare "
                   "their shapes, not their heights.")

    st.subheader("Manage a run")
    if done := st.session_state.pop("manage_done", None):  # said after the rerun that shows its result
        st.success(done, icon=":material/check:")
    target = run_picker("Run", {r.id: names.get(r.id, f"{r.id} (damaged)") for r in runs}, "manage_run")
    run = store.get(target)
    user = current_user()
    allowed = user is not None and user.may_manage(run.owner)
    if not allowed:
        st.caption(f"Started by {plain(owner_name(run.owner))}: only they or the teacher can rename or delete it.")
    c1, c2, c3 = st.columns(3)
    if run.damage is None and allowed:
        new_name = c1.text_input("New name", value=run.name, key=f"rename_{target}", max_chars=MAX_NAME_CHARS)
        if c1.button("Rename", icon=":material/edit:"):
            if not new_name.strip():
                c1.warning("A run's name cannot be blank: type one, or keep the one it has.")
            else:
                old_name = run.name
                try:
                    run.rename(new_name.strip(), by=user)
                except ValueError as exc:
                    c1.warning(plain(str(exc)))
                else:
                    st.session_state["manage_done"] = f"Renamed {plain(old_name)} to {plain(run.name)}."
                    st.rerun()
    model_file = run.model_file()
    if model_file:  # the files are read when a button is clicked, not on every rerun (a ResNet50: 100 MB)
        c2.download_button("Download model (.keras)", model_file.read_bytes, file_name=f"{target}.keras",
                           icon=":material/download:")
    if run.file("history.csv").exists():
        c2.download_button("Download history (CSV)", run.file("history.csv").read_bytes,
                           file_name=f"{target}-history.csv", icon=":material/download:")
    if not allowed:
        return
    label = plain(names.get(target, target))
    # Keyed by run: the next run picked (after a delete, another one) gets a closed box.
    with c3.popover("Delete…", icon=":material/delete:", key=f"delete_box_{target}"):
        st.write(f"Delete **{label}** and all its files?")
        if st.button("Yes, delete", type="primary", key=f"delete_{target}"):
            try:
                store.delete(run, by=user)
            except ValueError as exc:
                st.error(str(exc))
            else:
                st.session_state["manage_done"] = f"Deleted {label} and its files."
                st.rerun()


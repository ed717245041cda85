"""The three views of the Train page. Streamlit widgets only; the work is in ``pneumo``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pneumo import charts
from pneumo.data.sources import ImageSet
from pneumo.runs import jobs, monitoring
from pneumo.runs.store import Run, RunStore
from pneumo.training.augment import HELP, PRESETS, Augmentation, preview
from pneumo.training.config import IMAGE_SIZES, RESNET50_BASE_LAYERS, TrainConfig
from ui.common import DatasetChoice, run_picker, synthetic_banner

POLL_SECONDS = 2.0


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


def new_run(choice: DatasetChoice, image_set: ImageSet) -> None:
    default = TrainConfig()
    st.caption(f"Data: **{image_set.name}**, validation carved from train: {choice.val_fraction:.0%} "
               "(set both in the sidebar).")
    model = st.radio("Model", ["cnn", "resnet50"], horizontal=True, key="tr_model",
                     format_func=lambda m: "Custom CNN" if m == "cnn" else "ResNet50 transfer learning",
                     help="A small CNN trained from scratch, or ImageNet's ResNet50 with a new head.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Model and data**")
        start_size = (choice.size if choice.size in IMAGE_SIZES else default.image_size) if model == "cnn" else 224
        size = st.select_slider("Image size (px)", IMAGE_SIZES, value=start_size, key=f"tr_size_{model}",
                                help="Images are squashed to this square size. Starts at the sidebar's working size.")
        values: dict = {"model": model, "image_size": size}
        if model == "cnn":
            values["cnn_blocks"] = st.slider("Conv blocks", 1, 6, default.cnn_blocks,
                                             help="Conv2D + BatchNorm + ReLU + MaxPool each.")
            values["cnn_filters"] = st.select_slider("Filters in the first block", [8, 16, 32, 64],
                                                     default.cnn_filters, help="Each next block doubles them.")
            values["cnn_dense"] = st.select_slider("Dense layer before the output", [0, 32, 64, 128, 256],
                                                   default.cnn_dense,
                                                   help="0 = none: the pooled features feed the output directly.")
        else:
            values.update(_resnet_options())
        values["dropout"] = st.slider("Dropout", 0.0, 0.8, 0.3, 0.05, help="Share of features dropped in training.")
    with right:
        st.markdown("**Optimisation**")
        values["epochs"] = st.number_input("Epochs" + (" (phase 1: head only)" if model == "resnet50" else ""),
                                           1, 500, default.epochs if model == "cnn" else 5)
        values["batch_size"] = st.select_slider("Batch size", [8, 16, 32, 64, 128], 32)
        values["learning_rate"] = st.select_slider("Learning rate (Adam)", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3],
                                                   1e-3)
        values["class_weights"] = st.toggle("Class weights from counts", True,
                                            help="Weigh the rarer class (NORMAL) up so both count equally.")
        values["early_stopping"] = st.number_input("Early stopping patience (epochs, 0 = off)", 0, 50, 5,
                                                   help="Stop when val AUC has not improved for this many epochs.")
        values["restore_best"] = st.toggle("Restore the best weights when stopping early", True)
        values["cyclical_lr"] = st.toggle("Triangular cyclical learning rate", False,
                                          help="Learning rate goes up and down between two bounds (Smith 2017).")
        if values["cyclical_lr"]:
            c1, c2, c3 = st.columns(3)
            values["clr_min"] = c1.number_input("min", 1e-7, 1e-1, 1e-5, format="%.0e")
            values["clr_max"] = c2.number_input("max", 1e-7, 1e-1, 1e-4, format="%.0e")
            values["clr_step"] = c3.number_input("half cycle (batches)", 1, 10_000, 500)
        else:
            values["reduce_lr"] = st.number_input("Halve the learning rate after N flat epochs (0 = off)", 0, 50, 2)
        values["seed"] = st.number_input("Seed", 0, 2**31 - 1, 0, help="Same seed, same split and same run.")
        values["mixed_precision"] = st.toggle("Mixed precision on a GPU", True, help="Ignored on a CPU.")
        values["name"] = st.text_input("Run name (optional)", placeholder="e.g. CNN light augmentation")

    values["augmentation"] = _augmentation_controls(image_set)
    config = TrainConfig(dataset=choice.spec, val_fraction=choice.val_fraction, **values)
    _start_panel(config)


def _resnet_options() -> dict:
    values = {}
    weights = st.radio("Start from", ["imagenet", "none", "file"], horizontal=True, key="tr_weights",
                       format_func={"imagenet": "ImageNet weights", "none": "scratch (no weights)",
                                    "file": "a .h5 weights file"}.get)
    if weights == "file":
        weights = st.text_input("Path of the .h5 file", key="tr_weights_path").strip()
    values["weights"] = weights
    if weights == "imagenet":
        found, message = _imagenet_status()
        (st.success if found else st.warning)(message)
    k = st.slider("Unfreeze depth (top layers trained in phase 2)", 0, RESNET50_BASE_LAYERS, 0, key="tr_unfreeze",
                  help="0 trains only the new head. The original study unfroze 100. BatchNorm layers always "
                       "stay frozen.")
    values["unfreeze"] = k
    from pneumo.training import models

    blocks = models.trainable_blocks(_resnet_skeleton(), k)
    st.plotly_chart(charts.unfreeze_diagram(blocks), width="stretch")
    st.caption(f"Trainable parameters in phase 2: **{int(blocks['trainable params'].sum()):,}** of "
               f"{int(blocks['params'].sum()):,}.")
    if k:
        values["fine_tune_epochs"] = st.number_input("Fine-tuning epochs (phase 2)", 0, 500, 5)
        values["fine_tune_learning_rate"] = st.select_slider("Fine-tuning learning rate",
                                                             [1e-6, 3e-6, 1e-5, 3e-5, 1e-4], 1e-5)
    values["l2"] = st.select_slider("L2 on the head's dense layer", [0.0, 1e-5, 1e-4, 1e-3, 1e-2], 1e-4)
    return values


def _augmentation_controls(image_set: ImageSet) -> Augmentation:
    st.markdown("**Augmentation** (training only; a saved model never augments)")
    preset = st.segmented_control("Preset", [*PRESETS, "custom"], default="light", key="tr_aug_preset")
    base = PRESETS.get(preset or "light", PRESETS["light"])
    if preset == "custom":
        cols = st.columns(6)
        values = {}
        for col, (name, top) in zip(cols, (("rotation", 0.5), ("zoom", 0.9), ("shift", 0.5), ("brightness", 0.9),
                                            ("contrast", 0.9)), strict=False):
            values[name] = col.slider(name.capitalize(), 0.0, top, float(getattr(PRESETS["light"], name)), 0.01,
                                      help=HELP[name], key=f"tr_aug_{name}")
        values["flip"] = cols[5].toggle("Flip", False, help=HELP["flip"], key="tr_aug_flip")
        augmentation = Augmentation(**values)
    else:
        augmentation = base
        st.caption(", ".join(f"{k} {v}" for k, v in augmentation.to_dict().items() if v) or "no augmentation")
    train = np.flatnonzero((image_set.records["split"] == "train").to_numpy())
    if len(train) and augmentation.active:
        seed = st.session_state.get("tr_preview_seed", 0)
        pictures = preview(np.asarray(image_set.images[train[seed % len(train)]]), augmentation, 8, seed)
        st.image(list(pictures), width=96, caption=[f"draw {i + 1}" for i in range(len(pictures))])
        if st.button("Another image", icon=":material/refresh:"):
            st.session_state["tr_preview_seed"] = seed + 1
            st.rerun()
    return augmentation


def _start_panel(config: TrainConfig) -> None:
    st.divider()
    st.markdown(f"**Device**: {_device()}")
    problems = config.problems()
    for problem in problems:
        st.error(problem.capitalize())
    if st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=bool(problems)):
        try:
            run = jobs.submit(config)
        except jobs.InvalidConfig as exc:
            st.error(str(exc))
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
    run_id = run_picker("Run", {r.id: f"{r.name} · {r.status()['state']}" for r in runs}, "watch_run")
    run = store.get(run_id)
    synthetic_banner(spec=run.config().dataset)
    _live(run)


@st.fragment(run_every=POLL_SECONDS)
def _live(run: Run) -> None:
    """Re-reads the run's files every few seconds; never blocks, survives page changes."""
    jobs.schedule(RunStore(run.path.parent))  # notices dead workers, starts queued runs
    if run.damage:
        st.error(f"This run folder is damaged: {run.damage}")
        return
    status, config, history = run.status(), run.config(), run.history()
    state = status["state"]
    seen = st.session_state.setdefault("watch_states", {})
    if seen.setdefault(run.id, state) != state:  # the run changed state: redraw the whole page once
        seen[run.id] = state
        st.rerun()
    _status_line(run, state, status)
    prog = monitoring.progress(run)
    eta = f" · about {monitoring.duration(prog.eta)} to go" if prog.eta is not None else ""
    st.progress(prog.epoch_fraction, text=f"Epoch {prog.epoch} of {prog.epochs} · "
                                          f"{monitoring.duration(prog.elapsed)} elapsed{eta}")
    if state == "running":
        st.progress(prog.batch_fraction, text=f"Batch {prog.batch} of {prog.batches}")
    if history.empty:
        st.info("Waiting for the first epoch to finish…" if state in ("queued", "running") else "No epochs ran.")
    else:
        best = monitoring.best_epoch(history)
        phase2 = status.get("phase2_start") if config.two_phase else None
        cols = st.columns(3)
        for col, metric in zip(cols, ("loss", "accuracy", "auc"), strict=True):
            col.plotly_chart(charts.epoch_curves(history, metric, phase2, best), width="stretch",
                             key=f"curve_{metric}")
    batches = run.batches()
    if not batches.empty:
        left, right = st.columns([2, 1])
        weight = left.slider("Smoothing", 0.0, 0.99, 0.8, 0.01, key="smoothing")
        left.plotly_chart(charts.batch_loss(batches, monitoring.smooth(batches["loss"], weight)), width="stretch",
                          key="curve_batches")
        right.plotly_chart(charts.learning_rate(batches), width="stretch", key="curve_lr")
    with st.expander("Log (last lines)"):
        st.code(run.log_tail(30) or "(empty)", language=None)


def _status_line(run: Run, state: str, status: dict) -> None:
    device = status.get("device", "")
    if state in ("queued", "running"):
        c1, c2 = st.columns([4, 1])
        c1.markdown(f"**{run.name}** · {state} · {device}")
        if c2.button("Stop", icon=":material/stop:", key="stop_run"):
            jobs.stop(run)
            st.toast("Stopping after the current batch; the model so far is kept.")
    elif state == "failed":
        st.error(f"**This run failed.** {status.get('error') or ''}", icon=":material/error:")
        st.code(run.log_tail(12) or "(no log)", language=None)
        if st.button("Resume from the last checkpoint", icon=":material/replay:", key="resume_run"):
            jobs.resume(run)
    elif state == "stopped":
        st.warning(f"**{run.name}** stopped. {status.get('note') or ''}")
        if st.button("Resume", icon=":material/replay:", key="resume_run"):
            jobs.resume(run)
    else:
        note = status.get("note")
        st.success(f"**{run.name}** finished on {device}." + (f" ({note})" if note else ""))


# --- Runs table and comparison -----------------------------------------------------------


def runs_table() -> None:
    store = RunStore()
    jobs.schedule(store)
    runs = store.runs()
    if not runs:
        st.info("No runs yet.")
        return
    table = pd.DataFrame([monitoring.summary(r) for r in runs])
    st.dataframe(table.drop(columns=["run"]), hide_index=True, width="stretch")
    usable = [r for r in runs if r.damage is None]
    names = {r.id: r.name for r in usable}

    st.subheader("Compare runs")
    picked = st.multiselect("Runs to overlay", list(names), default=list(names)[:2], format_func=names.get)
    if picked:
        histories = {names[i]: store.get(i).history() for i in picked}
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.compare_runs(histories, "val_auc"), width="stretch")
        c2.plotly_chart(charts.compare_runs(histories, "val_loss"), width="stretch")

    st.subheader("Manage a run")
    target = run_picker("Run", {r.id: names.get(r.id, f"{r.id} (damaged)") for r in runs}, "manage_run")
    run = store.get(target)
    c1, c2, c3 = st.columns(3)
    if run.damage is None:
        new_name = c1.text_input("New name", value=run.name, key=f"rename_{target}")
        if c1.button("Rename", icon=":material/edit:") and new_name.strip():
            run.rename(new_name.strip())
            st.rerun()
    model_file = run.model_file()
    if model_file:
        c2.download_button("Download model (.keras)", model_file.read_bytes(), file_name=f"{target}.keras",
                           icon=":material/download:")
    if run.file("history.csv").exists():
        c2.download_button("Download history (CSV)", run.file("history.csv").read_bytes(),
                           file_name=f"{target}-history.csv", icon=":material/download:")
    with c3.popover("Delete…", icon=":material/delete:"):
        st.write(f"Delete **{names.get(target, target)}** and all its files?")
        if st.button("Yes, delete", type="primary", key=f"delete_{target}"):
            if run.damage is None and run.status()["state"] in ("queued", "running"):
                st.error("Stop the run first.")
            else:
                store.delete(run)
                st.rerun()


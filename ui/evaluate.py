"""Evaluate page sections. The numbers come from ``pneumo.evaluation.evaluate``; this draws them.

Each run's predictions are read once per change of its file (keyed by size and time), not on
every rerun: a slider move re-reads nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pneumo import charts
from pneumo.access import owner_name
from pneumo.data.sources import short_name
from pneumo.evaluation import board, calibration, evaluate, metrics
from pneumo.evaluation.evaluate import ThresholdFree, ThresholdRule, on_split
from pneumo.runs.store import DEFAULT_THRESHOLD, Run, RunStore
from ui.common import file_stamp, plain, run_image_set, run_labels, side_by_side
from ui.identity import current_user

ERRORS_SHOWN = 12


@st.cache_data(show_spinner=False, max_entries=64)
def _read_predictions(path: str, stamp: tuple[int, int]) -> pd.DataFrame:
    return Run(Path(path)).predictions()


def _stamp(run: Run) -> tuple[int, int] | None:
    return file_stamp(run.file("predictions.csv"))


def predictions(run: Run) -> pd.DataFrame:
    """The run's predictions.csv, read again only when the file changes."""
    stamp = _stamp(run)
    return pd.DataFrame() if stamp is None else _read_predictions(str(run.path), stamp)


def runs_with_predictions() -> list[Run]:
    return [r for r in RunStore().runs() if r.damage is None and not predictions(r).empty]


def threshold_rule() -> tuple[str, ThresholdRule]:
    """The split to show and how thresholds are set, from the controls at the top of the page."""
    c1, c2, c3 = st.columns([1, 2, 2])
    split = c1.segmented_control("Split", ["test", "val"], default="test", key="ev_split") or "test"
    strategy = c2.selectbox("Threshold", metrics.STRATEGIES, key="ev_strategy",
                            help="Every strategy but manual is chosen on the run's validation split "
                                 "(patient-grouped, carved from train) and then applied here: choosing it on test "
                                 "would flatter the model.")
    rule = ThresholdRule(strategy)
    if strategy == "target sensitivity":
        rule = ThresholdRule(strategy, target_sensitivity=c3.slider("Target sensitivity", 0.5, 1.0, 0.95, 0.01,
                                                                    key="ev_target"))
    elif strategy == "min expected cost":
        rule = ThresholdRule(strategy, cost_ratio=c3.number_input(
            "Missed pneumonia ÷ false alarm, in cost", 0.1, 1000.0, 5.0, key="ev_cost",
            help="How many times worse a missed pneumonia is than a false alarm: the threshold minimises the "
                 "expected cost on the validation split."))
    return split, rule


def _remembered() -> dict[str, float]:
    """Thresholds per run id chosen in this session (the Predict page decides with them); a run's
    owner and the teacher also save theirs with the run, for every browser."""
    return st.session_state.setdefault("thresholds", {})


def _starting_threshold(run: Run) -> float:
    saved = run.threshold()
    return _remembered().get(run.id, saved["value"] if saved else DEFAULT_THRESHOLD)


def threshold_for(run: Run, rule: ThresholdRule) -> float:
    """A run's threshold under ``rule``; a manual one is the run's remembered or saved value."""
    return replace(rule, manual=_starting_threshold(run)).threshold(predictions(run))


def choose_threshold(run: Run, rule: ThresholdRule, split: str) -> float:
    """The slider (manual) or the strategy's threshold, said in words; remembered for Predict."""
    if rule.strategy == "manual":
        threshold = st.slider("Decision threshold (probability of pneumonia)", 0.0, 1.0,
                              round(_starting_threshold(run), 2), 0.01, key=f"ev_thr_{run.id}")
    else:
        threshold = threshold_for(run, rule)
        st.markdown(f"Threshold **{threshold:.3f}**, chosen by *{rule.strategy}* on the validation split and applied "
                    f"to {split}.")
    saved = run.threshold()
    in_effect = saved["value"] if saved else DEFAULT_THRESHOLD
    if run.id not in _remembered() and threshold in (in_effect, round(in_effect, 2)):
        threshold = in_effect  # only looked at (the slider shows it to 0.01): nothing is chosen
    else:
        _remembered()[run.id] = threshold
    _saved_with_run(run, threshold, rule, saved)
    return threshold


def _saved_with_run(run: Run, threshold: float, rule: ThresholdRule, saved: dict | None) -> None:
    """Saving is a click, not a side effect of looking: trying strategies and thresholds must not
    move the Board's ranking or another browser's decisions. The run's owner and the teacher may."""
    user = current_user()
    allowed = user is not None and user.may_manage(run.owner)
    may_save = allowed and (saved is None or saved["value"] != threshold)
    if may_save and st.button(f"Save {threshold:.3f} with the run", key=f"ev_save_{run.id}", icon=":material/save:",
                              help="The Board scores runs at their saved threshold, and every browser's Predict "
                                   "page decides with it. Until saved, this threshold holds in this browser only."):
        try:
            run.save_threshold(threshold, rule.strategy, by=user)
            saved = run.threshold()
        except OSError:
            st.error("The threshold could not be saved with the run (a read-only runs folder): it holds for this "
                     "browser only.")
    if saved:
        st.caption(f"Saved with the run, for the Board and every browser: **{saved['value']:.3f}** "
                   f"({saved['rule']}).")
    else:
        st.caption(f"No threshold saved with this run: the Board and other browsers use {DEFAULT_THRESHOLD}.")
    if not allowed and (saved is None or saved["value"] != threshold):
        st.caption(f"Only {plain(owner_name(run.owner))} or the teacher can save a threshold with this run: "
                   "the one tried here holds in this browser only.")


@st.cache_data(show_spinner=False, max_entries=32)
def _threshold_free(path: str, stamp: tuple[int, int] | None, split: str) -> ThresholdFree:
    data = on_split(_read_predictions(path, stamp), split)
    return evaluate.threshold_free(data["label"].to_numpy(), data["prob"].to_numpy())


def at_threshold(run: Run, data: pd.DataFrame, threshold: float, split: str, rule: ThresholdRule) -> None:
    """Confusion matrix, metrics with intervals, prevalence, curves and calibration at ``threshold``."""
    labels, probs = data["label"].to_numpy(), data["prob"].to_numpy()
    fixed = _threshold_free(str(run.path), _stamp(run), split)
    at = evaluate.at_threshold(labels, probs, threshold, fixed)
    reached = at.values["sensitivity"]
    if rule.strategy == "target sensitivity" and reached < rule.target_sensitivity:
        st.warning(f"Aimed at {rule.target_sensitivity:.0%} sensitivity on the validation split, this threshold "
                   f"reaches **{reached:.1%}** on {split}: a threshold carries over only roughly to other films.",
                   icon=":material/warning:")
    figures = charts.threshold_view(run_labels([run])[run.id], at, fixed, charts.run_colors({0: run.number})[0])
    left, right = side_by_side("confusion", 2)
    left.plotly_chart(figures["confusion"], width="stretch")
    right.dataframe(at.table, hide_index=True, width="stretch",  # 0.660, not 0.66 above 0.895
                    column_config={"value": st.column_config.NumberColumn(format="%.3f")})
    right.caption(f"{len(labels)} {split} images, {int(labels.sum())} with pneumonia. Intervals: "
                  f"{evaluate.RESAMPLES:,} bootstrap resamples of the images.")
    prevalence = right.number_input("Prevalence where the model would be used (%)", 0.1, 99.9,  # from the split's
                                    round(100 * labels.mean(), 1), key=f"ev_prevalence_{split}") / 100
    ppv, npv = metrics.at_prevalence(at.values["sensitivity"], at.values["specificity"], prevalence)
    right.markdown(f"At {prevalence:.1%} prevalence: a positive call is right **{ppv:.1%}** of the time (PPV), "
                   f"a negative call **{npv:.1%}** (NPV).")
    for place, name in zip(side_by_side("curves", 3), ("roc", "pr", "sweep"), strict=True):
        place.plotly_chart(figures[name], width="stretch")
    with st.expander("Calibration: do the probabilities mean what they say?"):
        calibration_workbench(run, data, threshold, split)


def calibration_workbench(run: Run, data: pd.DataFrame, threshold: float, split: str) -> None:
    """ECE and Brier on ``split``; temperature scaling fitted on the run's validation split, its
    reliability diagram before and after, and what it does to the calls at ``threshold``."""
    val = on_split(predictions(run), "val")
    bench = calibration.workbench(val["label"].to_numpy(), val["prob"].to_numpy(), data["label"].to_numpy(),
                                  data["prob"].to_numpy(), threshold)
    c1, c2, c3 = st.columns(3)
    delta = dict(delta_color="inverse") if bench.fitted else {}  # lower is better for both
    c1.metric("Calibration error (ECE)", f"{bench.before.ece:.3f}",  # labels short: whole at 1024 px
              delta=f"{bench.after.ece - bench.before.ece:+.3f} after scaling" if bench.fitted else None, **delta,
              help="Expected calibration error: the average gap between the stated probability and the observed "
                   "share with pneumonia, over 10 equal-width bins of probability, weighted by how many images fall "
                   "in each. 0 is perfect.")
    c2.metric("Brier score", f"{bench.before.brier:.3f}",
              delta=f"{bench.after.brier - bench.before.brier:+.3f} after scaling" if bench.fitted else None,
              **delta, help="The mean squared difference between probability and label (0 or 1). 0 is perfect.")
    if not bench.fitted:
        st.info("This run has no validation predictions of both classes, so no temperature can be fitted: the "
                "diagram shows the probabilities as the model gave them.")
        st.plotly_chart(charts.reliability((bench.before.predicted, bench.before.observed, bench.before.ece)),
                        width="stretch")
        return
    c3.metric("Temperature T", f"{bench.temperature:.2f}",
              help="Fitted on validation. Every logit is divided by T: sigmoid(logit(p) / T). T is the value that "
                   "makes the validation images' labels most likely.")
    st.markdown(bench.sentence())
    st.caption("Scaling only makes probabilities more or less extreme: a curve that stays on one side of the "
               "diagonal (pneumonia stated more often than it is seen, or less) is a bias it cannot remove.")
    if split == "val":
        st.caption("T was fitted on these same validation images, so the scaled curve flatters it: the test split "
                   "is the honest check.")
    st.plotly_chart(charts.reliability(
        (bench.before.predicted, bench.before.observed, bench.before.ece),
        (bench.after.predicted, bench.after.observed, bench.after.ece), bench.temperature), width="stretch")
    st.table(bench.table.style.format("{:.3f}", na_rep="–"))
    st.caption(f"Scaling keeps the order of the probabilities, so the AUC is unchanged and threshold "
               f"{bench.threshold:.3f} on raw probabilities makes exactly the calls that {bench.mapped_threshold:.3f} "
               f"makes on scaled ones (last row). Keeping the number {bench.threshold:.3f} on scaled probabilities "
               f"can call differently (middle row).")


def errors(run: Run, data: pd.DataFrame, threshold: float) -> None:
    """The images in one cell of the confusion matrix, the most confident first."""
    st.subheader("Errors")
    cell = st.selectbox("Show", list(evaluate.CELLS), key="ev_cell")
    chosen = evaluate.errors(data, threshold, cell)
    st.caption(f"{len(chosen)} image{'' if len(chosen) == 1 else 's'}; showing up to {ERRORS_SHOWN}, the most "
               "confident first.")
    config = run.config()
    image_set = run_image_set(config.dataset, config.image_size)
    if image_set is None:
        st.info(f"The run's data set ({plain(short_name(config.dataset))}) is not readable on this server (moved, "
                "renamed, or the run was trained on another machine), so its images cannot be shown; the numbers "
                "above come from the run's saved predictions.")
        return
    index = {item: i for i, item in enumerate(image_set.records["id"])}
    cols = st.columns(6)
    for n, row in enumerate(chosen.head(ERRORS_SHOWN).itertuples()):
        if row.id in index:
            cols[n % 6].image(np.asarray(image_set.images[index[row.id]]), caption=f"p = {row.prob:.3f}",
                              width="stretch")


def compare(runs: list[Run], rule: ThresholdRule, split: str, first_threshold: float) -> None:
    """Several runs on one split, each at its own threshold, and the first two tested pairwise.
    Runs scored on other images than the first are left out, with the reason, unless asked for."""
    st.subheader("Compare runs")
    label = run_labels(runs)
    scored = {run.id: board.test_set(run, predictions(run), split) for run in runs}
    others = [run for run in runs[1:] if not scored[run.id].comparable(scored[runs[0].id])]
    if others:
        films = "; ".join(f"{label[run.id]}: {scored[run.id].films} {split} images" for run in others)
        st.info(f"Scored on other {split} images than {label[runs[0].id]} ({scored[runs[0].id].films}), so an AUC "
                f"difference would mix the models with the images: {films}.", icon=":material/info:")
        if not st.toggle("Show them anyway", key="ev_incomparable"):
            runs = [run for run in runs if run not in others]
    if len(runs) < 2:
        return
    frames = {label[run.id]: predictions(run) for run in runs}
    thresholds = {label[run.id]: threshold_for(run, rule) for run in runs[1:]}
    thresholds[label[runs[0].id]] = first_threshold
    curves, table = evaluate.comparison(frames, thresholds, split)
    colors = charts.run_colors({label[run.id]: run.number for run in runs})
    roc, pr = side_by_side("compare", 2)
    roc.plotly_chart(charts.roc({n: (c.fpr, c.tpr, c.auc) for n, c in curves.items()}, colors=colors),
                     width="stretch")
    pr.plotly_chart(charts.precision_recall({n: (c.recall, c.precision, c.average_precision)
                                             for n, c in curves.items()}, colors=colors), width="stretch")
    st.dataframe(table, hide_index=True, width="stretch")
    first, second = label[runs[0].id], label[runs[1].id]
    same_family = scored[runs[0].id].family == scored[runs[1].id].family  # else equal ids name other films
    result = evaluate.paired(frames[first], frames[second], split) if same_family else None
    if result is None:
        st.info("These two runs scored the same films named differently (a folder and PneumoniaMNIST) or other "
                "images, so they cannot be compared image by image.")
    else:
        st.markdown(result.sentence(plain(first), plain(second), split))

"""Evaluate page: move a threshold and see every consequence; compare runs honestly."""

import numpy as np
import pandas as pd
import streamlit as st

from pneumo import charts
from pneumo.evaluation import metrics
from pneumo.runs.store import RunStore
from ui.common import run_images, synthetic_banner

st.title("Evaluate")
runs = [r for r in RunStore().runs() if r.damage is None and not r.predictions().empty]
if not runs:
    st.info("No run has predictions yet: train a run to the end (or stop one) on the Train page.")
    st.stop()
names = {r.id: r.name for r in runs}
picked = st.multiselect("Runs (the first is shown in detail; pick more to compare)", list(names),
                        default=list(names)[:1], format_func=names.get)
if not picked:
    st.stop()
c1, c2, c3 = st.columns([1, 2, 2])
split = c1.segmented_control("Split", ["test", "val"], default="test", key="ev_split") or "test"
strategy = c2.selectbox("Threshold", metrics.STRATEGIES, key="ev_strategy",
                        help="Every strategy but manual is chosen on the run's validation split (patient-grouped, "
                             "carved from train) and then applied here: choosing it on test would flatter the model.")
params: dict = {}
if strategy == "target sensitivity":
    params["target_sensitivity"] = c3.slider("Target sensitivity", 0.5, 1.0, 0.95, 0.01, key="ev_target")
elif strategy == "min expected cost":
    params["cost_ratio"] = c3.number_input("Cost of a missed pneumonia ÷ cost of a false alarm", 0.1, 1000.0, 5.0,
                                           key="ev_cost")

thresholds = st.session_state.setdefault("thresholds", {})  # the Predict page uses these


@st.cache_data(show_spinner=False, max_entries=32)
def threshold_free(run_id: str, split: str, _labels: np.ndarray, _probs: np.ndarray):
    """What does not move with the threshold, computed once per run and split."""
    return (metrics.curves(_labels, _probs), metrics.auc_interval(_labels, _probs),
            metrics.sweep(_labels, _probs, np.linspace(0, 1, 201)), metrics.calibration(_labels, _probs))



def threshold_for(run_id: str, predictions: pd.DataFrame) -> float:
    val = predictions[predictions["split"] == "val"]
    if strategy == "manual":
        return thresholds.get(run_id, 0.5)
    return metrics.choose_threshold(strategy, val["label"].to_numpy(), val["prob"].to_numpy(), **params)


run = RunStore().get(picked[0])
synthetic_banner(spec=run.config().dataset)
predictions = run.predictions()
data = predictions[predictions["split"] == split]
if data.empty:
    st.warning(f"This run has no {split} predictions.")
    st.stop()
labels, probs = data["label"].to_numpy(), data["prob"].to_numpy()
if strategy == "manual":
    threshold = st.slider("Decision threshold (probability of pneumonia)", 0.0, 1.0,
                          float(thresholds.get(run.id, 0.5)), 0.01, key=f"ev_thr_{run.id}")
else:
    threshold = threshold_for(run.id, predictions)
    st.markdown(f"Threshold **{threshold:.3f}**, chosen by *{strategy}* on the validation split and applied to "
                f"{split}.")
thresholds[run.id] = threshold

conf = metrics.confusion(labels, probs, threshold)
values = conf.metrics()
intervals = metrics.bootstrap(labels, probs, threshold, resamples=1000)
curve, auc_ci, sweep, calibration = threshold_free(run.id, split, _labels=labels, _probs=probs)
left, right = st.columns([1, 1])
left.plotly_chart(charts.confusion_matrix(conf.tp, conf.fp, conf.tn, conf.fn), width="stretch")
labels_of = {"ppv": "PPV (precision)", "npv": "NPV", "f1": "F1", "mcc": "MCC",
             "balanced_accuracy": "balanced accuracy"}
rows = [("AUC", curve.auc, "auc")] + [(labels_of.get(n, n), values[n], n) for n in metrics.METRIC_NAMES]
intervals.loc["auc"] = auc_ci
table = pd.DataFrame([{"metric": label, "value": round(v, 3),
                       "95 % interval": f"{intervals.loc[key, 'low']:.3f} – {intervals.loc[key, 'high']:.3f}"}
                      for label, v, key in rows])
right.dataframe(table, hide_index=True, width="stretch")
right.caption(f"{len(labels)} {split} images, {int(labels.sum())} with pneumonia. Intervals: 1,000 bootstrap "
              "resamples of the images.")
prevalence = right.number_input("Prevalence where the model would be used (%)", 0.1, 99.9,
                                round(100 * labels.mean(), 1), key="ev_prevalence") / 100
ppv, npv = metrics.at_prevalence(values["sensitivity"], values["specificity"], prevalence)
right.markdown(f"At {prevalence:.1%} prevalence: a positive call is right **{ppv:.1%}** of the time (PPV), "
               f"a negative call **{npv:.1%}** (NPV).")

fpr = 1 - values["specificity"]
c1, c2, c3 = st.columns(3)
c1.plotly_chart(charts.roc({run.name: (curve.fpr, curve.tpr, curve.auc)}, (fpr, values["sensitivity"])),
                width="stretch")
c2.plotly_chart(charts.precision_recall({run.name: (curve.recall, curve.precision, curve.average_precision)},
                                        (values["sensitivity"], values["ppv"])), width="stretch")
c3.plotly_chart(charts.metrics_vs_threshold(sweep, threshold), width="stretch")

with st.expander("Calibration: do the probabilities mean what they say?"):
    st.plotly_chart(charts.reliability(*calibration), width="stretch")

st.subheader("Errors")
cells = {"missed pneumonia (false negatives)": (1, False), "false alarms (false positives)": (0, True),
         "caught pneumonia (true positives)": (1, True), "correct all-clear (true negatives)": (0, False)}
cell = st.selectbox("Show", list(cells), key="ev_cell")
label, called = cells[cell]
chosen = data[(data["label"] == label) & ((data["prob"] >= threshold) == called)]
chosen = chosen.sort_values("prob", ascending=not called)  # the most confident mistakes first
st.caption(f"{len(chosen)} images; showing up to 12, the most confident first.")
config = run.config()
images = run_images(config.dataset, config.image_size)
if images is None:
    st.info("The run's data set is not available here, so its images cannot be shown.")
else:
    index = {item: i for i, item in enumerate(images.records["id"])}
    cols = st.columns(6)
    for n, (_, row) in enumerate(chosen.head(12).iterrows()):
        if row["id"] in index:
            cols[n % 6].image(np.asarray(images.images[index[row["id"]]]), caption=f"p = {row['prob']:.3f}",
                              width="stretch")

if len(picked) > 1:
    st.subheader("Compare runs")
    rocs, prs, rows = {}, {}, []
    for run_id in picked:
        other = RunStore().get(run_id).predictions()
        part = other[other["split"] == split]
        c = metrics.curves(part["label"], part["prob"])
        rocs[names[run_id]] = (c.fpr, c.tpr, c.auc)
        prs[names[run_id]] = (c.recall, c.precision, c.average_precision)
        t = threshold_for(run_id, other) if run_id != run.id else threshold
        m = metrics.confusion(part["label"], part["prob"], t).metrics()
        rows.append({"run": names[run_id], "threshold": round(t, 3), "AUC": round(c.auc, 3),
                     **{k: round(m[k], 3) for k in ("sensitivity", "specificity", "ppv", "f1", "mcc")}})
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.roc(rocs), width="stretch")
    c2.plotly_chart(charts.precision_recall(prs), width="stretch")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    first, second = picked[0], picked[1]
    a = data.set_index("id")
    b = RunStore().get(second).predictions()
    b = b[b["split"] == split].set_index("id")
    common = a.index.intersection(b.index)
    if len(common) and a.loc[common, "label"].nunique() == 2:
        diff, (low, high), p = metrics.paired_auc_test(a.loc[common, "label"].to_numpy(),
                                                       a.loc[common, "prob"].to_numpy(),
                                                       b.loc[common, "prob"].to_numpy())
        verdict = ("so the difference could well be chance" if p >= 0.05 else
                   "so a difference this large would rarely arise by chance")
        st.markdown(f"On the same {len(common)} {split} images, **{names[first]}** has an AUC "
                    f"{abs(diff):.3f} {'higher' if diff >= 0 else 'lower'} than **{names[second]}** "
                    f"(95 % interval of the difference {low:+.3f} to {high:+.3f}; paired bootstrap p = {p:.3f}), "
                    f"{verdict}.")
    else:
        st.info("These two runs were scored on different images, so their AUCs cannot be compared pairwise.")

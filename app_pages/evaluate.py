"""Evaluate page: move a threshold and see every consequence; compare runs honestly."""

import streamlit as st

from pneumo.evaluation.evaluate import on_split
from ui import evaluate
from ui.common import run_labels, synthetic_banner

st.title("Evaluate")
runs = {run.id: run for run in evaluate.runs_with_predictions()}
labels = run_labels(list(runs.values()))
if not runs:
    st.info("No run has predictions yet: train a run to the end (or stop one) on the Train page.")
    st.stop()
picked = st.multiselect("Runs (the first is shown in detail; pick more to compare)", list(runs),
                        default=list(runs)[:1], format_func=labels.get)
if not picked:
    st.stop()
split, rule = evaluate.threshold_rule()

run = runs[picked[0]]
synthetic_banner(spec=run.config().dataset)
data = on_split(evaluate.predictions(run), split)
if data.empty:
    st.warning(f"This run has no {split} predictions.")
    st.stop()
threshold = evaluate.choose_threshold(run, rule, split)
evaluate.at_threshold(run, data, threshold, split, rule)
evaluate.errors(run, data, threshold)
if len(picked) > 1:
    evaluate.compare([runs[run_id] for run_id in picked], rule, split, threshold)

"""Board page: every run of the class ranked by test AUC, beside published results on the same films."""

import streamlit as st

from pneumo.evaluation.board import table
from pneumo.runs.store import RunStore
from ui import board

st.title("Class board")
runs = [run for run in RunStore().runs() if run.damage is None]
results = board.results(runs)
if not results:
    st.info("No run has test predictions yet: train a run to the end (or stop one) on the Train page. "
            "The board then ranks every run by its test AUC.")
    st.stop()
pool = st.toggle("Pool repeats (same settings, other seeds) as mean ± sd", True, key="board_pool")
ranked, apart = table(results, pool)
board.ranked(ranked)
if len(apart):
    board.apart(apart)
board.repeat_seeds([r.run for r in results])

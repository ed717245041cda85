"""Board page sections: the ranked runs, the runs kept apart, and repeating a run with other seeds.

The numbers come from ``pneumo.evaluation.board``; each run's entry is computed again only when
one of its files changes (predictions, threshold, status, config), so a class of runs costs a
few file stats per rerun.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pneumo import charts
from pneumo.access import Mode
from pneumo.evaluation import board
from pneumo.runs import jobs
from pneumo.runs.monitoring import duration
from pneumo.runs.store import Run, RunStore
from ui.common import file_stamp, plain, policy, run_labels, run_picker
from ui.evaluate import predictions
from ui.identity import current_user

# The board's columns, the ones a class reads first on the left (a projector shows only those).
COLUMNS = ("rank", "", "run", "why apart", "AUC", "owner", "AUC spread", "sensitivity", "specificity", "accuracy",
           "threshold", "data set", "model", "image size", "epochs", "augmentation", "unfreeze",
           "duration", "device", "runs", "seeds", "test films")
WHOLE_NUMBERS = ("runs", "image size", "unfreeze", "test films")


@st.cache_data(show_spinner=False, max_entries=512)
def _result(path: str, stamps: tuple) -> board.Result | None:
    run = Run(Path(path))
    return board.result(run, predictions(run))


def results(runs: list[Run]) -> list[board.Result]:
    out = []
    for run in runs:
        stamps = tuple(file_stamp(run.file(n)) for n in ("predictions.csv", "threshold.json", "status.json",
                                                          "config.json"))
        if stamps[0] is not None and (entry := _result(str(run.path), stamps)) is not None:
            out.append(entry)
    return out


def _swatches(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    """The table with a dot in each run's colour (the colour it has on every chart)."""
    colors = charts.run_colors({str(i): int(n) for i, n in frame["number"].dropna().items()})
    shown = frame.assign(**{"": ["●" if str(i) in colors else "◆" for i in frame.index],
                            "duration": [duration(s) if pd.notna(s) else "" for s in frame["seconds"]]})
    solo = policy().mode == Mode.SOLO  # one user: whose run says nothing
    shown = shown[[c for c in COLUMNS if c in shown.columns and not (solo and c == "owner")]]
    return (shown.style.apply(lambda col: [f"color: {colors.get(str(i), '#777777')}" for i in col.index], subset=[""])
            .format({c: "{:.0f}" for c in WHOLE_NUMBERS if c in shown.columns} | {"AUC": "{:.3f}"}, na_rep=""))


def ranked(frame: pd.DataFrame) -> None:
    numbers = frame.dropna(subset=["number"]).set_index("rank")["number"].astype(int)
    st.plotly_chart(charts.board(frame, charts.run_colors(numbers.to_dict())), width="stretch")
    st.dataframe(_swatches(frame), hide_index=True, width="stretch")
    st.caption("◆ a published result. Runs are scored at the threshold saved for them on the Evaluate page "
               f"(\"default\": none was chosen, {board.DEFAULT_THRESHOLD}). Published results:")
    for ref in board.REFERENCES:
        st.caption(f"{ref.name}: {ref.citation} [{ref.link}]({ref.link})")


def apart(frame: pd.DataFrame) -> None:
    st.subheader("Not comparable")
    st.caption("Scored on other films than the official Kermany test split, so their AUC says nothing about the "
               "ranking above: compare them only with runs on the same data set.")
    st.dataframe(_swatches(frame.rename(columns={"reason": "why apart"})), hide_index=True, width="stretch",
                 column_config={"why apart": st.column_config.TextColumn(width="large")})  # the point of this table


def repeat_seeds(runs: list[Run]) -> None:
    """Queue a run's settings again with other seeds, so the board can show the spread luck gives."""
    st.subheader(f"Repeat a run with {jobs.SEEDS} seeds")
    user = current_user()
    labels = run_labels(runs)
    run_id = run_picker("Run", labels, "board_repeat")
    if user is None:
        st.info("Type your name in the sidebar to start runs.")
        return
    if st.button(f"Train it with {jobs.SEEDS} seeds", icon=":material/replay:",
                 help="Starts runs with the same settings and other seeds until there are "
                      f"{jobs.SEEDS}; the board then shows their mean ± sd."):
        queued, refused = jobs.repeat(RunStore().get(run_id), RunStore(), by=user, policy=policy())
        if queued:
            st.success(f"Queued {len(queued)} run{'s' * (len(queued) > 1)}: "
                       + ", ".join(plain(r.name) for r in queued) + ". Watch them on the Train page.")
        elif not refused:
            st.info(f"This run's settings already have {jobs.SEEDS} seeds.")
        if refused:
            st.warning(plain(refused))

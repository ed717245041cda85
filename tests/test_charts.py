import pandas as pd

from pneumo import charts


def test_a_constant_learning_rate_is_drawn_on_a_log_axis() -> None:
    """On a linear axis Plotly spreads a constant 1e-3 over -1..1, and it reads as zero."""
    steady = charts.learning_rate(pd.DataFrame({"step": range(1, 40), "learning_rate": [1e-3] * 39}))
    assert steady.layout.yaxis.type == "log"
    empty = charts.learning_rate(pd.DataFrame({"step": [], "learning_rate": []}))
    assert empty.layout.yaxis.type != "log"


def test_compared_runs_tick_whole_epochs() -> None:
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_auc": [0.8, 0.85, 0.9]})
    assert charts.compare_runs({"a": history, "b": history}, "val_auc").layout.xaxis.dtick == 1

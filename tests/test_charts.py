import pandas as pd

from pneumo import charts


def test_a_constant_learning_rate_is_drawn_on_a_log_axis() -> None:
    """On a linear axis Plotly spreads a constant 1e-3 over -1..1, and it reads as zero."""
    steady = charts.learning_rate(pd.DataFrame({"step": range(1, 40), "learning_rate": [1e-3] * 39}))
    assert steady.layout.yaxis.type == "log"
    empty = charts.learning_rate(pd.DataFrame({"step": [], "learning_rate": []}))
    assert empty.layout.yaxis.type != "log"

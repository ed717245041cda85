import numpy as np
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


def test_run_names_with_tags_stay_text_in_legends() -> None:
    """Plotly draws <a href> and <b> in trace names: a run's name must not become a link."""
    name = '<a href="http://evil.example">click</a> & <b>bold</b>'
    history = pd.DataFrame({"epoch": [1, 2], "val_auc": [0.5, 0.6]})
    traces = [charts.compare_runs({name: history}, "val_auc").data[0],
              charts.roc({name: (np.array([0, 1]), np.array([0, 1]), 0.5)}).data[1]]
    for trace in traces:
        assert "<a" not in trace.name and "<b>" not in trace.name and "&lt;a href" in trace.name


def test_a_run_has_the_same_colour_on_every_chart() -> None:
    curve = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.5)
    history = pd.DataFrame({"epoch": [1, 2], "val_auc": [0.5, 0.6]})
    runs = ["first", "second"]
    roc = charts.roc(dict.fromkeys(runs, curve))  # a grey chance line comes first here
    pr = charts.precision_recall(dict.fromkeys(runs, curve))
    epochs = charts.compare_runs(dict.fromkeys(runs, history), "val_auc")

    def colours(fig) -> list[str]:
        return [t.line.color for t in fig.data if t.name.split(" (")[0] in runs]

    assert colours(roc) == colours(pr) == colours(epochs) and len(set(colours(roc))) == 2

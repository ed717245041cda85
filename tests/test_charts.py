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


def test_learning_rate_ticks_name_the_rates_used_or_powers_of_ten() -> None:
    halved = pd.DataFrame({"step": range(6), "learning_rate": [1e-3] * 3 + [5e-4] * 3})
    axis = charts.learning_rate(halved).layout.yaxis
    assert list(axis.tickvals) == [5e-4, 1e-3] and list(axis.ticktext) == ["0.0005", "0.001"]
    cyclical = pd.DataFrame({"step": range(50), "learning_rate": np.geomspace(1e-5, 1e-3, 50)})
    assert charts.learning_rate(cyclical).layout.yaxis.dtick == 1


def test_a_long_runs_batch_lines_are_thinned_to_what_a_chart_can_show() -> None:
    """Watch sends the batch charts to every watcher every poll: a run of 7,800 batches sends at
    most MAX_BATCH_POINTS per line, up to the latest batch; the smoothing still uses every batch."""
    count = 7_800
    rng = np.random.default_rng(0)
    batches = pd.DataFrame({"step": np.arange(count), "loss": rng.random(count),
                            "learning_rate": np.geomspace(1e-5, 1e-3, count)})
    smoothed = np.cumsum(batches["loss"].to_numpy()) / np.arange(1, count + 1)  # any full-length series
    raw, line = charts.batch_loss(batches, smoothed).data
    (rate,) = charts.learning_rate(batches).data
    for trace in (raw, line, rate):
        assert len(trace.x) <= charts.MAX_BATCH_POINTS and trace.x[-1] == count - 1
    assert raw.name == "1 batch in 8" and list(raw.x[:2]) == [0, 8]
    assert np.allclose(line.y, smoothed[np.asarray(line.x)])
    short = batches.head(300)
    assert len(charts.batch_loss(short, smoothed[:300]).data[0].x) == 300
    assert charts.batch_loss(short, smoothed[:300]).data[0].name == "per batch"


def test_charts_that_sit_side_by_side_keep_legends_under_the_plot() -> None:
    history = pd.DataFrame({"epoch": [1, 2], "loss": [0.7, 0.6], "val_loss": [0.8, 0.7], "val_auc": [0.5, 0.6]})
    for fig in (charts.epoch_curves(history, "loss"), charts.compare_runs({"a": history}, "val_auc")):
        assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0
    train, validation = charts.epoch_curves(history, "loss").data
    assert train.line.color != validation.line.color  # not two blues


def test_board_chart_draws_runs_in_their_colours_and_published_results_grey() -> None:
    ranked = pd.DataFrame({"rank": [1, 2], "run": ["mine", "Kermany et al. 2018"], "AUC": [0.97, 0.968],
                           "AUC low": [0.95, None], "AUC high": [0.98, None]})
    fig = charts.board(ranked, {1: charts.RUN_COLORS[3]})
    by_name = {t.y[0]: t for t in fig.data}
    assert by_name["1. mine"].marker.color == charts.RUN_COLORS[3] and by_name["1. mine"].error_x.array[0] > 0
    assert by_name["2. Kermany et al. 2018"].marker.symbol == "diamond"

"""Plotly figures for the pages. One palette: NORMAL blue, PNEUMONIA orange, everywhere."""

from __future__ import annotations

import html
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from pneumo.data.sources import CLASSES

if TYPE_CHECKING:  # scikit-learn, under evaluation, takes 1.5 s to load: the Dataset page needs neither
    from pneumo.evaluation.evaluate import AtThreshold, ThresholdFree

CLASS_COLORS = {"NORMAL": "#1f77b4", "PNEUMONIA": "#ff7f0e"}
# Runs: one colour each, told apart also by colour-blind eyes (Okabe & Ito's palette without its
# yellow and black, then three of Paul Tol's). A run keeps its colour on every chart and table: it
# comes from the run's number (``Run.number``), not from its place in a chart.
RUN_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#882255", "#999933", "#332288")
# Plotly's toolbar keeps only what a class uses (save as PNG, reset the axes): the full one covered
# chart titles on a narrow screen.
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend_title_text="",
               modebar_remove=["zoom", "pan", "select", "lasso", "zoomin", "zoomout", "autoscale"])
# For charts in narrow columns: the legend under the plot, so the plot keeps its width.
_BOTTOM_LEGEND = {**_LAYOUT, "legend": dict(orientation="h", yanchor="top", y=-0.25)}
# Two lines of one chart (train and validation; threshold metrics): colours that stay apart for
# colour-blind eyes and on a washed-out projector; Streamlit's theme otherwise gives light and dark blue.
PAIR = ("#0072B2", "#D55E00")
# A line of batches draws at most this many points: a long run has thousands (25,000 films for 10
# epochs: 7,800), more than a chart has pixels, and Watch sends them to every watcher every poll.
MAX_BATCH_POINTS = 1000


def run_colors(numbers: dict[Hashable, int]) -> dict[Hashable, str]:
    """A colour per run from its number; two runs of one chart whose numbers share a colour get
    different ones (the later takes the next free colour)."""
    colors: dict[Hashable, str] = {}
    for name, number in numbers.items():
        index = number % len(RUN_COLORS)
        while RUN_COLORS[index] in colors.values() and len(colors) < len(RUN_COLORS):
            index = (index + 1) % len(RUN_COLORS)
        colors[name] = RUN_COLORS[index]
    return colors


def _colors(names: list[str], colors: dict[str, str] | None) -> dict[str, str]:
    """The colours given, or the n-th palette colour for the n-th name."""
    return colors or run_colors({name: n for n, name in enumerate(names)})


def class_bars(table: pd.DataFrame, title: str, y_label: str = "images") -> go.Figure:
    """Grouped bars of a split x class table (counts or patients)."""
    long = table[[c for c in CLASSES if c in table.columns]].reset_index().melt(
        id_vars=table.index.name or "split", var_name="class", value_name=y_label)
    fig = px.bar(long, x=long.columns[0], y=y_label, color="class", barmode="group", text=y_label,
                 color_discrete_map=CLASS_COLORS, title=title)
    return fig.update_layout(**_LAYOUT)


def age_by_class(records: pd.DataFrame) -> go.Figure:
    """Patients' ages (from the DICOM headers) per class; films that state none are left out."""
    ages = records.assign(age=pd.to_numeric(records["age"], errors="coerce")).dropna(subset=["age"])
    fig = px.box(ages, x="cls", y="age", color="cls", color_discrete_map=CLASS_COLORS, points=False,
                 category_orders={"cls": list(CLASSES)}, title="Age per class (years, from the DICOM header)")
    return fig.update_layout(xaxis_title="", showlegend=False, **_LAYOUT)


def box_share_histogram(shares: pd.DataFrame) -> go.Figure:
    """How much of a film the radiologists' boxes cover, over the films that have boxes."""
    fig = px.histogram(shares.assign(percent=100 * shares["share"]), x="percent", nbins=30,
                       color_discrete_sequence=[CLASS_COLORS["PNEUMONIA"]],
                       title="Boxes' share of the film")
    return fig.update_layout(xaxis_title="% of the film", yaxis_title="films", **_LAYOUT)


def subtype_bars(table: pd.DataFrame) -> go.Figure:
    long = table.reset_index().melt(id_vars=table.index.name or "split", var_name="subtype", value_name="images")
    fig = px.bar(long, x=long.columns[0], y="images", color="subtype", barmode="group", text="images",
                 title="Pneumonia images by subtype (from file names)")
    return fig.update_layout(**_LAYOUT)


def size_scatter(records: pd.DataFrame) -> go.Figure:
    """Original width x height of every file (read from headers), by class."""
    fig = px.scatter(records, x="width", y="height", color="cls", opacity=0.45, marginal_x="histogram",
                     marginal_y="histogram", color_discrete_map=CLASS_COLORS,
                     hover_data=["id"], title="Original image sizes (pixels)")
    return fig.update_layout(**_LAYOUT)


def intensity_lines(histograms: dict[str, np.ndarray]) -> go.Figure:
    """Grey levels 1-255 per class. Level 0 (black borders and labels outside the body, a spike
    that flattens everything else on real films) is left out and its share given per class."""
    fig = go.Figure()
    for cls, hist in histograms.items():
        fig.add_scatter(x=np.arange(1, 256), y=100 * hist[1:], mode="lines", line=dict(color=CLASS_COLORS[cls]),
                        name=f"{cls} (black, level 0: {100 * hist[0]:.1f} %)")
    fig.update_layout(title="Pixel intensity per class (black left out)", xaxis_title="grey level",
                      yaxis_title="% of pixels", **_LAYOUT)
    return fig


def mean_image_panel(means: dict[str, np.ndarray]) -> go.Figure:
    """The mean image of each class side by side, and their difference."""
    names = list(means)
    panels = [means[n] for n in names]
    if len(panels) == 2:
        diff = panels[1] - panels[0]
        panels.append(127.5 + diff * (127.5 / max(1e-6, float(np.abs(diff).max()))))
        names.append("PNEUMONIA − NORMAL (grey = 0)")
    fig = px.imshow(np.stack(panels), facet_col=0, binary_string=False, color_continuous_scale="gray",
                    zmin=0, zmax=255, title="Mean image per class")
    for i, name in enumerate(names):
        fig.layout.annotations[i].text = name
    fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)
    return fig.update_layout(coloraxis_showscale=False, **_LAYOUT)


# --- training curves -------------------------------------------------------------------

METRIC_LABELS = {"loss": "Loss", "accuracy": "Accuracy", "auc": "AUC", "precision": "Precision", "recall": "Recall"}


def epoch_curves(history: pd.DataFrame, metric: str, phase2_start: int | None = None,
                 best: int | None = None) -> go.Figure:
    """Train and validation ``metric`` per epoch, with the fine-tuning start and best epoch marked."""
    fig = go.Figure()
    for prefix, name, dash, color in (("", "train", "solid", PAIR[0]), ("val_", "validation", "dash", PAIR[1])):
        column = prefix + metric
        if column in history:
            fig.add_scatter(x=history["epoch"], y=history[column], name=name, mode="lines+markers",
                            line=dict(dash=dash, color=color))
    if phase2_start is not None:
        fig.add_vline(x=phase2_start + 0.5, line_dash="dot", line_color="grey",
                      annotation_text="fine-tuning starts", annotation_position="top left")
    if best is not None and f"val_{metric}" in history:
        value = history.loc[history["epoch"] == best, f"val_{metric}"].iloc[0]
        fig.add_scatter(x=[best], y=[value], name=f"best epoch ({best})", mode="markers",
                        marker=dict(symbol="star", size=14, color="gold", line=dict(color="black", width=1)))
    fig.update_layout(title=f"{METRIC_LABELS.get(metric, metric)} per epoch", xaxis_title="epoch",
                      yaxis_title=METRIC_LABELS.get(metric, metric), **_BOTTOM_LEGEND)
    return fig.update_xaxes(dtick=1 if len(history) <= 20 else None)


def _every(count: int) -> int:
    """Draw every how-many-th batch so that a line has at most ``MAX_BATCH_POINTS`` points."""
    return max(1, -(-count // MAX_BATCH_POINTS))


def _thinned(batches: pd.DataFrame, every: int) -> pd.DataFrame:
    """Every ``every``-th batch, and always the latest, so the line reaches where the run is."""
    keep = np.zeros(len(batches), dtype=bool)
    keep[::every] = True
    keep[-1:] = True
    return batches[keep]


def batch_loss(batches: pd.DataFrame, smoothed: np.ndarray) -> go.Figure:
    """The loss of each batch, faint, and its smoothed line (smoothed over every batch, drawn thinned)."""
    every = _every(len(batches))
    shown = _thinned(batches.assign(smoothed=smoothed), every)
    fig = go.Figure()
    fig.add_scatter(x=shown["step"], y=shown["loss"], name="per batch" if every == 1 else f"1 batch in {every}",
                    mode="lines", line=dict(color="rgba(0,114,178,0.25)"))  # PAIR[0], faint
    fig.add_scatter(x=shown["step"], y=shown["smoothed"], name="smoothed", mode="lines", line=dict(color=PAIR[0]))
    fig.update_layout(title="Training loss per batch", xaxis_title="batch (step)", yaxis_title="loss",
                      **_BOTTOM_LEGEND)
    return fig


def _text(name: str) -> str:
    """A typed name (a run's) as Plotly shows it: its tags (<a href>, <b>) made plain characters."""
    return html.escape(name, quote=False)


def learning_rate(batches: pd.DataFrame) -> go.Figure:
    """On a log axis, as rates are chosen by powers of ten (a linear axis drew a constant 1e-3 as 0),
    ticked at the rates the run used when they are few (1e-3, 5e-4 after a halving), else at powers
    of ten: Plotly's own log ticks labelled every 2 and 5 between them, unreadable on a projector."""
    rates = batches["learning_rate"]
    log = bool(len(rates) and rates.min() > 0)
    shown = _thinned(batches, _every(len(batches)))
    fig = px.line(shown, x="step", y="learning_rate", title="Learning rate", log_y=log)
    fig.update_layout(xaxis_title="batch (step)", yaxis_title="learning rate", **_LAYOUT)
    used = np.unique(rates.round(12))
    if log and len(used) <= 4:
        fig.update_yaxes(tickvals=used, ticktext=[f"{r:.2g}" for r in used])
    elif log:
        fig.update_yaxes(dtick=1, exponentformat="e")
    return fig


def compare_runs(histories: dict[str, pd.DataFrame], column: str, colors: dict[str, str] | None = None
                 ) -> go.Figure:
    """One line per run, same axes, each run in its colour."""
    fig, colors = go.Figure(), _colors(list(histories), colors)
    for name, history in histories.items():
        if column in history:
            fig.add_scatter(x=history["epoch"], y=history[column], name=_text(name), mode="lines+markers",
                            line=dict(color=colors[name]))
    label = column.replace("val_", "validation ").replace("auc", "AUC")
    fig.update_layout(title=f"{label} per epoch", xaxis_title="epoch", yaxis_title=label, **_BOTTOM_LEGEND)
    longest = max((len(h) for h in histories.values()), default=0)
    return fig.update_xaxes(dtick=1 if longest <= 20 else None)  # as epoch_curves: no epoch 1.5


def unfreeze_diagram(blocks: pd.DataFrame) -> go.Figure:
    """ResNet50 drawn as its blocks, left (input) to right (output): trainable ones coloured."""
    colors = ["#ff7f0e" if t == "all" else "#ffbb78" if t == "some" else "#c7c7c7" for t in blocks["trains"]]
    fig = go.Figure(go.Bar(
        x=blocks["block"], y=[1] * len(blocks), marker_color=colors, width=0.92,
        customdata=blocks[["params", "trainable params"]].to_numpy(),
        text=blocks["stage"], textposition="inside",
        hovertemplate="%{x}<br>%{customdata[1]:,} of %{customdata[0]:,} parameters train<extra></extra>"))
    fig.update_yaxes(visible=False).update_xaxes(tickangle=-60)
    fig.update_layout(title="ResNet50, input → output: orange trains, grey is frozen", height=230,
                      margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
    return fig


# --- evaluation --------------------------------------------------------------------------


def threshold_view(name: str, at: AtThreshold, fixed: ThresholdFree, color: str = RUN_COLORS[0]
                   ) -> dict[str, go.Figure]:
    """The Evaluate page's figures for one run (in its colour) at one threshold: what a slider move
    redraws."""
    sensitivity, specificity = at.values["sensitivity"], at.values["specificity"]
    c, curves = at.confusion, fixed.curves
    return {
        "confusion": confusion_matrix(c.tp, c.fp, c.tn, c.fn),
        "roc": roc({name: (curves.fpr, curves.tpr, curves.auc)}, (1 - specificity, sensitivity), {name: color}),
        "pr": precision_recall({name: (curves.recall, curves.precision, curves.average_precision)},
                               (sensitivity, at.values["ppv"]), {name: color}),
        "sweep": metrics_vs_threshold(fixed.sweep, at.threshold),
    }


def board(ranked: pd.DataFrame, colors: dict[int, str]) -> go.Figure:
    """The class board as dots on one AUC axis, best on top: each run in its colour (``colors`` by
    rank) with its 95 % interval or ± sd over repeats; published results as grey diamonds."""
    fig = go.Figure()
    for row in ranked.iloc[::-1].to_dict("records"):
        label, color = f"{row['rank']}. {_text(row['run'])}", colors.get(row["rank"])
        error = None if color is None else dict(type="data", symmetric=False, array=[row["AUC high"] - row["AUC"]],
                                                arrayminus=[row["AUC"] - row["AUC low"]])
        fig.add_scatter(x=[row["AUC"]], y=[label], mode="markers", showlegend=False, error_x=error,
                        marker=dict(size=12, symbol="circle" if color else "diamond", color=color or "#777777"),
                        hovertemplate=f"{label}<br>AUC %{{x:.3f}}<extra></extra>")
    fig.update_layout(title="Test AUC on the official Kermany test films", xaxis_title="test AUC",
                      height=120 + 28 * len(ranked), **_LAYOUT)
    return fig.update_yaxes(automargin=True)


def confusion_matrix(tp: int, fp: int, tn: int, fn: int) -> go.Figure:
    """Counts and row rates, with the cells named in words."""
    z = np.array([[tn, fp], [fn, tp]], float)
    rates = z / np.maximum(z.sum(axis=1, keepdims=True), 1)
    words = [["correct all-clear", "false alarm"], ["missed pneumonia", "caught pneumonia"]]
    text = [[f"<b>{int(z[r, c])}</b><br>{rates[r, c]:.1%} of row<br>{words[r][c]}" for c in range(2)]
            for r in range(2)]
    fig = go.Figure(go.Heatmap(z=rates, x=list(CLASSES), y=list(CLASSES), text=text, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1, showscale=False, hoverinfo="skip",
                               textfont=dict(size=16)))  # read from the back of a classroom
    # Short, upright-turned labels: the matrix keeps its width in a half-page column at 1024 px.
    fig.update_xaxes(title="predicted").update_yaxes(title="actual", autorange="reversed", tickangle=-90)
    return fig.update_layout(title="Confusion matrix", height=360, **_LAYOUT)


Curve = tuple[np.ndarray, np.ndarray, float]  # x, y and the area under the curve


def roc(curves: dict[str, Curve], point: tuple[float, float] | None = None,
        colors: dict[str, str] | None = None) -> go.Figure:
    """ROC curves {name: (fpr, tpr, auc)}, with the current operating point."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance")
    return _curves(fig, curves, "AUC", point, colors, "ROC curve", "false positive rate (1 − specificity)",
                   "sensitivity")


def precision_recall(curves: dict[str, Curve], point: tuple[float, float] | None = None,
                     colors: dict[str, str] | None = None) -> go.Figure:
    """PR curves {name: (recall, precision, average precision)}, with the current operating point."""
    return _curves(go.Figure(), curves, "AP", point, colors, "Precision-recall curve", "recall (sensitivity)",
                   "precision (PPV)")


def _curves(fig: go.Figure, curves: dict[str, Curve], area: str, point: tuple[float, float] | None,
            colors: dict[str, str] | None, title: str, x_title: str, y_title: str) -> go.Figure:
    """One line per run in its colour, labelled with its area under the curve, and the operating
    point as a black x (no run is black)."""
    colors = _colors(list(curves), colors)
    for name, (x, y, value) in curves.items():
        fig.add_scatter(x=x, y=y, mode="lines", name=f"{_text(name)} ({area} {value:.3f})",
                        line=dict(color=colors[name]))
    if point is not None:
        fig.add_scatter(x=[point[0]], y=[point[1]], mode="markers", name="threshold",
                        marker=dict(size=13, color="black", symbol="x"))
    return fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, **_BOTTOM_LEGEND)


def metrics_vs_threshold(table: pd.DataFrame, threshold: float) -> go.Figure:
    fig = go.Figure()
    for name, color, dash in (("sensitivity", PAIR[1], "solid"), ("specificity", PAIR[0], "solid"),
                              ("ppv", "#009E73", "dash"), ("npv", "#CC79A7", "dash"), ("f1", "#E69F00", "dot")):
        fig.add_scatter(x=table["threshold"], y=table[name], mode="lines", name=name,
                        line=dict(color=color, dash=dash))
    threshold_line = dict(type="line", x0=threshold, x1=threshold, y0=0, y1=1, yref="paper",
                          line=dict(color="black", dash="dot"))  # a plain shape: add_vline costs ~20 ms
    fig.update_layout(title="Metrics versus threshold", xaxis_title="threshold", yaxis_title="value",
                      xaxis_range=[0, 1], shapes=[threshold_line], **_BOTTOM_LEGEND)
    return fig


def reliability(before: tuple[np.ndarray, np.ndarray, float],
                after: tuple[np.ndarray, np.ndarray, float] | None = None, temperature: float | None = None
                ) -> go.Figure:
    """Reliability diagram of the raw probabilities and, when a temperature was fitted, of the
    scaled ones on the same axes; each curve is (mean predicted per bin, observed share, ECE)."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect")
    curves = [(before, "raw", PAIR[0])] + ([(after, "temperature-scaled", PAIR[1])] if after is not None else [])
    for (predicted, observed, ece), name, color in curves:
        fig.add_scatter(x=predicted, y=observed, mode="lines+markers", name=f"{name} (ECE {ece:.3f})",
                        line=dict(color=color))
    title = "Reliability diagram" + (f": before and after temperature scaling (T = {temperature:.2f})"
                                     if temperature is not None else "")
    fig.update_layout(title=title, xaxis_title="predicted probability", yaxis_title="observed share with pneumonia",
                      xaxis_range=[-0.02, 1.02], yaxis_range=[-0.02, 1.02], **_BOTTOM_LEGEND)
    return fig

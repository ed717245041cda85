"""Plotly figures for the pages. One palette: NORMAL blue, PNEUMONIA orange, everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from pneumo.datasets import CLASSES

CLASS_COLORS = {"NORMAL": "#1f77b4", "PNEUMONIA": "#ff7f0e"}
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend_title_text="")


def class_bars(table: pd.DataFrame, title: str, y_label: str = "images") -> go.Figure:
    """Grouped bars of a split x class table (counts or patients)."""
    long = table[[c for c in CLASSES if c in table.columns]].reset_index().melt(
        id_vars=table.index.name or "split", var_name="class", value_name=y_label)
    fig = px.bar(long, x=long.columns[0], y=y_label, color="class", barmode="group", text=y_label,
                 color_discrete_map=CLASS_COLORS, title=title)
    return fig.update_layout(**_LAYOUT)


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
    fig = go.Figure()
    for cls, hist in histograms.items():
        fig.add_scatter(x=np.arange(256), y=100 * hist, name=cls, mode="lines", line=dict(color=CLASS_COLORS[cls]))
    fig.update_layout(title="Pixel intensity per class", xaxis_title="grey level", yaxis_title="% of pixels", **_LAYOUT)
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

"""The 3-D PCA view: the user's rows over the reference cloud, coloured by prediction.

plotly is imported and the figure built only when its section opens (or a row is added by hand).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ..data.schema import FEATURES

COLORS = {"edible": "#16a34a", "poisonous": "#dc2626"}


def plot_traces(ref: pd.DataFrame | None, rows: pd.DataFrame | None, row_numbers: list[int],
                pca: Callable[[pd.DataFrame], np.ndarray]) -> list[dict]:
    """The traces (dicts of name, x, y, z, marker[, text]) of the reference cloud and the user's rows."""
    traces = []
    if ref is not None and {"pca_1", "pca_2", "pca_3"} <= set(ref.columns):
        for word in ("edible", "poisonous"):
            part = ref[ref["prediction"] == word]
            traces.append(dict(name=f"reference: {word}", x=part["pca_1"].to_numpy(), y=part["pca_2"].to_numpy(),
                               z=part["pca_3"].to_numpy(), marker=dict(size=2, color=COLORS[word], opacity=0.15)))
    if rows is not None and len(rows):
        coords = pca(rows[FEATURES])
        if coords.shape[1] >= 3:
            for word in ("edible", "poisonous"):
                mask = (rows["prediction"] == word).to_numpy()
                nums = np.asarray(row_numbers)[mask]
                traces.append(dict(name=f"your rows: {word}", x=coords[mask, 0], y=coords[mask, 1],
                                   z=coords[mask, 2], text=[f"row {n}" for n in nums],
                                   marker=dict(size=4, color=COLORS[word], symbol="diamond",
                                               line=dict(width=1, color="#111"))))
    return traces


def reference_cloud(path, pca: Callable[[pd.DataFrame], np.ndarray]) -> pd.DataFrame | None:
    """The reference rows' predictions and PCA coordinates (None when there is no reference file)."""
    if not path.exists():
        return None
    ref = pd.read_csv(path, dtype={f: str for f in FEATURES}, keep_default_na=False)
    coords = pca(ref[FEATURES])
    out = ref[["prediction"]].copy()
    for i in range(min(3, coords.shape[1])):
        out[f"pca_{i + 1}"] = coords[:, i]
    return out


class PlotView:
    """The section's box: a note and a button until the figure exists, then the figure."""

    def __init__(self, on_show: Callable[[], None]):
        import ipywidgets as W

        self.figure = None
        button = W.Button(description="Show 3-D view", icon="cube")
        button.on_click(lambda _b: on_show())
        self.box = W.VBox([W.HTML("<span class='mushroom-note'>A 3-D PCA view of your rows over the reference "
                                  "data, coloured by prediction.</span>"), button])
        self.box.add_class("mushroom-plot")

    def show(self, traces: list[dict]) -> None:
        import plotly.graph_objects as go

        if self.figure is None:
            self.figure = go.FigureWidget(
                data=[go.Scatter3d(mode="markers", **t) for t in traces],
                layout=go.Layout(height=480, margin=dict(l=0, r=0, t=30, b=0),
                                 title=dict(text="PCA of the pipeline (3 components)", x=0.02),
                                 legend=dict(itemsizing="constant"),
                                 scene=dict(xaxis_title="pca_1", yaxis_title="pca_2", zaxis_title="pca_3")))
            self.figure.add_class("mushroom-scatter")
            self.box.children = [self.figure]
            return
        with self.figure.batch_update():
            existing = {tr.name: tr for tr in self.figure.data}
            if {t["name"] for t in traces} != set(existing):
                self.figure.data = []
                for t in traces:
                    self.figure.add_trace(go.Scatter3d(mode="markers", **t))
                return
            for t in traces:
                tr = existing[t["name"]]
                tr.x, tr.y, tr.z = t["x"], t["y"], t["z"]
                if "text" in t:
                    tr.text = t["text"]

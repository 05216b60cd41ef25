"""Figures and the tables behind them for the notebooks (train.ipynb, exploration.ipynb).

Every function returns a pandas DataFrame or a plotly Figure; the notebooks only call and display them.
plotly and scikit-learn are imported inside the functions that draw or fit (never at ``mushroom_lib`` import).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import numpy as np
import pandas as pd

from ..core.settings import Settings
from ..core.vocab import CODE_TO_WORD, EDIBLE, POISONOUS, label_word
from ..data.dataset import load_split
from ..data.schema import CODES, FEATURES, TARGET
from ..model import pipeline as M

CLASS_COLORS = {CODE_TO_WORD[EDIBLE]: "#2ca02c", CODE_TO_WORD[POISONOUS]: "#d62728"}


def setup(renderer: str = "plotly_mimetype") -> None:
    """Show figures as plotly's JSON mimetype: JupyterLab draws it, executed copies stay small."""
    import plotly.io as pio  # lazy: plotly only where a figure is drawn (tests/test_monitoring.py)

    pio.renderers.default = renderer


def _words(labels) -> np.ndarray:
    return np.array([label_word(v) or v for v in labels], dtype=object)


# ------------------------------------------------------------------------------------------ training
def train_summary(result) -> pd.DataFrame:
    """One row per figure of a TrainResult: version, promotion, holdout metrics, threshold."""
    rows = [("version", result.version),
            ("promoted", "yes" if result.promoted else f"no ({result.reason or 'promote=False'})"),
            ("training rows", result.training_rows), ("feedback rows", result.feedback_rows),
            ("threshold on p_poisonous", round(result.threshold, 4)), ("seconds", round(result.seconds, 1))]
    rows += [(f"holdout {k}", round(result.metrics[k], 4) if isinstance(result.metrics[k], float)
              else result.metrics[k]) for k in ("accuracy", "precision", "recall", "f1", "false_edible",
                                                "false_poisonous")]
    return pd.DataFrame(rows, columns=["figure", "value"]).set_index("figure")


def explained_variance(pipeline, X: pd.DataFrame) -> pd.DataFrame:
    """Explained-variance ratio of every principal component of the encoded, scaled features."""
    from sklearn.decomposition import (
        PCA,  # lazy: scikit-learn only where a model is fitted
    )

    scaled = pipeline[:-2].transform(X[FEATURES])
    full = PCA(random_state=0).fit(scaled)
    ratio = full.explained_variance_ratio_
    chosen = pipeline.named_steps["pca"].n_components_
    return pd.DataFrame({"component": np.arange(1, len(ratio) + 1), "ratio": ratio,
                         "cumulative": np.cumsum(ratio), "in_model": np.arange(1, len(ratio) + 1) <= chosen})


def explained_variance_figure(pipeline, X: pd.DataFrame):
    """Bars per component (the model's in colour) and the cumulative share as a line."""
    import plotly.graph_objects as go  # lazy: plotly

    ev = explained_variance(pipeline, X)
    chosen = int(ev["in_model"].sum())
    fig = go.Figure()
    fig.add_bar(x=ev["component"], y=ev["ratio"], name="per component",
                marker_color=np.where(ev["in_model"], "#1f77b4", "#c7c7c7"))
    fig.add_scatter(x=ev["component"], y=ev["cumulative"], name="cumulative", mode="lines+markers")
    fig.update_layout(title=f"PCA explained variance (the model keeps {chosen} components: "
                            f"{ev['cumulative'].iloc[chosen - 1]:.1%})",
                      xaxis_title="principal component", yaxis_title="share of variance",
                      yaxis_tickformat=".0%")
    return fig


def embedding_frame(pipeline, train: pd.DataFrame, holdout: pd.DataFrame | None = None) -> pd.DataFrame:
    """PCA coordinates of train (and holdout) rows with their class (words) and split."""
    parts = [("train", train)] + ([("holdout", holdout)] if holdout is not None else [])
    frames = []
    for split, df in parts:
        coords = pipeline[:-1].transform(df[FEATURES])
        out = pd.DataFrame(coords, columns=[f"pca_{i + 1}" for i in range(coords.shape[1])])
        out["class"] = _words(df[TARGET]) if TARGET in df.columns else "unknown"
        out["split"] = split
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def embedding_figure(pipeline, train: pd.DataFrame, holdout: pd.DataFrame | None = None):
    """3-D PCA embedding coloured by class, symbol by split (2-D when the model keeps two components)."""
    import plotly.express as px  # lazy: plotly

    emb = embedding_frame(pipeline, train, holdout)
    common = dict(color="class", symbol="split", color_discrete_map=CLASS_COLORS, opacity=0.6,
                  title="PCA embedding of the mushrooms (colour: class, symbol: train / holdout)")
    if "pca_3" in emb.columns:
        fig = px.scatter_3d(emb, x="pca_1", y="pca_2", z="pca_3", **common)
        fig.update_traces(marker_size=2)
    else:
        fig = px.scatter(emb, x="pca_1", y="pca_2", **common)
    return fig


def confusion_matrix_figure(metrics: dict, title: str = "Holdout confusion matrix"):
    """Heatmap of ``metrics['confusion_matrix']`` (rows: true class, columns: predicted)."""
    import plotly.express as px  # lazy: plotly

    cm = metrics["confusion_matrix"]
    labels = cm["labels"]
    fig = px.imshow(np.array(cm["rows_true_cols_pred"]), x=[f"predicted {c}" for c in labels],
                    y=[f"true {c}" for c in labels], text_auto=True, color_continuous_scale="Blues",
                    title=f"{title} (false_edible = true poisonous, predicted edible: {metrics['false_edible']})")
    fig.update_layout(coloraxis_showscale=False)
    return fig


def threshold_tradeoff(p: np.ndarray, y, thresholds: Iterable[float] | None = None) -> pd.DataFrame:
    """accuracy, false_edible and false_poisonous at each threshold on p_poisonous."""
    grid = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(list(thresholds), dtype=float)
    rows = []
    for t in grid:
        m = M.metrics(p, y, float(t))
        rows.append((float(t), m["accuracy"], m["false_edible"], m["false_poisonous"]))
    return pd.DataFrame(rows, columns=["threshold", "accuracy", "false_edible", "false_poisonous"])


def _tradeoff_figure(frame: pd.DataFrame, x: str, chosen: float, title: str, xtitle: str):
    from plotly.subplots import make_subplots  # lazy: plotly

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(x=frame[x], y=frame["false_edible"], name="false_edible (count)", mode="lines+markers",
                    line_color=CLASS_COLORS["poisonous"])
    fig.add_scatter(x=frame[x], y=frame["accuracy"], name="accuracy", mode="lines+markers",
                    line_color="#1f77b4", secondary_y=True)
    fig.add_vline(x=chosen, line_dash="dash", line_color="grey", annotation_text="model")
    fig.update_layout(title=title, xaxis_title=xtitle)
    fig.update_yaxes(title_text="false_edible (poisonous called edible)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="accuracy", secondary_y=True, tickformat=".1%")
    return fig


def reliability_figure(record: dict):
    """The reliability curve of p_poisonous from a version record's out-of-fold calibration facts:
    mean p per bin against the observed poisonous share (the diagonal is a calibrated probability)."""
    import plotly.graph_objects as go  # lazy: plotly

    calib = record["calibration"]
    bins = pd.DataFrame(calib["reliability_out_of_fold"])
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line_dash="dash", line_color="grey", name="calibrated")
    fig.add_scatter(x=bins["mean_p"], y=bins["poisonous_share"], mode="lines+markers", name="out-of-fold",
                    text=[f"{n} rows" for n in bins["rows"]], marker_size=np.clip(np.sqrt(bins["rows"]), 6, 30),
                    line_color=CLASS_COLORS["poisonous"])
    fig.update_layout(title=f"Reliability of p_poisonous (a neighbour vote, not recalibrated): Brier out-of-fold "
                            f"{calib['brier_out_of_fold']:.4f}, holdout {calib['brier_holdout']:.4f}",
                      xaxis_title="mean p_poisonous in the bin", yaxis_title="observed poisonous share",
                      xaxis_range=[0, 1], yaxis_range=[0, 1])
    return fig


def threshold_tradeoff_figure(frame: pd.DataFrame, chosen: float):
    """false_edible and accuracy against the threshold, the model's threshold marked."""
    return _tradeoff_figure(frame, "threshold", chosen,
                            "Safety trade-off on the holdout: lower thresholds call more rows poisonous",
                            "threshold on p_poisonous (>= threshold: poisonous)")


def components_tradeoff(settings: Settings, cfg: M.ModelConfig | None = None,
                        values: Iterable[int] = range(2, 11)) -> pd.DataFrame:
    """For each n_components: fit on the training split (threshold chosen out-of-fold), score the holdout."""
    cfg = cfg or M.ModelConfig(seed=settings.seed)
    train, holdout = load_split(settings)
    rows = []
    for n in values:
        trained = M.fit(train[FEATURES], train[TARGET], replace(cfg, n_components=int(n)))
        m = M.metrics(M.p_poisonous(trained.pipeline, holdout), holdout[TARGET].to_numpy(), trained.threshold)
        rows.append((int(n), m["accuracy"], m["false_edible"], m["false_poisonous"], trained.threshold))
    return pd.DataFrame(rows, columns=["n_components", "accuracy", "false_edible", "false_poisonous", "threshold"])


def components_tradeoff_figure(frame: pd.DataFrame, chosen: int):
    """false_edible and accuracy against n_components, the model's choice marked."""
    return _tradeoff_figure(frame, "n_components", chosen,
                            "Safety trade-off on the holdout against the number of PCA components",
                            "PCA components (each model with its own out-of-fold threshold)")


# ------------------------------------------------------------------------------------------ exploration
def codes_table() -> pd.DataFrame:
    """Every feature's codes and their meaning (from agaricus-lepiota.names)."""
    return pd.DataFrame([(f, code, name) for f in FEATURES for code, name in CODES[f].items()],
                        columns=["feature", "code", "meaning"])


def class_balance(df: pd.DataFrame) -> pd.DataFrame:
    """Rows per feature value and class, with the poisonous share (codes absent from the data omitted)."""
    words = _words(df[TARGET])
    frames = []
    for f in FEATURES:
        counts = pd.crosstab(df[f], words).reindex(columns=["edible", "poisonous"], fill_value=0)
        counts = counts.reset_index().rename(columns={f: "code"})
        counts.insert(0, "feature", f)
        counts.insert(2, "meaning", [CODES[f].get(c, c) for c in counts["code"]])
        frames.append(counts)
    out = pd.concat(frames, ignore_index=True)
    out.columns.name = None
    out["rows"] = out["edible"] + out["poisonous"]
    out["poisonous_share"] = out["poisonous"] / out["rows"]
    return out


def class_balance_figure(df: pd.DataFrame):
    """Stacked bars of edible / poisonous rows per value, one feature at a time (a menu picks it)."""
    import plotly.graph_objects as go  # lazy: plotly

    bal = class_balance(df)
    fig = go.Figure()
    buttons = []
    for i, f in enumerate(FEATURES):
        part = bal[bal["feature"] == f]
        x = [f"{c} ({m})" for c, m in zip(part["code"], part["meaning"])]
        for cls in ("edible", "poisonous"):
            fig.add_bar(x=x, y=part[cls], name=cls, marker_color=CLASS_COLORS[cls], visible=(i == 0),
                        legendgroup=cls, showlegend=True)
        visible = [False] * (2 * len(FEATURES))
        visible[2 * i] = visible[2 * i + 1] = True
        buttons.append(dict(label=f, method="update", args=[{"visible": visible},
                                                            {"title": f"Class balance per value of {f}"}]))
    fig.update_layout(barmode="stack", title=f"Class balance per value of {FEATURES[0]}",
                      updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.15)],
                      yaxis_title="rows", xaxis_title="code (meaning)")
    return fig


def most_telling(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Feature values that are (almost) pure in one class, most rows first."""
    bal = class_balance(df)
    pure = bal[(bal["poisonous_share"] <= 0.01) | (bal["poisonous_share"] >= 0.99)]
    return pure.sort_values("rows", ascending=False).head(top).reset_index(drop=True)

"""Small view pieces of the page (header and badge, status and errors, upload, feedback bar, grid, download).

Each piece owns its widgets and knows how to show things; none of them decides anything: the app
(:mod:`.app`) wires them to the state and the model. Heavy pieces (the grid) are created on demand.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..data.schema import CODES, FEATURES
from .values import P_POISONOUS, PREDICTION, SENT, TRUE_LABEL, UNCERTAIN, esc, plain

CSS = """
<style>
.mushroom-app { font-family: var(--jp-ui-font-family, sans-serif); max-width: 1400px; }
.mushroom-title { font-size: 20px; font-weight: 600; margin-right: 16px; }
.mushroom-model-version { padding: 2px 10px; border-radius: 12px; background: #e8f0fe; }
.mushroom-model-version .mv { font-weight: 600; }
.mushroom-model-version .delta { color: #555; margin-left: 6px; }
.mushroom-model-version .refused { color: #9a3412; margin-left: 6px; }
.mushroom-errors { border: 1px solid #dc2626; background: #fef2f2; color: #7f1d1d;
                   padding: 4px 10px; border-radius: 4px; }
.mushroom-errors ul { margin: 2px 0 2px 18px; padding: 0; }
.mushroom-pending { color: #1d4ed8; }
.mushroom-spinner { display: inline-block; width: 10px; height: 10px; border: 2px solid #93c5fd;
                    border-top-color: #1d4ed8; border-radius: 50%; animation: mushroom-spin 0.8s linear infinite;
                    margin-right: 6px; vertical-align: -1px; }
@keyframes mushroom-spin { to { transform: rotate(360deg); } }
.mushroom-note { color: #444; }
.mushroom-result-poisonous { color: #991b1b; font-weight: 600; }
.mushroom-result-edible { color: #166534; font-weight: 600; }
.mushroom-legend td { padding: 0 8px 0 0; vertical-align: top; }
</style>
"""


def _widgets():
    import ipywidgets as W

    return W


class Header:
    """Title, the model badge (version, last change, a refused candidate) and the retraining mark."""

    def __init__(self, upload_cap: int):
        W = _widgets()
        # the page's script reads the upload cap from data-upload-cap (files over it are refused in the page)
        self.title = W.HTML(f"{CSS}<span class='mushroom-title' data-upload-cap='{int(upload_cap)}'>"
                            "Mushroom workbench</span>")
        self.badge = W.HTML("")
        self.badge.add_class("mushroom-model-version")
        self.pending = W.HTML("", layout=W.Layout(display="none"))
        self.pending.add_class("mushroom-pending")
        self.box = W.HBox([self.title, self.badge, self.pending], layout=W.Layout(align_items="center"))

    def show_version(self, version: str | None, note: str | None = None, delta: dict | None = None,
                     refused: str | None = None) -> None:
        parts = [f"<span class='mv'>model {esc(version or 'none')}</span>"]
        if delta:
            bits = []
            for key in ("accuracy", "f1", "false_edible"):
                if key in delta:
                    v = delta[key]
                    bits.append(f"{key} {int(round(v)):+d}" if key == "false_edible" else f"{key} {v * 100:+.2f} pts")
            parts.append(f"<span class='delta'>{esc(', '.join(bits))}</span>")
        elif note:
            parts.append(f"<span class='delta'>{esc(note)}</span>")
        if refused:
            parts.append(f"<span class='refused'>{esc(refused)}</span>")
        self.badge.value = " ".join(parts)

    @property
    def badge_text(self) -> str:
        return plain(self.badge.value)

    def show_pending(self, on: bool) -> None:
        if on:
            self.pending.value = "<span class='mushroom-spinner'></span>retraining on the feedback…"
            self.pending.layout.display = None
        else:
            self.pending.layout.display = "none"
            self.pending.value = ""

    @property
    def pending_shown(self) -> bool:
        return self.pending.layout.display != "none"


class Messages:
    """The status line and the error panel; everything said is kept in ``said`` (tests, logs)."""

    def __init__(self):
        W = _widgets()
        self.status = W.HTML("<span class='mushroom-note'>Upload a CSV of mushrooms (a <code>class</code> or "
                             "<i>true label</i> column fills the true labels), or try a sample.</span>")
        self.errors = W.HTML("", layout=W.Layout(display="none"))
        self.errors.add_class("mushroom-errors")
        self.said: list[str] = []

    def say(self, text_html: str) -> None:
        self.status.value = text_html
        self.said.append(plain(text_html))

    def error(self, headline: str, problems: list[str] | None = None) -> None:
        items = "".join(f"<li>{esc(p)}</li>" for p in (problems or []))
        self.errors.value = f"<b>{esc(headline)}</b>" + (f"<ul>{items}</ul>" if items else "")
        self.errors.layout.display = None
        self.said.append(headline)

    def clear(self) -> None:
        self.errors.value = ""
        self.errors.layout.display = "none"

    @property
    def error_text(self) -> str:
        """The error panel as plain text ('' when hidden)."""
        return "" if self.errors.layout.display == "none" else plain(self.errors.value)


class UploadView:
    """The file chooser and the "Try a sample" button."""

    def __init__(self, on_file: Callable[[Any], None], on_sample: Callable[[], None]):
        W = _widgets()
        self.upload = W.FileUpload(accept=".csv,text/csv", multiple=False, description="Upload CSV",
                                   layout=W.Layout(width="170px"))
        self.upload.add_class("mushroom-upload")
        self.upload.observe(lambda change: on_file(change.get("new")), names="value")
        self.sample = W.Button(description="Try a sample", icon="flask", layout=W.Layout(width="auto", flex="0 0 auto"),
                               tooltip="20 mushrooms from the training data, half of them with their true label")
        self.sample.add_class("mushroom-sample")
        self.sample.on_click(lambda _b: on_sample())

    def reset(self) -> None:
        self.upload.value = ()  # frees the bytes and lets the same file be chosen again


class FeedbackBar:
    """Send every labelled row, or one row by its number; how many rows until the next retrain."""

    def __init__(self, on_send_labelled: Callable[[], None], on_send_row: Callable[[int], None]):
        W = _widgets()
        self.send_labelled = W.Button(description="Send labelled rows", icon="paper-plane",
                                      button_style="primary", layout=W.Layout(width="auto"),
                                      tooltip="Send every row whose true label is set (not sent yet)")
        self.send_labelled.add_class("mushroom-submit-feedback")
        self.send_labelled.on_click(lambda _b: on_send_labelled())
        self.row_input = W.BoundedIntText(value=1, min=1, max=1, description="row", layout=W.Layout(width="140px"))
        self.row_input.add_class("mushroom-row-number")
        self.send_row = W.Button(description="Send this row", layout=W.Layout(width="auto"))
        self.send_row.add_class("mushroom-submit-row")
        self.send_row.on_click(lambda _b: on_send_row(self.row_input.value))
        self.until = W.HTML("")
        self.until.add_class("mushroom-until")
        self.box = W.HBox([self.send_labelled, self.row_input, self.send_row, self.until],
                          layout=W.Layout(align_items="center", flex_flow="row wrap"))

    def show_until(self, remaining: int, k: int) -> None:
        self.until.value = f"<span class='mushroom-note'>{int(remaining)} of {int(k)} until the next retrain</span>"

    def set_rows(self, n: int) -> None:
        self.row_input.max = max(1, n)


class GridView:
    """The editable prediction grid (ipydatagrid, through the adapter), created on first use."""

    HINT = ("<span class='mushroom-note'>Double-click a cell to edit it: a feature code (or its name) re-scores "
            "the row; <i>true label</i> takes edible or poisonous. Codes are explained under "
            "<i>What the codes mean</i>.</span>")

    def __init__(self, on_edit: Callable[[int | None, str | None, Any], None]):
        W = _widgets()
        self.on_edit = on_edit
        self.grid = None
        self.box = W.VBox([W.HTML("<span class='mushroom-note'>The prediction grid appears here after an "
                                  "upload.</span>")])
        self.box.add_class("mushroom-grid-box")

    def show(self, frame: pd.DataFrame) -> None:
        """Send the whole frame to the page (creating the grid the first time)."""
        if self.grid is not None:
            self.grid.data = frame
            return
        from ipydatagrid import TextRenderer, VegaExpr

        from .grid_adapter import grid_class

        W = _widgets()
        # Only columns wider or narrower than the base size get an explicit width: on every data update the
        # grid re-applies widths, and each changed width repaints the whole canvas.
        widths = {UNCERTAIN: 200, SENT: 60, "reason": 460}  # the reason's sentence reads whole
        widths.update({f: 176 for f in FEATURES if len(f) > 18})
        renderers = {
            TRUE_LABEL: TextRenderer(background_color="#eef6ff"),
            PREDICTION: TextRenderer(background_color=VegaExpr("cell.value === 'poisonous' ? '#fde2e2' : '#dcfce7'")),
            P_POISONOUS: TextRenderer(format=".3f"),
            UNCERTAIN: TextRenderer(text_color="#9a3412", background_color=VegaExpr("cell.value ? '#ffedd5' : 'white'")),
        }
        self.grid = grid_class()(frame, on_edit=self.on_edit, editable=True, selection_mode="cell",
                                 column_widths=widths, renderers=renderers, base_column_size=128,
                                 layout=W.Layout(height="420px"))
        self.grid.add_class("mushroom-grid")
        self.box.children = [self.grid, W.HTML(self.HINT)]

    def set_cells(self, row: int, values: dict) -> None:
        if self.grid is not None:
            self.grid.set_cells(row, values)

    def shown_frame(self) -> pd.DataFrame | None:
        """What the page was last sent (None before the grid exists)."""
        return None if self.grid is None else self.grid.frame()


class DownloadView:
    """A button that prepares the scored grid as CSV and a data: link to download it."""

    def __init__(self, on_prepare: Callable[[], None]):
        W = _widgets()
        self.button = W.Button(description="Prepare CSV download", icon="download", layout=W.Layout(width="auto"))
        self.button.on_click(lambda _b: on_prepare())
        self.link = W.HTML("")
        self.box = W.HBox([self.button, self.link], layout=W.Layout(align_items="center"))
        self.box.add_class("mushroom-download")

    def show_link(self, data: bytes, source_name: str | None, rows: int) -> None:
        stem = Path(source_name or "mushrooms").stem
        stem = "".join(ch for ch in stem if ch.isalnum() or ch in "-_")[:60] or "mushrooms"
        b64 = base64.b64encode(data).decode("ascii")
        self.link.value = (f"<a download='{esc(stem)}_scored.csv' href='data:text/csv;charset=utf-8;base64,{b64}'>"
                           f"download {esc(stem)}_scored.csv ({rows} rows)</a>")

    def clear(self) -> None:
        self.link.value = ""


def legend_html() -> str:
    rows = "".join(f"<tr><td><b>{esc(f)}</b></td><td>{esc(', '.join(f'{c} = {n}' for c, n in CODES[f].items()))}"
                   "</td></tr>" for f in FEATURES)
    return f"<table class='mushroom-legend'>{rows}</table>"


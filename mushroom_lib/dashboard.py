"""The Voila dashboard: upload, editable prediction grid, feedback, live model refresh.

``dashboards/app.ipynb`` only builds and displays :class:`Dashboard`; every behaviour lives here so tests
drive it in Python. :func:`serve` starts Voila on 127.0.0.1 (``mushroom dashboard [--port]``).

Everything that reaches the kernel from the page (the uploaded file, grid edits, dropdown values) is
treated as untrusted input: it is type-checked, size-capped and validated through :mod:`schema` before
anything is scored, and every piece of it shown back in HTML is escaped.

Heavy front-end pieces come after the first paint: the page starts with the upload widget, the badge
and the forms; the (empty) ipydatagrid grid is created once the page has fetched those, and the plotly 3-D
view only when its section is opened, so their browser code never delays the first usable widget.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .ports import ensure_port_free, free_port
from .schema import CODES, FEATURES, LABEL_CODES, LABELS, TARGET, SchemaError, valid_codes
from .settings import Settings, get_settings

log = logging.getLogger("mushroom_lib.dashboard")

TRUE_LABEL = "true label"
PREDICTION = "prediction"
P_POISONOUS = "p_poisonous"
UNCERTAIN = "uncertain"
SENT = "sent"
UNCERTAIN_MARK = "uncertain — treat as poisonous"
#: grid columns before the 22 features: the ones a person reads and edits first
LEAD_COLUMNS = [TRUE_LABEL, PREDICTION, P_POISONOUS, UNCERTAIN, SENT]
COMPUTED = {PREDICTION, P_POISONOUS, UNCERTAIN, SENT, "unseen_codes", "model_version"}
#: columns of an upload that are recomputed here, never taken from the file
_DROPPED_ON_UPLOAD = COMPUTED | {"row", "target", "true-label", TRUE_LABEL}
MAX_CELL_CHARS = 200
MAX_EXTRA_COLUMNS = 20
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
#: front-end extensions installed in the environment that this page never uses (less code to load)
UNUSED_EXTENSIONS = ("jupyterlab_pygments",)  # (bqplot stays: ipydatagrid needs it)

_CSS = """
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


def human(feature: str) -> str:
    """'stalk-surface-above-ring' -> 'stalk surface above ring'."""
    return feature.replace("-", " ")


def neutralize(value: Any) -> Any:
    """Prefix a quote to text a spreadsheet would run as a formula (=, +, -, @, tab, CR)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes of a frame with every text cell and header neutralised against formula injection."""
    out = frame.copy()
    out.columns = [neutralize(str(c)) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralize)
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _label_word(value: Any, *, allow_empty: bool = True) -> str | None:
    """edible/poisonous from e/p/edible/poisonous (any case); '' for empty; None if not a label."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "" if allow_empty else None
    text = str(value).strip().lower()
    if not text:
        return "" if allow_empty else None
    if text in LABELS:
        return LABELS[text]
    if text in LABEL_CODES:
        return text
    return None


def _feature_code(feature: str, value: Any) -> str | None:
    """The valid code for a typed value: the code itself or its human name (any case); else None."""
    text = str(value).strip()
    codes = CODES[feature]
    if text in codes:
        return text
    low = text.lower()
    if low in codes:
        return low
    for code, name in codes.items():
        if name.lower() == low:
            return code
    return None


def _grid_class():
    """A DataGrid that validates cell-change messages from the page before anything touches the data.

    ipydatagrid's own handler writes ``row``/``column_index``/``value`` from the message straight into
    its DataFrame (an out-of-range row would grow the frame). Here the message is checked and handed to
    the dashboard, which decides whether to accept the edit; the grid's data changes only through
    :meth:`set_cells`.
    """
    from ipydatagrid import DataGrid

    class SafeDataGrid(DataGrid):
        def __init__(self, dataframe, *, on_edit: Callable | None = None, **kwargs):
            super().__init__(dataframe, **kwargs)
            self.on_msg(self._DataGrid__handle_custom_msg, remove=True)
            self.on_msg(self._on_page_msg)
            self._on_edit = on_edit

        def columns(self) -> list:
            return list(DataGrid._get_col_headers(self._data))

        def _on_page_msg(self, _widget, content, _buffers):
            if not isinstance(content, dict) or content.get("event_type") != "cell-changed":
                return
            row, col_index, value = content.get("row"), content.get("column_index"), content.get("value")
            n_rows = len(self._data.get("data", ()))
            cols = self.columns()
            if (type(row) is not int or type(col_index) is not int or not 0 <= row < n_rows
                    or not 0 <= col_index < len(cols)):
                if self._on_edit:
                    self._on_edit(None, None, None)  # malformed: reported, nothing changes
                return
            if value is not None and not isinstance(value, (str, int, float)) or isinstance(value, bool):
                value = None if value is None else str(value)
            if self._on_edit:
                self._on_edit(row, cols[col_index], value)

        def set_cells(self, row: int, values: dict) -> None:
            """Set cells of one row (by position) here and on the page, without firing edit handlers.

            The page gets the whole row in one ``row-changed`` message: one repaint, and (unlike
            ``cell-changed``) the page does not echo it back as an edit.
            """
            frame = self._data["data"]
            for column, value in values.items():
                frame.at[row, column] = value
            self.send({"event_type": "row-changed", "row": int(row),
                       "value": [_jsonable(frame.at[row, c]) for c in self.columns()]})

    return SafeDataGrid


class Dashboard:
    """The workbench page: upload, grid, feedback, manual form, 3-D view, download, model badge."""

    def __init__(self, home: str | Path | None = None, *, settings: Settings | None = None, service=None):
        import ipywidgets as W

        from .service import ModelService

        self.W = W
        self.settings = settings or (service.settings if service is not None else get_settings(home))
        self.service = service if service is not None else ModelService(settings=self.settings)
        self._lock = threading.RLock()
        self.rows: pd.DataFrame | None = None       # display frame, positional index (grid row position)
        self.row_numbers: list[int] = []            # what the grid shows in its row header
        self.source_name: str | None = None
        self.grid = None
        self.figure = None
        self.last_receipt = None
        self.messages: list[str] = []               # everything said in the status line, for tests/logs
        self._inflight: set[int] = set()
        self._finished: set[int] = set()
        self._shown_version: str | None = None
        self._ref: pd.DataFrame | None = None
        self._build()
        self._show_version(self.service.model_version, note=None)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        W = self.W
        self.style = W.HTML(_CSS)
        self.title = W.HTML("<span class='mushroom-title'>Mushroom workbench</span>")
        self.badge = W.HTML("")
        self.badge.add_class("mushroom-model-version")
        self.upload = W.FileUpload(accept=".csv,text/csv", multiple=False, description="Upload CSV",
                                   layout=W.Layout(width="170px"))
        self.upload.add_class("mushroom-upload")
        self.upload.observe(self._on_upload_value, names="value")
        self.status = W.HTML("<span class='mushroom-note'>Upload a CSV of mushrooms (with or without "
                             "<code>class</code>, header or UCI layout) to score them.</span>")
        self.until = W.HTML("")
        self.until.add_class("mushroom-until")
        self.pending = W.HTML("", layout=W.Layout(display="none"))
        self.pending.add_class("mushroom-pending")
        self.errors = W.HTML("", layout=W.Layout(display="none"))
        self.errors.add_class("mushroom-errors")

        self.grid_box = W.VBox([W.HTML("<span class='mushroom-note'>The prediction grid appears here "
                                       "after an upload.</span>")])
        self.grid_box.add_class("mushroom-grid-box")

        self.send_labelled_button = W.Button(description="Send labelled rows", icon="paper-plane",
                                             button_style="primary", layout=W.Layout(width="auto"),
                                             tooltip="Send every row whose true label you set (not sent yet)")
        self.send_labelled_button.add_class("mushroom-submit-feedback")
        self.send_labelled_button.on_click(lambda _b: self._interaction(self.send_labelled))
        self.row_input = W.BoundedIntText(value=1, min=1, max=1, description="row",
                                          layout=W.Layout(width="140px"))
        self.row_input.add_class("mushroom-row-number")
        self.send_row_button = W.Button(description="Send this row", layout=W.Layout(width="auto"))
        self.send_row_button.add_class("mushroom-submit-row")
        self.send_row_button.on_click(lambda _b: self._interaction(lambda: self.send_row(self.row_input.value)))
        self.feedback_box = W.HBox([self.send_labelled_button, self.row_input, self.send_row_button, self.until],
                                   layout=W.Layout(align_items="center", flex_flow="row wrap"))

        self.download_button = W.Button(description="Prepare CSV download", icon="download",
                                        layout=W.Layout(width="auto"))
        self.download_button.on_click(lambda _b: self._interaction(self.prepare_download))
        self.download_link = W.HTML("")
        self.download_box = W.HBox([self.download_button, self.download_link],
                                   layout=W.Layout(align_items="center"))
        self.download_box.add_class("mushroom-download")

        # the 22 dropdowns (about 70 widget models with their layouts and styles) are built when the
        # section opens: fewer models for the page to create before the first paint
        self._form: dict | None = None
        self.manual_result = W.HTML("")
        self.manual_form = W.VBox([W.HTML("<span class='mushroom-note'>22 dropdowns, one per feature, "
                                          "with the codes' names.</span>")])
        self.manual_form.add_class("mushroom-manual-form")

        self.plot_button = W.Button(description="Show 3-D view", icon="cube")
        self.plot_button.on_click(lambda _b: self._interaction(self.show_plot))
        self.plot_box = W.VBox([W.HTML("<span class='mushroom-note'>A 3-D PCA view of your rows over the "
                                       "reference data, coloured by prediction.</span>"),
                                self.plot_button])
        self.plot_box.add_class("mushroom-plot")

        legend_rows = "".join(
            f"<tr><td><b>{_esc(f)}</b></td><td>{_esc(', '.join(f'{c} = {n}' for c, n in CODES[f].items()))}</td></tr>"
            for f in FEATURES)
        self.legend = W.HTML(f"<table class='mushroom-legend'>{legend_rows}</table>")

        sections = W.Accordion(children=[self.manual_form, self.plot_box, self.legend])
        for i, name in enumerate(["Enter one mushroom by hand", "3-D PCA view", "What the codes mean"]):
            sections.set_title(i, name)
        sections.selected_index = None
        sections.observe(self._on_section, names="selected_index")
        self.sections = sections

        header = W.HBox([self.title, self.badge, self.pending], layout=W.Layout(align_items="center"))
        upload_row = W.HBox([self.upload, self.status], layout=W.Layout(align_items="center"))
        self.root = W.VBox([self.style, header, upload_row, self.errors, self.grid_box, self.feedback_box,
                            self.download_box, sections])
        self.root.add_class("mushroom-app")

    @property
    def form(self) -> dict:
        """feature -> Dropdown of the manual form (built on first use)."""
        if self._form is None:
            W = self.W
            self._form = {}
            for feature in FEATURES:
                self._form[feature] = W.Dropdown(
                    options=[(f"{name} ({code})", code) for code, name in CODES[feature].items()],
                    value=None, description=human(feature), style={"description_width": "170px"},
                    layout=W.Layout(width="330px"))
            self.predict_button = W.Button(description="Predict", button_style="primary", icon="search")
            self.predict_button.on_click(lambda _b: self._interaction(self.predict_manual))
            self.add_row_button = W.Button(description="Add to grid", icon="plus")
            self.add_row_button.on_click(lambda _b: self._interaction(self.add_manual_row))
            self.manual_form.children = [
                W.GridBox(list(self._form.values()),
                          layout=W.Layout(grid_template_columns="repeat(auto-fill, 340px)")),
                W.HBox([self.predict_button, self.add_row_button, self.manual_result],
                       layout=W.Layout(align_items="center"))]
        return self._form

    def _on_section(self, change) -> None:
        if change.get("new") == 0:  # the manual form opened: build its dropdowns now
            self._interaction(lambda: self.form)
        if change.get("new") == 1 and self.figure is None:  # the 3-D view opened: build it now
            self._interaction(self.show_plot)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.root)

    def show(self):
        """Display the dashboard (the notebook's only cell calls this).

        The grid and plot libraries are imported here, in the (pre-heated) kernel, so no interaction pays
        for it; their widgets, and the browser code behind them, come after the first paint.
        """
        self._ipython_display_()
        import ipydatagrid  # noqa: F401
        import plotly.graph_objects  # noqa: F401

        _on_page_connect(self._page_connected)
        return None

    def _page_connected(self) -> None:
        """The page has fetched the light widgets: now create the (empty) grid, so its code loads early."""
        with self._lock:
            if self.grid is None:
                if self.rows is None:
                    self.rows = self._assemble(pd.DataFrame(columns=FEATURES, dtype=object),
                                               pd.DataFrame(columns=[PREDICTION, P_POISONOUS, UNCERTAIN]),
                                               None, None)
                    self.row_numbers = []
                self._push_grid()

    # --------------------------------------------------------------- messages
    def _say(self, text_html: str) -> None:
        self.status.value = text_html
        self.messages.append(html.unescape(_strip_tags(text_html)))

    def _error(self, headline: str, problems: list[str] | None = None) -> None:
        items = "".join(f"<li>{_esc(p)}</li>" for p in (problems or []))
        self.errors.value = f"<b>{_esc(headline)}</b>" + (f"<ul>{items}</ul>" if items else "")
        self.errors.layout.display = None
        self.messages.append(headline)

    def clear_errors(self) -> None:
        self.errors.value = ""
        self.errors.layout.display = "none"

    @property
    def error_text(self) -> str:
        """The error panel as plain text ('' when hidden)."""
        if self.errors.layout.display == "none":
            return ""
        return html.unescape(_strip_tags(self.errors.value))

    def _interaction(self, action: Callable[[], Any]) -> Any:
        """Run a user action after a cheap check for a model promoted elsewhere; report any failure."""
        try:
            self.check_model()
            return action()
        except SchemaError as exc:
            problems = getattr(exc, "problems", [])
            self._error(str(exc), problems[1:] if len(problems) > 1 else None)
        except Exception as exc:  # a dashboard must not die on one bad event
            log.exception("dashboard action failed")
            self._error(f"something went wrong: {exc.__class__.__name__}: {exc}")
        return None

    # ------------------------------------------------------------------ model
    def check_model(self) -> bool:
        """Swap in a champion promoted by another kernel or the CLI; refresh badge and grid. True if swapped."""
        version = self.service.model_version  # one stat of champion.json
        if version == self._shown_version:
            return False
        with self._lock:
            self._show_version(version, note="promoted elsewhere")
            self._rescore_all()
        return True

    def _show_version(self, version: str | None, note: str | None, delta: dict | None = None,
                      refused: str | None = None) -> None:
        self._shown_version = version
        parts = [f"<span class='mv'>model {_esc(version or 'none')}</span>"]
        if delta:
            bits = []
            for key in ("accuracy", "f1", "false_edible"):
                if key in delta:
                    v = delta[key]
                    bits.append(f"{key} {int(round(v)):+d}" if key == "false_edible"
                                else f"{key} {v * 100:+.2f} pts")
            parts.append(f"<span class='delta'>{_esc(', '.join(bits))}</span>")
        elif note:
            parts.append(f"<span class='delta'>{_esc(note)}</span>")
        if refused:
            parts.append(f"<span class='refused'>{_esc(refused)}</span>")
        self.badge.value = " ".join(parts)
        self._update_until()

    @property
    def badge_text(self) -> str:
        return html.unescape(_strip_tags(self.badge.value))

    def _update_until(self, remaining: int | None = None) -> None:
        try:
            remaining = self.service.rows_until_retrain() if remaining is None else remaining
        except Exception:  # the count is informative only
            return
        self.until.value = (f"<span class='mushroom-note'>{remaining} of {self.settings.k} "
                            "until the next retrain</span>")

    # ----------------------------------------------------------------- upload
    def _on_upload_value(self, change) -> None:
        value = change.get("new")
        if not value:
            return
        self._interaction(lambda: self._take_upload(value))

    def _take_upload(self, value) -> None:
        try:
            if not isinstance(value, (tuple, list)) or len(value) != 1:
                raise SchemaError("upload one CSV file at a time")
            item = value[0]
            content = item.get("content") if hasattr(item, "get") else None
            if not isinstance(content, (bytes, bytearray, memoryview)):
                raise SchemaError("the upload arrived without file content; try again")
            name = item.get("name")
            name = str(name)[:120] if isinstance(name, str) and name.strip() else "upload.csv"
            self.upload_bytes(bytes(content), name=name)
        finally:
            self.upload.value = ()  # frees the bytes and lets the same file be chosen again

    def upload_bytes(self, data: bytes, name: str = "upload.csv") -> bool:
        """Validate and score an uploaded CSV; show problems in the error panel. True if the grid changed."""
        from .schema import read_csv_bytes, validate_frame

        start = time.perf_counter()
        cap = self.settings.upload_cap_bytes
        if len(data) > cap:
            self._error(f"{name} is {len(data) / 1e6:.1f} MB, over the {cap / 1e6:.0f} MB upload cap; "
                        "split the file or use `mushroom predict` for large files. Nothing was scored.")
            return False
        try:
            frame = read_csv_bytes(data, source=name, size_cap=cap)
            labels = self._true_labels_from(frame)
            kept = frame.drop(columns=[c for c in frame.columns if _norm(c) in _DROPPED_ON_UPLOAD])
            checked = validate_frame(kept)
        except SchemaError as exc:
            self._error(f"{name}: nothing was scored.", [str(exc), *exc.problems[1:]])
            return False
        extras = self._extras_from(kept, checked.extra)
        with self._lock:
            scorer = self.service.scorer
            scored = scorer.score(checked.features)
            rows = self._assemble(checked.features, scored, labels, extras)
            self.rows = rows
            self.row_numbers = list(range(1, len(rows) + 1))
            self.source_name = name
            self._push_grid()
        self.clear_errors()
        n_p = int((rows[PREDICTION] == "poisonous").sum())
        n_u = int((rows[UNCERTAIN] != "").sum())
        warn = f" ({'; '.join(checked.warnings)})" if checked.warnings else ""
        self._say(f"<b>{_esc(name)}</b>: {len(rows)} rows scored with {_esc(scorer.version)} in "
                  f"{time.perf_counter() - start:.2f}s — {n_p} poisonous, {len(rows) - n_p} edible, "
                  f"{n_u} uncertain (treat as poisonous). Set the <i>true label</i> column to send feedback."
                  f"{_esc(warn)}")
        self._refresh_plot()
        return True

    def _true_labels_from(self, frame: pd.DataFrame) -> pd.Series | None:
        cols = [c for c in frame.columns if _norm(c) in (TRUE_LABEL, "true-label")]
        if not cols:
            return None
        col = cols[0]
        words = frame[col].map(_label_word)
        bad = words.isna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"row {pos + 1}, column '{col}': {frame[col].iloc[pos]!r} is not a label; "
                              "use edible/e, poisonous/p or leave it empty",
                              row=pos + 1, column=str(col), value=frame[col].iloc[pos])
        return words.reset_index(drop=True)

    @staticmethod
    def _extras_from(frame: pd.DataFrame, extra_names: list[str]) -> pd.DataFrame:
        """Columns the file carried besides the features (class shown as words), text-capped."""
        by_norm = {_norm(c): c for c in frame.columns}
        keep = [by_norm[n] for n in ([TARGET] if TARGET in by_norm else []) + list(extra_names)
                if n in by_norm][:MAX_EXTRA_COLUMNS]
        out = pd.DataFrame(index=range(len(frame)))
        for col in keep:
            values = frame[col].astype(object).where(frame[col].notna(), "").map(lambda v: str(v)[:MAX_CELL_CHARS])
            if _norm(col) == TARGET:
                values = values.map(lambda v: _label_word(v) or v)
            name = str(col).strip()[:60] or "extra"
            if name in out.columns or name in FEATURES or name in LEAD_COLUMNS or name == "row":
                name = f"{name} (file)"
            out[name] = values.to_numpy()
        return out

    def _assemble(self, features: pd.DataFrame, scored: pd.DataFrame, labels: pd.Series | None,
                  extras: pd.DataFrame | None) -> pd.DataFrame:
        n = len(features)
        out = pd.DataFrame(index=pd.RangeIndex(n))
        out[TRUE_LABEL] = labels.to_numpy() if labels is not None else np.full(n, "", dtype=object)
        out[PREDICTION] = scored[PREDICTION].to_numpy()
        out[P_POISONOUS] = scored[P_POISONOUS].to_numpy().astype(float)
        out[UNCERTAIN] = np.where(scored[UNCERTAIN].to_numpy(), UNCERTAIN_MARK, "").astype(object)
        out[SENT] = np.full(n, "", dtype=object)
        for f in FEATURES:
            out[f] = features[f].to_numpy()
        if extras is not None:
            for c in extras.columns:
                out[c] = extras[c].to_numpy()
        return out

    # ------------------------------------------------------------------- grid
    def grid_frame(self) -> pd.DataFrame:
        """What the grid shows: the rows with their row numbers as the (named) index."""
        frame = self.rows.copy()
        frame.index = pd.Index(self.row_numbers, name="row")
        return frame

    def _push_grid(self) -> None:
        """Send the whole frame to the grid (creating the grid the first time)."""
        frame = self.grid_frame()
        self.download_link.value = ""
        if self.grid is None:
            from ipydatagrid import TextRenderer, VegaExpr

            # Only columns wider or narrower than the base size get an explicit width: on every data
            # update the grid re-applies widths, and each width that changes repaints the whole canvas
            # (tens of ms each in a software-rendered browser).
            widths = {UNCERTAIN: 200, SENT: 60}
            widths.update({f: 176 for f in FEATURES if len(f) > 18})
            renderers = {
                TRUE_LABEL: TextRenderer(background_color="#eef6ff"),
                PREDICTION: TextRenderer(background_color=VegaExpr(
                    "cell.value === 'poisonous' ? '#fde2e2' : '#dcfce7'")),
                P_POISONOUS: TextRenderer(format=".3f"),
                UNCERTAIN: TextRenderer(text_color="#9a3412", background_color=VegaExpr(
                    "cell.value ? '#ffedd5' : 'white'")),
            }
            self.grid = _grid_class()(frame, on_edit=self._on_grid_edit, editable=True,
                                      selection_mode="cell", column_widths=widths, renderers=renderers,
                                      base_column_size=128, layout=self.W.Layout(height="420px"))
            self.grid.add_class("mushroom-grid")
            hint = self.W.HTML("<span class='mushroom-note'>Double-click a cell to edit it: a feature code "
                               "(or its name) re-scores the row; <i>true label</i> takes edible or poisonous. "
                               "Codes are explained under <i>What the codes mean</i>.</span>")
            self.grid_box.children = [self.grid, hint]
        else:
            self.grid.data = frame
        self.row_input.max = max(1, len(self.rows))

    def _on_grid_edit(self, row: int | None, column: str | None, value: Any) -> None:
        self._interaction(lambda: self.apply_edit(row, column, value))

    def edit_cell(self, row: int, column: str, value: Any) -> bool:
        """Drive an edit as the page would: ``row`` is the grid row *position* (0-based), not a label."""
        cols = self.grid.columns()
        content = {"event_type": "cell-changed", "row": row,
                   "column_index": cols.index(column) if column in cols else len(cols), "value": value}
        before = len(self.messages)
        self.grid._on_page_msg(self.grid, content, [])
        return not any(m.startswith("refused") for m in self.messages[before:])

    def apply_edit(self, row: int | None, column: str | None, value: Any) -> None:
        """Accept a valid edit (feature code re-scores the row; true label) or refuse and restore."""
        if row is None:
            self._error("refused a malformed grid edit (unknown row or column); nothing changed")
            return
        with self._lock:
            old = self.rows.at[row, column] if column in self.rows.columns else None
            if _same(old, value):  # nothing changed (e.g. an editor closed without a change): nothing to do
                return
            number = self.row_numbers[row]

            def refuse(reason: str) -> None:
                self.grid.set_cells(row, {column: _jsonable(old)})
                self._error(f"refused: row {number}, column '{column}': {reason}")

            text = "" if value is None else str(value)[:MAX_CELL_CHARS]
            if column in FEATURES:
                code = _feature_code(column, text)
                if code is None:
                    refuse(f"{text!r} is not a valid code; valid codes: {valid_codes(column)}")
                    return
                self.rows.at[row, column] = code
                scorer = self.service.scorer
                scored = scorer.score(self.rows.loc[[row], FEATURES].reset_index(drop=True)).iloc[0]
                changes = {column: code, PREDICTION: scored[PREDICTION],
                           P_POISONOUS: float(scored[P_POISONOUS]),
                           UNCERTAIN: UNCERTAIN_MARK if bool(scored[UNCERTAIN]) else "", SENT: ""}
                for k, v in changes.items():
                    self.rows.at[row, k] = v
                self.grid.set_cells(row, changes)
                self.clear_errors()
                self._say(f"row {number}: {_esc(column)} = {_esc(code)} ({_esc(CODES[column][code])}) → "
                          f"<b>{_esc(scored[PREDICTION])}</b> (p_poisonous {float(scored[P_POISONOUS]):.3f})")
                self._refresh_plot()  # the row moved in PCA space
            elif column == TRUE_LABEL:
                word = _label_word(text)
                if word is None:
                    refuse(f"{text!r} is not a label; type edible or poisonous (e/p), or clear it")
                    return
                self.rows.at[row, TRUE_LABEL] = word
                changes = {TRUE_LABEL: word}
                if self.rows.at[row, SENT]:
                    self.rows.at[row, SENT] = ""
                    changes[SENT] = ""
                self.grid.set_cells(row, changes)
                self.clear_errors()
                self._say(f"row {number}: true label {_esc(word or '(cleared)')}; "
                          f"{self.labelled_count()} labelled row(s) ready to send")
            else:
                refuse("this column is computed or comes from the file; edit a feature or the true label")
                return
            self.download_link.value = ""

    # --------------------------------------------------------------- feedback
    def labelled_count(self) -> int:
        if self.rows is None:
            return 0
        return int(((self.rows[TRUE_LABEL] != "") & (self.rows[SENT] == "")).sum())

    def set_true_labels(self, labels: dict[int, str]) -> None:
        """Set true labels by grid row position (as a person typing them would)."""
        for row, label in labels.items():
            self.edit_cell(row, TRUE_LABEL, label)

    def send_labelled(self):
        """Send every labelled, not yet sent row as feedback (bulk)."""
        if self.rows is None:
            self._error("upload a file (or add a row by hand) and set some true labels first")
            return None
        positions = [i for i in range(len(self.rows))
                     if self.rows.at[i, TRUE_LABEL] and not self.rows.at[i, SENT]]
        if not positions:
            self._error("no labelled rows to send: double-click a cell in the 'true label' column and type "
                        "edible or poisonous")
            return None
        return self._send(positions)

    def send_row(self, row_number: int):
        """Send one row (by the row number the grid shows)."""
        if self.rows is None:
            self._error("upload a file first")
            return None
        try:
            pos = self.row_numbers.index(int(row_number))
        except (ValueError, TypeError):
            self._error(f"there is no row {row_number!r} in the grid")
            return None
        if not self.rows.at[pos, TRUE_LABEL]:
            self._error(f"row {row_number} has no true label yet; set it in the 'true label' column")
            return None
        return self._send([pos])

    def _send(self, positions: list[int]):
        with self._lock:
            frame = self.rows.loc[positions, FEATURES].reset_index(drop=True)
            frame[TARGET] = self.rows.loc[positions, TRUE_LABEL].to_numpy()
            try:
                expect_retrain = len(positions) >= self.service.rows_until_retrain()
            except Exception:  # only decides when the progress indicator shows
                expect_retrain = False
            # Tell the page first: a retrain started by this call keeps the kernel busy, and widget
            # messages sent while it trains reach the page slowly.
            self.clear_errors()
            self._mark_sent(positions, "yes")
            if expect_retrain:
                self._show_pending(True)
            self._say(f"sending {len(positions)} row(s) as feedback…")
            try:
                receipt = self.service.submit_feedback(frame, wait=False, source="dashboard",
                                                       on_done=self._on_feedback_done)
            except Exception:
                self._mark_sent(positions, "")
                if not self._inflight:
                    self._show_pending(False)
                raise
            self.last_receipt = receipt
            if receipt.retrain_pending and id(receipt) not in self._finished:
                self._inflight.add(id(receipt))
                if not expect_retrain:
                    self._show_pending(True)
            elif not self._inflight:
                self._show_pending(False)
        extra = (f"; {receipt.contradictions} contradict the dataset's label for identical features"
                 if receipt.contradictions else "")
        state = "retraining now — the grid stays usable" if receipt.retrain_pending else \
            f"{receipt.rows_until_retrain} of {self.settings.k} until the next retrain"
        self._say(f"sent {receipt.rows_written} row(s) as feedback{_esc(extra)}; {state}")
        if not receipt.retrain_pending:
            self._update_until(receipt.rows_until_retrain)
        return receipt

    def _show_pending(self, on: bool) -> None:
        if on:
            self.pending.value = "<span class='mushroom-spinner'></span>retraining on the feedback…"
            self.pending.layout.display = None
        else:
            self.pending.layout.display = "none"
            self.pending.value = ""

    def _mark_sent(self, positions: list[int], mark: str) -> None:
        for pos in positions:
            self.rows.at[pos, SENT] = mark
        if len(positions) == 1:
            self.grid.set_cells(positions[0], {SENT: mark})
        else:  # one bulk update repaints once; a message per row would repaint per row
            self._push_grid()

    def _on_feedback_done(self, receipt) -> None:
        """Runs when submit_feedback is done (in the retrain thread after a retrain)."""
        try:
            with self._lock:
                self._finished.add(id(receipt))
                was_pending = id(receipt) in self._inflight
                self._inflight.discard(id(receipt))
                if not self._inflight:
                    self._show_pending(False)
                if not receipt.retrained:
                    if receipt.reason:  # the background retrain failed
                        self._error(receipt.reason)
                    if was_pending or receipt.reason:
                        self._update_until()
                    return
                if receipt.promoted:
                    self._show_version(receipt.model_version, note=None, delta=receipt.metrics_delta or None)
                    self._rescore_all()
                    self._say(f"retrained in {receipt.retrain_seconds or 0:.1f}s: {_esc(receipt.model_version)} "
                              "now serves; the grid shows its predictions")
                else:
                    refused = f"candidate {receipt.candidate_version} refused: {receipt.reason}"
                    self._show_version(self.service.model_version, note=None, refused=refused)
                    self._say(_esc(refused))
                self._update_until(receipt.rows_until_retrain)
        except Exception:
            log.exception("updating the dashboard after feedback failed")

    def wait_for_retrain(self, timeout: float = 120.0) -> None:
        """Block until the last submission's background retrain (if any) has finished (tests, scripts)."""
        receipt = self.last_receipt
        if receipt is not None and receipt.future is not None:
            receipt.future.result(timeout=timeout)

    def _rescore_all(self) -> None:
        """Re-score every grid row with the serving model and resend the grid and the 3-D view."""
        if self.rows is None or not len(self.rows):
            self._refresh_plot()
            return
        scored = self.service.scorer.score(self.rows[FEATURES].reset_index(drop=True))
        self.rows[PREDICTION] = scored[PREDICTION].to_numpy()
        self.rows[P_POISONOUS] = scored[P_POISONOUS].to_numpy().astype(float)
        self.rows[UNCERTAIN] = np.where(scored[UNCERTAIN].to_numpy(), UNCERTAIN_MARK, "").astype(object)
        self._push_grid()
        self._ref = None
        self._refresh_plot()

    # ------------------------------------------------------------ manual form
    def manual_values(self) -> dict:
        return {f: dd.value for f, dd in self.form.items()}

    def _manual_frame(self) -> pd.DataFrame | None:
        values = self.manual_values()
        missing = [human(f) for f, v in values.items() if v is None]
        if missing:
            self.manual_result.value = f"<span class='refused'>choose: {_esc(', '.join(missing))}</span>"
            return None
        from .schema import validate_frame

        return validate_frame(pd.DataFrame([values])).features

    def predict_manual(self):
        """Predict the mushroom described by the 22 dropdowns; returns the scored row (or None)."""
        feats = self._manual_frame()
        if feats is None:
            return None
        scored = self.service.scorer.score(feats).iloc[0]
        word = scored[PREDICTION]
        unc = " — uncertain, treat as poisonous" if bool(scored[UNCERTAIN]) else ""
        self.manual_result.value = (f"<span class='mushroom-result-{_esc(word)}'>{_esc(word)}</span> "
                                    f"(p_poisonous {float(scored[P_POISONOUS]):.3f}{_esc(unc)}, "
                                    f"model {_esc(scored['model_version'])})")
        return scored

    def add_manual_row(self) -> None:
        """Append the hand-entered mushroom to the grid, so it can be labelled and sent."""
        feats = self._manual_frame()
        if feats is None:
            return
        with self._lock:
            scored = self.service.scorer.score(feats)
            row = self._assemble(feats, scored, None, None)
            if self.rows is None:
                self.rows, self.row_numbers = row, [1]
            else:
                self.rows = pd.concat([self.rows, row], ignore_index=True)
                for c in self.rows.columns:
                    if self.rows[c].dtype == object:
                        self.rows[c] = self.rows[c].where(self.rows[c].notna(), "")
                self.row_numbers.append(max(self.row_numbers) + 1)
            self._push_grid()
        self.predict_manual()
        self._say(f"added row {self.row_numbers[-1]} to the grid")
        self._refresh_plot(create=True)

    # ------------------------------------------------------------------- plot
    def _reference(self) -> pd.DataFrame | None:
        if self._ref is None:
            path = self.settings.ref_path
            if not path.exists():
                return None
            ref = pd.read_csv(path, dtype={f: str for f in FEATURES}, keep_default_na=False)
            coords = self.service.scorer.pca(ref[FEATURES])  # the serving model's geometry
            ref = ref[["prediction"]].copy()
            for i in range(min(3, coords.shape[1])):
                ref[f"pca_{i + 1}"] = coords[:, i]
            self._ref = ref
        return self._ref

    def show_plot(self) -> None:
        self._refresh_plot(create=True)

    def _refresh_plot(self, create: bool = False) -> None:
        if self.figure is None and not create:
            return
        try:
            import plotly.graph_objects as go
        except ImportError:  # pragma: no cover - plotly is a dependency
            return
        ref = self._reference()
        colors = {"edible": "#16a34a", "poisonous": "#dc2626"}
        traces = []
        if ref is not None and {"pca_1", "pca_2", "pca_3"} <= set(ref.columns):
            for word in ("edible", "poisonous"):
                part = ref[ref["prediction"] == word]
                traces.append(dict(name=f"reference: {word}", x=part["pca_1"].to_numpy(),
                                   y=part["pca_2"].to_numpy(), z=part["pca_3"].to_numpy(),
                                   marker=dict(size=2, color=colors[word], opacity=0.15)))
        if self.rows is not None and len(self.rows):
            coords = self.service.scorer.pca(self.rows[FEATURES])
            if coords.shape[1] >= 3:
                for word in ("edible", "poisonous"):
                    mask = (self.rows[PREDICTION] == word).to_numpy()
                    nums = np.asarray(self.row_numbers)[mask]
                    traces.append(dict(name=f"your rows: {word}", x=coords[mask, 0], y=coords[mask, 1],
                                       z=coords[mask, 2], text=[f"row {n}" for n in nums],
                                       marker=dict(size=4, color=colors[word], symbol="diamond",
                                                   line=dict(width=1, color="#111"))))
        if self.figure is None:
            self.figure = go.FigureWidget(
                data=[go.Scatter3d(mode="markers", **t) for t in traces],
                layout=go.Layout(height=480, margin=dict(l=0, r=0, t=30, b=0),
                                 title=dict(text="PCA of the pipeline (3 components)", x=0.02),
                                 legend=dict(itemsizing="constant"),
                                 scene=dict(xaxis_title="pca_1", yaxis_title="pca_2", zaxis_title="pca_3")))
            self.figure.add_class("mushroom-scatter")
            self.plot_box.children = [self.figure]
            return
        with self.figure.batch_update():
            names = [t["name"] for t in traces]
            existing = {tr.name: tr for tr in self.figure.data}
            if set(names) != set(existing):
                self.figure.data = []
                for t in traces:
                    self.figure.add_trace(go.Scatter3d(mode="markers", **t))
            else:
                for t in traces:
                    tr = existing[t["name"]]
                    tr.x, tr.y, tr.z = t["x"], t["y"], t["z"]
                    if "text" in t:
                        tr.text = t["text"]

    # --------------------------------------------------------------- download
    def download_frame(self) -> pd.DataFrame:
        """The scored grid as a plain frame: row, features, prediction, p_poisonous, ..."""
        frame = self.grid_frame().reset_index()
        frame[P_POISONOUS] = frame[P_POISONOUS].map(lambda v: f"{float(v):.6f}")
        frame["model_version"] = self._shown_version or ""
        lead = ["row", *FEATURES, PREDICTION, P_POISONOUS, UNCERTAIN, TRUE_LABEL, SENT, "model_version"]
        rest = [c for c in frame.columns if c not in lead]
        return frame[lead + rest]

    def download_csv(self) -> bytes:
        """The scored grid as CSV bytes, with formula-like cells neutralised."""
        if self.rows is None or not len(self.rows):
            raise SchemaError("nothing to download yet: upload a file first")
        return safe_csv(self.download_frame())

    def prepare_download(self) -> bytes | None:
        """Build the CSV and show a download link for it."""
        if self.rows is None or not len(self.rows):
            self._error("nothing to download yet: upload a file first")
            return None
        data = self.download_csv()
        stem = Path(self.source_name or "mushrooms").stem
        stem = "".join(ch for ch in stem if ch.isalnum() or ch in "-_")[:60] or "mushrooms"
        b64 = base64.b64encode(data).decode("ascii")
        self.download_link.value = (f"<a download='{_esc(stem)}_scored.csv' "
                                    f"href='data:text/csv;charset=utf-8;base64,{b64}'>"
                                    f"download {_esc(stem)}_scored.csv ({len(self.rows)} rows)</a>")
        return data


# ------------------------------------------------------------------- helpers
def _on_page_connect(callback: Callable[[], None]) -> bool:
    """Call ``callback`` (on the kernel's main thread) each time a page has fetched the widget state.

    Wraps the ``jupyter.widget.control`` comm target ipywidgets registers: its ``request_states`` reply
    is what the page renders first, so widgets created afterwards (and their browser code) come after the
    first paint. Returns False outside a kernel.
    """
    try:
        from ipywidgets import Widget
        from ipywidgets import comm as widget_comm

        manager = widget_comm.get_comm_manager()
    except Exception:  # no kernel, or an ipywidgets without the control comm
        return False
    if manager is None or not hasattr(Widget, "handle_control_comm_opened"):
        return False

    def opened(comm, msg):
        Widget.handle_control_comm_opened(comm, msg)

        def on_msg(message):
            Widget._handle_control_comm_msg(message)
            try:
                callback()
            except Exception:
                log.exception("post-connect step failed")

        comm.on_msg(on_msg)

    manager.register_target("jupyter.widget.control", opened)
    return True


def _norm(name: Any) -> str:
    return str(name).strip().lstrip("\ufeff").strip().lower().replace("_", "-")


def _strip_tags(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", text)


def _same(current: Any, incoming: Any) -> bool:
    """Whether a value from the page equals the cell's current value (numbers compared as numbers)."""
    if current is None or incoming is None:
        return current is None and incoming is None
    if isinstance(current, (float, np.floating)) or isinstance(incoming, float):
        try:
            return float(current) == float(incoming)
        except (TypeError, ValueError):
            return False
    return str(current) == str(incoming)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


# ----------------------------------------------------------------- serving
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "dashboards" / "app.ipynb"
TEMPLATE_ROOT = ROOT / "dashboards" / "share"
TEMPLATE_NAME = "mushroom"


def notebook_path() -> Path:
    """dashboards/app.ipynb from the checkout."""
    if not NOTEBOOK.exists():
        raise FileNotFoundError(f"{NOTEBOOK} is missing; the dashboard notebook ships with the repository")
    return NOTEBOOK


def _v1_only_handler():
    """The kernel websocket handler, refusing clients that do not speak the v1 kernel subprotocol.

    A raw client that omits ``v1.kernel.websocket.jupyter.org`` falls back to the legacy JSON protocol,
    and asking for widget state with binary buffers through it can hang the whole server. The page's
    own client always offers v1, so anything else is refused before the upgrade (HTTP 400).
    """
    from tornado import web
    from voila.tornado.kernel_websocket_handler import VoilaKernelWebsocketHandler

    class V1OnlyKernelWebsocketHandler(VoilaKernelWebsocketHandler):
        async def get(self, *args, **kwargs):
            offered = [p.strip() for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            if V1_SUBPROTOCOL not in offered:
                raise web.HTTPError(400, f"only the {V1_SUBPROTOCOL} websocket subprotocol is accepted")
            return await super().get(*args, **kwargs)

        def select_subprotocol(self, subprotocols):
            return V1_SUBPROTOCOL if V1_SUBPROTOCOL in subprotocols else None

    return VoilaKernelWebsocketHandler, V1OnlyKernelWebsocketHandler


def _voila_class():
    from voila.app import Voila

    legacy, guarded = _v1_only_handler()

    class MushroomVoila(Voila):
        """Voila with the kernel websocket restricted to the v1 subprotocol."""

        def init_handlers(self):
            return [(h[0], guarded, *h[2:]) if h[1] is legacy else h for h in super().init_handlers()]

    return MushroomVoila


def voila_config(port: int, *, cull_idle_seconds: int = 600, cull_interval: int = 60, pool_size: int = 1,
                 upload_cap_bytes: int = 20 * 1024 * 1024):
    """The traitlets configuration ``serve`` runs Voila with."""
    from traitlets.config import Config

    c = Config()
    c.Voila.ip = "127.0.0.1"
    c.Voila.port = int(port)
    c.Voila.port_retries = 0
    c.Voila.open_browser = False
    # room for an over-cap upload to arrive and be refused with a message instead of a dropped socket
    c.Voila.tornado_settings = {"websocket_max_message_size": 4 * int(upload_cap_bytes) + (1 << 20)}
    c.VoilaConfiguration.template = TEMPLATE_NAME
    c.VoilaConfiguration.theme = "light"
    c.VoilaConfiguration.show_tracebacks = False
    c.VoilaConfiguration.preheat_kernel = pool_size > 0
    c.VoilaConfiguration.default_pool_size = int(pool_size)
    c.VoilaConfiguration.file_allowlist = []  # nothing next to the notebook is served
    c.VoilaConfiguration.extension_denylist = list(UNUSED_EXTENSIONS)
    # closed tabs leave kernels behind (the page's shutdown call fails its XSRF check): cull them
    c.MappingKernelManager.cull_idle_timeout = int(cull_idle_seconds)
    c.MappingKernelManager.cull_interval = int(cull_interval)
    c.MappingKernelManager.cull_connected = False
    c.MappingKernelManager.cull_busy = False
    return c


def serve(settings: Settings | None = None, port: int = 8866, *, cull_idle_seconds: int | None = None,
          cull_interval: int | None = None, pool_size: int = 1) -> int:
    """Serve dashboards/app.ipynb with Voila on 127.0.0.1:port until interrupted. Returns an exit code.

    Kernels are pre-heated (a pool of ``pool_size``, the notebook already run in it), idle kernels with no
    page connected are culled after ``cull_idle_seconds`` (default 600, or $MUSHROOM_DASHBOARD_CULL_SECONDS),
    the kernel websocket accepts only the v1 subprotocol, and the page loads nothing from outside.
    """
    from .registry import Registry
    from .service import NoChampionError

    settings = settings or get_settings()
    if Registry(settings).champion() is None:
        raise NoChampionError(f"no trained model in {settings.artifacts_dir}; run `mushroom train` first")
    nb = notebook_path()
    ensure_port_free(port)
    env_cull = os.environ.get("MUSHROOM_DASHBOARD_CULL_SECONDS")
    cull = cull_idle_seconds if cull_idle_seconds is not None else int(env_cull) if env_cull else 600
    interval = cull_interval if cull_interval is not None else max(1, min(60, cull // 4))
    # kernels inherit this environment: the home decides which models and data the page uses
    os.environ["MUSHROOM_HOME"] = str(settings.home)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    jp = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(TEMPLATE_ROOT) + (os.pathsep + jp if jp else "")
    cfg = voila_config(port, cull_idle_seconds=cull, cull_interval=interval, pool_size=pool_size,
                       upload_cap_bytes=settings.upload_cap_bytes)
    print(f"mushroom dashboard: http://127.0.0.1:{port}/ (home {settings.home}; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    app = _voila_class()(config=cfg)
    app.initialize([str(nb)])
    app.start()
    return 0


# --------------------------------------------------- browser tests and benchmarks
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    """Debian's chromium (Playwright's own browser download is not used)."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


class ServerProcess:
    """A dashboard (or plain Voila) server in its own process group on 127.0.0.1, for tests and benchmarks."""

    def __init__(self, cmd: list[str], *, port: int, env: dict | None = None, log_path: str | Path | None = None):
        self.cmd, self.port = cmd, port
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.proc = None
        self._log = None

    @classmethod
    def dashboard(cls, home: str | Path, port: int | None = None, *, log_path=None, cull_seconds: int | None = None):
        """``mushroom dashboard`` for ``home`` on a free port."""
        port = port or free_port()
        env = {"MUSHROOM_HOME": str(home), "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
        if cull_seconds:
            env["MUSHROOM_DASHBOARD_CULL_SECONDS"] = str(cull_seconds)
        return cls([sys.executable, "-m", "mushroom_lib.cli", "--home", str(home), "dashboard", "--port", str(port)],
                   port=port, env=env, log_path=log_path)

    @classmethod
    def plain_voila(cls, home: str | Path, port: int | None = None, *, log_path=None):
        """Voila with its defaults serving the same notebook (the benchmark's baseline)."""
        port = port or free_port()
        env = {"MUSHROOM_HOME": str(home), "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
        return cls([sys.executable, "-m", "voila", str(notebook_path()), "--no-browser", f"--port={port}",
                    "--Voila.ip=127.0.0.1", "--Voila.port_retries=0",
                    "--MappingKernelManager.cull_idle_timeout=30", "--MappingKernelManager.cull_interval=5"],
                   port=port, env=env, log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        import subprocess

        out = subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")
            out = self._log
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not listening on {self.port} after {timeout}s: {self.log_tail()}")

    def log_text(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 2000) -> str:
        return self.log_text()[-n:]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(text) >= count:
                return True
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server (Voila shuts its kernels down), SIGKILL if it lingers."""
        import signal

        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        # kernels run in their own sessions; Voila shuts them down on SIGTERM, and after a SIGKILL they
        # exit by themselves when their parent is gone (ipykernel watches JPY_PARENT_PID)
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

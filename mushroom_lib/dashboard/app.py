"""The workbench page: wires the state (:mod:`.state`), the views and the model (:mod:`.source`) together.

``dashboards/app.ipynb`` builds and shows :class:`Dashboard`. Everything the page sends (the uploaded
file, grid edits, dropdown values) is untrusted: type-checked, size-capped and validated through
:mod:`mushroom_lib.data.schema` before anything is scored; everything shown back in HTML is escaped.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..core.settings import Settings, get_settings
from ..data.schema import CODES, SchemaError
from . import views
from .feedback import FeedbackFlow
from .form import ManualForm, ManualFormFlow
from .plot import PlotView, plot_traces, reference_cloud
from .source import ModelSource
from .state import GridState, Upload, parse_upload
from .values import (
    P_POISONOUS,
    PAGE_UPLOAD_MAX,
    PREDICTION,
    UNCERTAIN,
    esc,
    jsonable,
    safe_csv,
)

log = logging.getLogger("mushroom_lib.dashboard")
SECTIONS = ["Enter one mushroom by hand", "3-D PCA view", "What the codes mean"]


class Dashboard(FeedbackFlow, ManualFormFlow):
    """The page: upload or sample, editable grid, feedback, manual form, 3-D view, download, model badge."""

    def __init__(self, home: str | Path | None = None, *, settings: Settings | None = None, service=None,
                 deferred: bool = False):
        import ipywidgets as W

        self.settings = settings or (service.settings if service is not None else get_settings(home))
        self.model = ModelSource(self.settings, service)
        self.state = GridState()
        self._lock = threading.RLock()
        # partial identification: the page's ModelService once it exists, else the dataset alone (no model)
        self.identify: Callable[[dict], dict] | None = self.model.identify
        self.header = views.Header(min(self.settings.upload_cap_bytes, PAGE_UPLOAD_MAX))
        self.msg = views.Messages()
        self.uploader = views.UploadView(lambda v: self._interaction(lambda: self._take_upload(v)),
                                         lambda: self._interaction(self.load_sample))
        self.grid_view = views.GridView(lambda r, c, v: self._interaction(lambda: self.apply_edit(r, c, v)))
        self.form_view = ManualForm(lambda: self._interaction(self.predict_manual),
                                    lambda: self._interaction(self.add_manual_row),
                                    lambda: self._interaction(self.manual_changed))
        self.plot_view = PlotView(lambda: self._interaction(self.show_plot))
        self._ref: pd.DataFrame | None = None
        self.sections = W.Accordion(children=[self.form_view.box, self.plot_view.box, W.HTML(views.legend_html())])
        for i, name in enumerate(SECTIONS):
            self.sections.set_title(i, name)
        self.sections.selected_index = None
        self.sections.observe(self._on_section, names="selected_index")
        self.lower = W.VBox([])  # the feedback bar and the download come after the first paint
        self.root = W.VBox([self.header.box, W.HBox([self.uploader.upload, self.uploader.sample, self.msg.status],
                                                    layout=W.Layout(align_items="center")),
                            self.msg.errors, self.grid_view.box, self.lower, self.sections])
        self.root.add_class("mushroom-app")
        self.bar = self.downloads = None
        FeedbackFlow.__init__(self)
        self._shown_version = self.model.version
        self.header.show_version(self._shown_version)
        if not deferred:
            self.finish_page()

    # ------------------------------------------------------------------ layout
    def show(self) -> None:
        """Display the page (the notebook's only cell calls this); the rest is built once the page has it."""
        from IPython.display import display

        from .grid_adapter import on_page_connect

        display(self.root)
        import ipydatagrid  # noqa: F401  (imported in the pre-heated kernel, not during a visit)

        if not on_page_connect(self.finish_page):
            self.finish_page()

    def finish_page(self) -> None:
        """The feedback bar, the download and the (empty) grid: created after the first paint."""
        with self._lock:
            if self.bar is None:
                self.bar = views.FeedbackBar(lambda: self._interaction(self.send_labelled),
                                             lambda n: self._interaction(lambda: self.send_row(n)))
                self.downloads = views.DownloadView(lambda: self._interaction(self.prepare_download))
                self.lower.children = [self.bar.box, self.batches_view.box, self.downloads.box]
                self._update_until()
            if self.grid_view.grid is None:
                if self.state.rows is None:
                    self.state.empty(self.model.score)
                self._push_grid()

    def _on_section(self, change) -> None:
        if change.get("new") == 0:
            self._interaction(self.form_view.build)
        if change.get("new") == 1 and self.plot_view.figure is None:
            self._interaction(self.show_plot)

    # ---------------------------------------------------------------- messages
    @property
    def messages(self) -> list[str]:
        return self.msg.said

    @property
    def error_text(self) -> str:
        return self.msg.error_text

    @property
    def badge_text(self) -> str:
        return self.header.badge_text

    @property
    def rows(self) -> pd.DataFrame | None:
        return self.state.rows

    @property
    def row_numbers(self) -> list[int]:
        return self.state.row_numbers

    @property
    def service(self):
        return self.model.service

    def _interaction(self, action: Callable[[], Any]) -> Any:
        """Run a user action after a cheap check for a model promoted elsewhere; report any failure."""
        try:
            self.check_model()
            return action()
        except SchemaError as exc:
            problems = getattr(exc, "problems", [])
            self.msg.error(str(exc), problems[1:] if len(problems) > 1 else None)
        except Exception as exc:  # a dashboard must not die on one bad event: the panel says what failed
            log.exception("dashboard action failed")
            self.msg.error(f"something went wrong: {exc.__class__.__name__}: {exc}")
        return None

    def check_model(self) -> bool:
        """Swap in a champion promoted by another kernel or the CLI; refresh badge and grid. True if swapped."""
        version = self.model.version
        if version == self._shown_version:
            return False
        with self._lock:
            self._shown_version = version
            self.header.show_version(version, note="promoted elsewhere")
            self._retrained_elsewhere()
            self._update_until()
            self._rescore_all()
        return True

    # ------------------------------------------------------------------ upload
    def _take_upload(self, value) -> None:
        if not value:
            return
        try:
            if not isinstance(value, (tuple, list)) or len(value) != 1:
                raise SchemaError("upload one CSV file at a time")
            item = value[0]
            content = item.get("content") if hasattr(item, "get") else None
            if not isinstance(content, (bytes, bytearray, memoryview)):
                raise SchemaError("the upload arrived without file content; try again")
            name = item.get("name")
            self.upload_bytes(bytes(content), name=str(name)[:120] if isinstance(name, str) and name.strip()
                              else "upload.csv")
        finally:
            self.uploader.reset()

    def upload_bytes(self, data: bytes, name: str = "upload.csv") -> bool:
        """Validate and score an uploaded CSV; show problems in the error panel. True if the grid changed."""
        cap = self.settings.upload_cap_bytes
        if len(data) > cap:
            self.msg.error(f"{name} is {len(data) / 1e6:.1f} MB, over the {cap / 1e6:.0f} MB upload cap; split the "
                           "file or use `mushroom predict` for large files. Nothing was scored.")
            return False
        try:
            upload = parse_upload(data, name, cap)
        except SchemaError as exc:
            self.msg.error(f"{name}: nothing was scored.", [str(exc), *exc.problems[1:]])
            return False
        return self._show_upload(upload, name)

    def load_sample(self) -> bool:
        """20 mushrooms from the training split, every other one with its true label."""
        from ..data.dataset import training_sample

        frame = training_sample(self.settings)
        frame.loc[(frame.index // 2) % 2 == 1, "class"] = ""  # both classes among the labelled half
        return self.upload_bytes(frame.to_csv(index=False, lineterminator="\n").encode(), name="sample.csv")

    def _show_upload(self, upload: Upload, name: str) -> bool:
        start = time.perf_counter()
        with self._lock:
            scored = self.model.score(upload.features)
            self.state.load(upload, scored, name)
            self._push_grid()
        self.msg.clear()
        rows = self.state.rows
        n_p, n_u = int((rows[PREDICTION] == "poisonous").sum()), int((rows[UNCERTAIN] != "").sum())
        labelled = self.state.labelled_count()
        todo = (f"{labelled} row(s) carry a true label: <b>Send labelled rows</b> sends them." if labelled
                else "Set the <i>true label</i> column to send feedback.")
        warn = f" ({'; '.join(upload.warnings)})" if upload.warnings else ""
        self.msg.say(f"<b>{esc(name)}</b>: {len(rows)} rows scored with {esc(self.model.version)} in "
                     f"{time.perf_counter() - start:.2f}s — {n_p} poisonous, {len(rows) - n_p} edible, {n_u} "
                     f"uncertain (treat as poisonous). {todo}{esc(warn)}")
        self._refresh_plot()
        return True

    # -------------------------------------------------------------------- grid
    def grid_frame(self) -> pd.DataFrame:
        return self.state.grid_frame()

    def _push_grid(self) -> None:
        self.grid_view.show(self.state.grid_frame())
        if self.downloads is not None:
            self.downloads.clear()
        if self.bar is not None:
            self.bar.set_rows(len(self.state))

    def edit_cell(self, row: int, column: str, value: Any) -> bool:
        """Drive an edit as the page would: ``row`` is the grid row *position* (0-based). False if refused."""
        cols = self.grid_view.grid.columns()
        before = len(self.messages)
        self.grid_view.grid.page_edit(row, cols.index(column) if column in cols else len(cols), value)
        return not any(m.startswith("refused") for m in self.messages[before:])

    def apply_edit(self, row: int | None, column: str | None, value: Any) -> None:
        """Accept a valid edit (a feature code re-scores the row; a true label) or refuse and restore."""
        if row is None:
            self.msg.error("refused a malformed grid edit (unknown row or column); nothing changed")
            return
        with self._lock:
            edit = self.state.edit(row, column, value, self.model.score)
            if edit is None:
                return
            if edit.refused:
                self.grid_view.set_cells(row, {k: jsonable(v) for k, v in edit.restore.items()})
                self.msg.error(edit.refused)
                return
            self.grid_view.set_cells(row, edit.changes)
        self.msg.clear()
        number = self.state.row_numbers[row]
        if edit.scored is not None:
            code = edit.changes[column]
            why = f" — {edit.scored['reason']}" if edit.scored.get("reason") else ""
            self.msg.say(f"row {number}: {esc(column)} = {esc(code)} ({esc(CODES[column][code])}) → "
                         f"<b>{esc(edit.scored[PREDICTION])}</b> (p_poisonous {float(edit.scored[P_POISONOUS]):.3f})"
                         f"{esc(why)}")
            self._refresh_plot()
        else:
            self.msg.say(f"row {number}: true label {esc(edit.changes['true label'] or '(cleared)')}; "
                         f"{self.state.labelled_count()} labelled row(s) ready to send")
        if self.downloads is not None:
            self.downloads.clear()

    def labelled_count(self) -> int:
        return self.state.labelled_count()

    def set_true_labels(self, labels: dict[int, str]) -> None:
        """Set true labels by grid row position (as a person typing them would)."""
        for row, label in labels.items():
            self.edit_cell(row, "true label", label)

    # -------------------------------------------------------------------- plot
    @property
    def figure(self):
        return self.plot_view.figure

    def show_plot(self) -> None:
        self._refresh_plot(create=True)

    def _refresh_plot(self, create: bool = False) -> None:
        if self.plot_view.figure is None and not create:
            return
        if self._ref is None:
            self._ref = reference_cloud(self.settings.ref_path, self.model.pca)
        self.plot_view.show(plot_traces(self._ref, self.state.rows, self.state.row_numbers, self.model.pca))

    # ---------------------------------------------------------------- download
    def download_frame(self) -> pd.DataFrame:
        return self.state.download_frame(self._shown_version)

    def download_csv(self) -> bytes:
        """The scored grid as CSV bytes, with formula-like cells neutralised."""
        if not len(self.state):
            raise SchemaError("nothing to download yet: upload a file first")
        return safe_csv(self.download_frame())

    def prepare_download(self) -> bytes | None:
        """Build the CSV and show a download link for it."""
        if not len(self.state):
            self.msg.error("nothing to download yet: upload a file first")
            return None
        data = self.download_csv()
        self.downloads.show_link(data, self.state.source_name, len(self.state))
        return data


__all__ = ["Dashboard"]

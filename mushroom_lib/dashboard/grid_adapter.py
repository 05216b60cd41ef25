"""Every use of a private ipydatagrid/ipywidgets internal, in one place, each naming its upstream issue.

Pinned by tests/test_grid_adapter.py (the one test file that may touch these internals); the rest of the
dashboard talks to :class:`SafeDataGrid` and :func:`on_page_connect` only.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pandas as pd

from .values import jsonable

log = logging.getLogger("mushroom_lib.dashboard")

EditHandler = Callable[[int | None, str | None, Any], None]


def grid_class():
    """A DataGrid that validates cell-change messages from the page before anything touches the data.

    ipydatagrid's own handler writes ``row``/``column_index``/``value`` from the message straight into its
    DataFrame (an out-of-range row grows the frame; no validation hook: jupyter-widgets/ipydatagrid#224). It
    is name-mangled (``_DataGrid__handle_custom_msg``), so replacing it needs the private name.
    """
    from ipydatagrid import DataGrid

    class SafeDataGrid(DataGrid):
        def __init__(self, dataframe: pd.DataFrame, *, on_edit: EditHandler | None = None, **kwargs):
            super().__init__(dataframe, **kwargs)
            # private: no hook to validate page edits before they land (jupyter-widgets/ipydatagrid#224)
            self.on_msg(self._DataGrid__handle_custom_msg, remove=True)
            self.on_msg(self._on_page_msg)
            self._on_edit = on_edit

        def columns(self) -> list:
            """Column names in the order the page indexes them (the index column first).

            private: ``_get_col_headers`` is the only way to get the page's column order
            (no public accessor for the data as sent: jupyter-widgets/ipydatagrid#385).
            """
            return list(DataGrid._get_col_headers(self._data))

        def frame(self) -> pd.DataFrame:
            """The frame the grid holds now (what the page shows)."""
            return self._data["data"]  # private: no public accessor (jupyter-widgets/ipydatagrid#385)

        def _on_page_msg(self, _widget, content, _buffers) -> None:
            if not isinstance(content, dict) or content.get("event_type") != "cell-changed":
                return
            row, col_index, value = content.get("row"), content.get("column_index"), content.get("value")
            n_rows = len(self.frame())
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

        def page_edit(self, row: Any, column_index: Any, value: Any) -> None:
            """Handle a cell edit exactly as if the page had sent it (tests and scripts)."""
            self._on_page_msg(self, {"event_type": "cell-changed", "row": row, "column_index": column_index,
                                     "value": value}, [])

        def set_cells(self, row: int, values: dict) -> None:
            """Set cells of one row (by position) here and on the page, without firing edit handlers.

            The page gets the whole row in one ``row-changed`` message: one repaint, and (unlike
            ``cell-changed``) the page does not echo it back as an edit.
            """
            frame = self.frame()
            for column, value in values.items():
                if column in frame.columns:
                    frame.at[row, column] = value
            self.send({"event_type": "row-changed", "row": int(row),
                       "value": [jsonable(frame.at[row, c]) for c in self.columns()]})

    return SafeDataGrid


def on_page_connect(callback: Callable[[], None]) -> bool:
    """Call ``callback`` (on the kernel's main thread) each time a page has fetched the widget state.

    Wraps the ``jupyter.widget.control`` comm target ipywidgets registers: its ``request_states`` reply is
    what the page renders first, so widgets created afterwards (and their browser code) come after the
    first paint. private: ``Widget.handle_control_comm_opened`` / ``_handle_control_comm_msg`` have no
    public "page connected" event (the control comm of jupyter-widgets/ipywidgets#3021 keeps its
    message handler private). Returns False outside a kernel.
    """
    try:
        from ipywidgets import Widget
        from ipywidgets import comm as widget_comm

        manager = widget_comm.get_comm_manager()
    except (ImportError, AttributeError):  # no kernel, or an ipywidgets without the control comm
        return False
    if manager is None or not hasattr(Widget, "handle_control_comm_opened"):
        return False

    def opened(comm, msg):
        Widget.handle_control_comm_opened(comm, msg)

        def on_msg(message):
            Widget._handle_control_comm_msg(message)
            try:
                callback()
            except Exception:  # the page is already drawn; a failed extra step is logged, not raised
                log.exception("post-connect step failed")

        comm.on_msg(on_msg)

    manager.register_target("jupyter.widget.control", opened)
    return True

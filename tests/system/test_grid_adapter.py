"""The one test file that touches private ipydatagrid/ipywidgets internals: it pins what the adapter relies on.

If an upgrade of ipydatagrid or ipywidgets renames one of these, this file fails first and names it.
"""

from __future__ import annotations

import pandas as pd

from mushroom_lib.dashboard.grid_adapter import grid_class


def test_ipydatagrid_still_has_the_handler_the_adapter_replaces():
    from ipydatagrid import DataGrid

    assert hasattr(DataGrid, "_DataGrid__handle_custom_msg") and hasattr(DataGrid, "_get_col_headers")


def test_the_adapter_validates_page_edits_and_keeps_the_frame():
    edits = []
    grid = grid_class()(pd.DataFrame({"a": ["x", "y"]}), on_edit=lambda *a: edits.append(a))
    assert grid.columns()[-1] == "a"
    grid.page_edit(5, 1, "z")  # out of range: reported as malformed, the frame does not grow
    assert edits == [(None, None, None)] and len(grid._data["data"]) == 2
    grid.page_edit(1, grid.columns().index("a"), "z")
    assert edits[-1] == (1, "a", "z") and grid.frame() is grid._data["data"]
    grid.set_cells(0, {"a": "w"})
    assert grid._data["data"].at[0, "a"] == "w"


def test_ipywidgets_control_comm_hooks_exist():
    from ipywidgets import Widget

    assert hasattr(Widget, "handle_control_comm_opened") and hasattr(Widget, "_handle_control_comm_msg")


def test_widgets_carry_the_css_hooks(trained_home):
    from mushroom_lib.dashboard import Dashboard

    d = Dashboard()
    d.load_sample()
    hooks = {"mushroom-upload": d.uploader.upload, "mushroom-sample": d.uploader.sample,
             "mushroom-grid": d.grid_view.grid, "mushroom-errors": d.msg.errors,
             "mushroom-submit-feedback": d.bar.send_labelled, "mushroom-model-version": d.header.badge,
             "mushroom-pending": d.header.pending, "mushroom-manual-form": d.form_view.box,
             "mushroom-download": d.downloads.box, "mushroom-events": d.events_view}
    for cls, widget in hooks.items():
        assert cls in widget._dom_classes, cls

"""The dashboard driven in Python: upload, grid edits, labels, feedback until a retrain, download, refresh.

Everything the page would send goes through the same handlers here (FileUpload values, the grid's
cell-change messages, button clicks). The real dataset reaches the tests through ``trained_home``.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mushroom_lib.data.schema import CODES, FEATURES, LABELS

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------- helpers
def _rows(home: Path, n: int, start: int = 0) -> pd.DataFrame:
    df = pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    return df.iloc[start:start + n].reset_index(drop=True)


def _csv(frame: pd.DataFrame, header: bool = True, *, with_class: bool = False) -> bytes:
    """A file of these rows; without their class unless asked (a class column fills the true labels)."""
    if not with_class and "class" in frame.columns:
        frame = frame.drop(columns=["class"])
    return frame.to_csv(index=False, header=header, lineterminator="\n").encode()


@pytest.fixture
def dash(trained_home):
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.dashboard import Dashboard

    d = Dashboard(settings=get_settings(trained_home, report_on_promote=False))
    yield d
    d.service.close()


def _grid_column(d, column: str) -> list:
    """What the page was last sent for one column."""
    return list(d.grid_view.shown_frame()[column])


# ------------------------------------------------------------------ upload
@pytest.mark.parametrize("layout", ["header with class", "header without class", "uci"])
def test_upload_scores_every_layout_and_fills_the_grid(dash, trained_home, layout):
    rows = _rows(trained_home, 30)
    if layout == "header without class":
        data = _csv(rows)
    elif layout == "uci":
        data = _csv(rows, header=False, with_class=True)
    else:
        data = _csv(rows, with_class=True)
    assert dash.upload_bytes(data, name="field.csv")
    assert dash.error_text == ""
    expected = dash.service.predict(rows[FEATURES])
    assert len(dash.rows) == 30
    assert list(dash.rows["prediction"]) == list(expected["prediction"])
    assert dash.rows["p_poisonous"].tolist() == pytest.approx(expected["p_poisonous"].tolist())
    assert _grid_column(dash, "prediction") == list(expected["prediction"])
    assert _grid_column(dash, "row") == list(range(1, 31))  # row numbers people read, 1-based
    assert "30 rows scored" in dash.messages[-1]
    if layout != "header without class":  # the file's class (UCI: first column) fills the true-label column
        assert list(dash.rows["true label"]) == [LABELS[c] for c in rows["class"]]
        assert _grid_column(dash, "true label") == [LABELS[c] for c in rows["class"]]
        assert "class" not in dash.rows.columns and "30 row(s) carry a true label" in dash.messages[-1]
    else:
        assert (dash.rows["true label"] == "").all()


def test_uncertain_rows_are_marked_treat_as_poisonous(dash, trained_home):
    rows = _rows(trained_home, 8124)
    dash.upload_bytes(_csv(rows), name="all.csv")
    scored = dash.service.predict(rows[FEATURES])
    marks = dash.rows["uncertain"] == "uncertain — treat as poisonous"
    assert marks.tolist() == scored["uncertain"].tolist()
    assert (dash.rows.loc[marks, "prediction"] == "poisonous").all()


def test_nearest_known_and_reason_are_shown_and_uploaded_values_are_recomputed(dash, trained_home):
    rows = _rows(trained_home, 3)
    far = rows.iloc[0].copy()
    for f, code in {"odor": "m", "gill-color": "r", "stalk-color-above-ring": "y", "habitat": "w"}.items():
        far[f] = code  # a mushroom unlike every known one
    frame = pd.concat([rows, pd.DataFrame([far])], ignore_index=True)[FEATURES]
    frame["nearest_known"] = 0  # forged in the file: never trusted
    frame["Reason"] = "=HYPERLINK(\"x\")"
    dash.upload_bytes(_csv(frame), name="forged.csv")
    expected = dash.service.predict(frame[FEATURES])
    assert expected.at[3, "nearest_known"] >= 2 and expected.at[3, "reason"]  # the rule has something to say
    assert _grid_column(dash, "nearest_known") == expected["nearest_known"].tolist()
    assert _grid_column(dash, "reason") == expected["reason"].tolist()
    assert dash.rows.at[3, "prediction"] == "poisonous"
    assert not any(c.lower().startswith("reason (") for c in dash.rows.columns)  # no copy of the forged column
    dash.edit_cell(0, "veil-type", "u")  # universal: a valid code never seen; the edit says the reason in words
    scored = dash.service.predict(dash.rows.loc[[0], FEATURES]).iloc[0]
    assert scored["reason"] and scored["reason"] in dash.messages[-1]


def test_bad_upload_shows_row_column_value_and_codes_and_scores_nothing(dash, trained_home):
    good = _rows(trained_home, 5)
    dash.upload_bytes(_csv(good), name="good.csv")
    before = dash.rows.copy()
    bad = good.copy()
    bad.loc[2, "odor"] = "q"
    assert not dash.upload_bytes(_csv(bad), name="bad.csv")
    text = dash.error_text
    assert "bad.csv" in text and "nothing was scored" in text
    assert "row 3" in text and "'odor'" in text and "'q'" in text
    assert "a (almond)" in text and "f (foul)" in text  # the valid codes, with their names
    pd.testing.assert_frame_equal(dash.rows, before)  # the grid still shows the last good file
    assert dash.upload_bytes(_csv(good), name="good.csv")
    assert dash.error_text == ""  # the panel clears once a file is fine


@pytest.mark.parametrize("data,fragment", [
    (b"", "empty"),
    (b'{"cap-shape": "x"}', "JSON"),
    (b"\x00\x01\x02binary", "binary"),
    (b"cap-shape;odor\nx;f\n", "delimiter"),
    (b"cap-shape,odor\nx,f\n", "missing column"),
])
def test_malformed_files_are_refused_with_a_message(dash, data, fragment):
    assert not dash.upload_bytes(data, name="x.csv")
    assert fragment.lower() in dash.error_text.lower()
    assert len(dash.state) == 0


def test_upload_over_the_cap_is_refused(trained_home):
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.dashboard import Dashboard

    d = Dashboard(settings=get_settings(trained_home, upload_cap_bytes=1000))
    assert not d.upload_bytes(b"x" * 1001, name="big.csv")
    assert "upload cap" in d.error_text and "Nothing was scored" in d.error_text
    assert len(d.state) == 0


def _page_sends(widget, files: list[dict]) -> None:
    """Apply a FileUpload value the way a comm 'update' from the page does (deserialisation included)."""
    widget.set_state({"value": files})


def test_the_upload_widget_value_is_untrusted(dash, trained_home):
    data = _csv(_rows(trained_home, 4))
    file = {"name": "<b>x</b>.csv", "type": "text/csv", "size": 1, "content": memoryview(data), "last_modified": 0}
    _page_sends(dash.uploader.upload, [file])
    assert len(dash.rows) == 4
    assert dash.uploader.upload.value == ()  # cleared: the bytes are freed and the same file can be chosen again
    assert "<b>x</b>" not in dash.msg.status.value and "&lt;b&gt;" in dash.msg.status.value  # names are escaped
    # forged values: no bytes, two files
    _page_sends(dash.uploader.upload, [{**file, "content": "not bytes"}])
    assert "without file content" in dash.error_text
    _page_sends(dash.uploader.upload, [file, dict(file)])
    assert "one CSV file" in dash.error_text
    assert len(dash.rows) == 4


def test_html_in_file_values_is_escaped(dash, trained_home):
    rows = _rows(trained_home, 3)
    rows.loc[1, "odor"] = "<img src=x onerror=alert(1)>"
    dash.upload_bytes(_csv(rows), name="x.csv")
    assert "<img" not in dash.msg.errors.value and "&lt;img" in dash.msg.errors.value


# -------------------------------------------------------------------- grid
def test_editing_a_feature_cell_rescores_that_row_by_position(dash, trained_home):
    rows = _rows(trained_home, 12)
    dash.upload_bytes(_csv(rows), name="x.csv")
    pos = int(rows.index[rows["odor"] == "f"][0]) if (rows["odor"] == "f").any() else 3
    # the edit arrives with the row *position*; the grid labels rows from 1
    edited = rows.loc[[pos], FEATURES].copy()
    edited["odor"] = "n"
    expected = dash.service.predict(edited).iloc[0]
    others = dash.rows.drop(index=pos).copy()
    assert dash.edit_cell(pos, "odor", "none")  # a human name is accepted and stored as its code
    assert dash.rows.at[pos, "odor"] == "n"
    assert dash.grid_view.shown_frame().at[pos, "odor"] == "n"
    assert dash.rows.at[pos, "prediction"] == expected["prediction"]
    assert dash.rows.at[pos, "p_poisonous"] == pytest.approx(expected["p_poisonous"])
    assert dash.grid_view.shown_frame().at[pos, "prediction"] == expected["prediction"]
    pd.testing.assert_frame_equal(dash.rows.drop(index=pos), others)
    assert f"row {pos + 1}: odor = n" in dash.messages[-1]


def test_invalid_edits_are_refused_and_restored(dash, trained_home):
    rows = _rows(trained_home, 5)
    dash.upload_bytes(_csv(rows), name="x.csv")
    old = dash.rows.at[1, "cap-color"]
    assert not dash.edit_cell(1, "cap-color", "zz")
    text = dash.error_text
    assert "row 2" in text and "'cap-color'" in text and "'zz'" in text and "n (brown)" in text
    assert dash.rows.at[1, "cap-color"] == old and dash.grid_view.shown_frame().at[1, "cap-color"] == old
    predicted = dash.rows.at[1, "prediction"]
    other = "edible" if predicted == "poisonous" else "poisonous"
    assert not dash.edit_cell(1, "prediction", other)
    assert "computed" in dash.error_text and dash.rows.at[1, "prediction"] == predicted
    assert not dash.edit_cell(1, "true label", "maybe")
    assert "not a label" in dash.error_text and dash.rows.at[1, "true label"] == ""


def test_an_edit_goes_back_to_the_page_as_one_row_update_and_unchanged_cells_are_no_ops(dash, trained_home):
    dash.upload_bytes(_csv(_rows(trained_home, 3)), name="x.csv")
    sent = []
    dash.grid_view.grid.send = lambda content, buffers=None: sent.append(content)
    assert dash.edit_cell(0, "odor", "n")
    assert len(sent) == 1 and sent[0]["event_type"] == "row-changed" and sent[0]["row"] == 0
    cols = dash.grid_view.grid.columns()
    assert sent[0]["value"][cols.index("odor")] == "n"
    assert sent[0]["value"][cols.index("prediction")] == dash.rows.at[0, "prediction"]
    sent.clear()
    assert dash.edit_cell(0, "true label", " Edible ")
    assert [m["value"][cols.index("true label")] for m in sent] == ["edible"]  # normalised on the page too
    sent.clear()
    before = list(dash.messages)
    for column in ("true label", "prediction", "p_poisonous", "odor"):
        dash.edit_cell(0, column, dash.rows.at[0, column])  # an editor closed without a change
    assert sent == [] and dash.messages == before and dash.error_text == ""


@pytest.mark.parametrize("row,column_index", [(10 ** 6, 0), (-1, 0), (True, 0), ("0", 0), (0, 999), (0, None)])
def test_malformed_grid_messages_change_nothing(dash, trained_home, row, column_index):
    dash.upload_bytes(_csv(_rows(trained_home, 3)), name="x.csv")
    before, grid_before = dash.rows.copy(), dash.grid_view.shown_frame().copy()
    dash.grid_view.grid.page_edit(row, column_index, "edible")
    pd.testing.assert_frame_equal(dash.rows, before)
    pd.testing.assert_frame_equal(dash.grid_view.shown_frame(), grid_before)  # ipydatagrid would have grown it
    assert "malformed" in dash.error_text


def test_odd_values_in_an_edit_are_handled(dash, trained_home):
    dash.upload_bytes(_csv(_rows(trained_home, 3)), name="x.csv")
    grid = dash.grid_view.grid
    ti = grid.columns().index("true label")
    grid.page_edit(0, ti, {"__proto__": 1})
    assert "not a label" in dash.error_text
    grid.page_edit(0, ti, "x" * 100_000)
    assert dash.rows.at[0, "true label"] == ""
    grid.page_edit(0, ti, " Poisonous ")
    assert dash.rows.at[0, "true label"] == "poisonous"


# ---------------------------------------------------------------- feedback
def test_label_in_the_grid_send_until_a_retrain_then_the_grid_refreshes(dash, trained_home):
    rows = _rows(trained_home, 20)
    dash.upload_bytes(_csv(rows), name="field.csv")
    assert dash.badge_text.startswith("model v0001")
    assert "10 of 10 until the next retrain" in dash.bar.until.value
    labels = [LABELS[c] for c in rows["class"]]

    dash.set_true_labels({i: labels[i] for i in range(4)})
    assert dash.labelled_count() == 4
    receipt = dash.send_labelled()
    assert receipt.rows_written == 4 and not receipt.retrain_pending
    assert "6 of 10 until the next retrain" in dash.bar.until.value
    assert list(dash.rows["sent"][:4]) == ["yes"] * 4 and _grid_column(dash, "sent")[:4] == ["yes"] * 4
    assert dash.send_labelled() is None and "no labelled rows" in dash.error_text  # nothing twice

    dash.set_true_labels({i: labels[i][0] for i in range(4, 10)})  # e/p work too
    receipt = dash.send_labelled()
    assert receipt.rows_written == 6 and receipt.retrain_pending
    assert dash.header.pending_shown and "retraining" in dash.header.pending.value
    dash.wait_for_retrain(timeout=180)
    final = receipt.future.result()
    assert final.retrained and final.promoted, final.reason
    assert not dash.header.pending_shown and dash.events[-1] == "promoted-v0002"
    assert dash.service.model_version == "v0002"
    assert dash.badge_text.startswith("model v0002")
    assert "accuracy" in dash.badge_text  # the metrics delta
    assert "10 of 10 until the next retrain" in dash.bar.until.value
    # the grid shows the new model's predictions
    expected = dash.service.predict(rows[FEATURES])
    assert dash.rows["p_poisonous"].tolist() == pytest.approx(expected["p_poisonous"].tolist())
    assert _grid_column(dash, "prediction") == list(expected["prediction"])
    assert set(dash.download_frame()["model_version"]) == {"v0002"}
    stored = dash.service.store.read()
    assert len(stored) == 10 and set(stored["source"]) == {"dashboard"}
    assert list(stored["target"]) == labels[:10]


def test_send_one_row(dash, trained_home):
    rows = _rows(trained_home, 6)
    dash.upload_bytes(_csv(rows), name="x.csv")
    assert dash.send_row(3) is None and "no true label" in dash.error_text
    dash.edit_cell(2, "true label", LABELS[rows.at[2, "class"]])
    dash.edit_cell(4, "true label", LABELS[rows.at[4, "class"]])
    receipt = dash.send_row(3)
    assert receipt.rows_written == 1
    assert list(dash.rows["sent"]) == ["", "", "yes", "", "", ""]
    assert "9 of 10 until the next retrain" in dash.bar.until.value
    assert dash.send_row(99) is None and "no row 99" in dash.error_text
    stored = dash.service.store.read()
    assert len(stored) == 1 and stored.iloc[0]["odor"] == rows.at[2, "odor"]


def test_undo_a_sent_batch_excludes_its_rows_and_k_counts_only_the_rest(dash, trained_home):
    rows = _rows(trained_home, 8)
    dash.upload_bytes(_csv(rows, with_class=True), name="field.csv")
    first = dash.send_row(1)  # batch 1: one row
    dash.edit_cell(1, "true label", "edible" if rows.at[1, "class"] == "p" else "poisonous")  # a wrong label
    dash.edit_cell(2, "true label", "edible" if rows.at[2, "class"] == "p" else "poisonous")
    wrong = dash.send_labelled()  # batch 2: rows 2..8 (two of them wrongly labelled)
    assert first.rows_written == 1 and wrong.rows_written == 7
    assert "2 of 10 until the next retrain" in dash.bar.until.value
    assert sorted(dash.batches_view.buttons) == [1, 2]  # an undo per batch
    assert "7 row(s) · dashboard" in plain_text(dash.batches_view.box)

    dash.batches_view.buttons[2].click()  # as the person clicks it
    listed = dash.service.feedback.list(excluded=True)
    assert listed["feedback_id"].tolist() == wrong.feedback_ids and len(wrong.feedback_ids) == 7
    assert set(listed["excluded_reason"]) == {"undone in the dashboard"} and set(listed["excluded_by"]) == {"dashboard"}
    assert dash.service.store.read()["feedback_id"].tolist() == first.feedback_ids  # what training sees
    assert len(dash.service.store.read(include_excluded=True)) == 8  # the file keeps every row
    assert "9 of 10 until the next retrain" in dash.bar.until.value  # K counts only the row not undone
    assert dash.service.status()["rows_until_retrain"] == 9
    assert list(dash.rows["sent"]) == ["yes"] + ["undone"] * 7 and _grid_column(dash, "sent")[1] == "undone"
    assert sorted(dash.batches_view.buttons) == [1] and "undone" in plain_text(dash.batches_view.box)
    assert dash.undo_batch(2) is None and "cannot be undone" in dash.error_text  # nothing twice

    dash.edit_cell(1, "true label", LABELS[rows.at[1, "class"]])  # corrected: the row can be sent again
    assert dash.labelled_count() == 1


def test_a_retrain_ends_the_undo_of_the_batches_it_takes(dash, trained_home):
    rows = _rows(trained_home, 14)
    dash.upload_bytes(_csv(rows, with_class=True), name="field.csv")
    dash.send_row(1)
    assert sorted(dash.batches_view.buttons) == [1]
    receipt = dash.send_labelled()  # 13 more rows: the retrain is queued and takes both batches
    assert receipt.retrain_pending and dash.batches_view.buttons == {}
    assert dash.undo_batch(1) is None and "cannot be undone" in dash.error_text
    dash.wait_for_retrain(timeout=180)
    assert receipt.future.result().retrained
    assert dash.batches_view.buttons == {} and "in a retrain" in plain_text(dash.batches_view.box)
    assert dash.service.feedback.list(excluded=True).empty


def plain_text(widget) -> str:
    """The text a person reads in a box of HTML widgets."""
    from mushroom_lib.dashboard.values import plain

    out = []
    for child in getattr(widget, "children", ()):
        out.append(plain_text(child))
    if hasattr(widget, "value") and isinstance(widget.value, str):
        out.append(plain(widget.value))
    return " ".join(t for t in out if t)


def test_a_refused_candidate_is_reported_in_the_badge(dash, trained_home):
    rows = _rows(trained_home, 10)
    dash.upload_bytes(_csv(rows), name="x.csv")
    receipt = type("R", (), {"retrained": True, "promoted": False, "candidate_version": "v0002",
                             "reason": "false_edible would rise from 0 to 3 on the holdout",
                             "model_version": "v0001", "rows_until_retrain": 10, "metrics_delta": {}})()
    dash._on_feedback_done(receipt)
    assert "candidate v0002 refused: false_edible would rise" in dash.badge_text
    assert dash.badge_text.startswith("model v0001")


# ------------------------------------------------------------ model refresh
def test_a_promotion_elsewhere_shows_at_the_next_interaction(dash, trained_home):
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.training.train import train

    rows = _rows(trained_home, 8)
    dash.upload_bytes(_csv(rows), name="x.csv")
    assert dash.badge_text.startswith("model v0001")
    # another kernel / the CLI trains and promotes a new champion
    result = train(get_settings(trained_home, report_on_promote=False), force=True)
    assert result.promoted and result.version == "v0002"
    assert dash.badge_text.startswith("model v0001")  # nothing polls in the background
    dash.edit_cell(0, "true label", "edible")  # any interaction
    assert dash.badge_text.startswith("model v0002") and "promoted elsewhere" in dash.badge_text
    assert set(dash.download_frame()["model_version"]) == {"v0002"}
    assert dash.rows.at[0, "true label"] == "edible"


# ------------------------------------------------------------- manual form
def test_manual_form_predicts_one_mushroom_with_human_names(dash, trained_home):
    row = _rows(trained_home, 1, start=7).iloc[0]
    assert dash.predict_manual() is None and "choose:" in dash.form_view.result.value
    for f in FEATURES:
        options = dash.form[f].options
        assert options[0][0] == "unknown" and options[0][1] not in CODES[f]  # a person may not know every feature
        assert all(CODES[f][code] in label for label, code in options[1:])
        assert len(options) == len(CODES[f]) + 1
        dash.form[f].value = row[f]
    scored = dash.predict_manual()
    expected = dash.service.predict(pd.DataFrame([row[FEATURES]])).iloc[0]
    assert scored["prediction"] == expected["prediction"]
    assert expected["prediction"] in dash.form_view.result.value
    dash.add_manual_row()
    assert len(dash.rows) == 1 and dash.row_numbers == [1]
    assert dash.rows.at[0, "prediction"] == expected["prediction"]


# -------------------------------------------------------------------- plot
def test_pca_view_shows_user_rows_over_the_reference_cloud(dash, trained_home):
    dash.show_plot()
    names = [t.name for t in dash.figure.data]
    assert names == ["reference: edible", "reference: poisonous"]
    assert sum(len(t.x) for t in dash.figure.data) == 8124
    rows = _rows(trained_home, 25)
    dash.upload_bytes(_csv(rows), name="x.csv")
    names = [t.name for t in dash.figure.data]
    assert "your rows: edible" in names and "your rows: poisonous" in names
    mine = sum(len(t.x) for t in dash.figure.data if t.name.startswith("your rows"))
    assert mine == 25


def test_the_3d_view_is_built_when_its_section_opens(dash):
    assert dash.figure is None
    dash.sections.selected_index = 1
    assert dash.figure is not None


# ---------------------------------------------------------------- download
def test_download_neutralises_formula_cells(dash, trained_home):
    rows = _rows(trained_home, 6)
    rows["note"] = ["=HYPERLINK(\"http://x\")", "+1+2", "-3", "@SUM(A1)", "plain", "\tTAB"]
    dash.upload_bytes(_csv(rows), name="notes.csv")
    dash.edit_cell(0, "true label", "poisonous")
    data = dash.prepare_download()
    assert "download" in dash.downloads.link.value and "data:text/csv" in dash.downloads.link.value
    table = list(csv.reader(io.StringIO(data.decode())))
    header, body = table[0], table[1:]
    assert header[:2] == ["row", "cap-shape"] and "prediction" in header and "p_poisonous" in header
    notes = [r[header.index("note")] for r in body]
    assert notes == ["'=HYPERLINK(\"http://x\")", "'+1+2", "'-3", "'@SUM(A1)", "plain", "'\tTAB"]
    for r in body:
        assert not any(cell[:1] in ("=", "+", "-", "@") for cell in r)
    assert body[0][header.index("true label")] == "poisonous"
    assert [r[header.index("odor")] for r in body] == list(rows["odor"])
    assert all(0.0 <= float(r[header.index("p_poisonous")]) <= 1.0 for r in body)


def test_download_before_any_upload_says_so(dash):
    assert dash.prepare_download() is None
    assert "nothing to download" in dash.error_text


# ---------------------------------------------------------------- plumbing
def test_importing_the_dashboard_module_is_light():
    code = ("import sys, mushroom_lib.dashboard; "
            "print(sorted(m for m in ('evidently', 'ipywidgets', 'plotly', 'ipydatagrid', 'sklearn', 'voila') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_building_the_dashboard_does_not_import_evidently(trained_home):
    """A page's kernel scores from the saved plan: no training stack, no plotly, no report library."""
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.dashboard.server import prepare_scoring_plan

    prepare_scoring_plan(get_settings(trained_home))  # what `mushroom dashboard` does before serving
    code = ("import sys; from mushroom_lib.dashboard import Dashboard; d = Dashboard(); d.load_sample(); "
            "d.form['odor'].value = 'a'; "
            "print(sorted(m for m in ('evidently', 'sklearn', 'skops', 'plotly') if m in sys.modules), "
            "len(d.rows), '400 known' in d.form_view.identification.value)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] 20 True"  # the partial identification needs no model either


def test_notebook_only_builds_and_shows_the_dashboard():
    nb = json.loads((ROOT / "dashboards" / "app.ipynb").read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1
    assert not code[0]["outputs"] and code[0]["execution_count"] is None
    source = "".join(code[0]["source"])
    assert "from mushroom_lib.dashboard.app import Dashboard" in source and "Dashboard(deferred=True).show()" in source


def test_voila_configuration():
    from mushroom_lib.dashboard.server import page_folder, voila_config

    c = voila_config(8866, pool=3, max_kernels=7, close_grace=5, cull_idle_seconds=300)
    assert c.Voila.ip == "127.0.0.1" and c.Voila.port == 8866 and c.Voila.port_retries == 0
    assert c.Voila.token is None
    assert c.VoilaConfiguration.preheat_kernel is True and c.VoilaConfiguration.default_pool_size == 3
    assert c.MappingKernelManager.cull_idle_timeout == 300 and c.MappingKernelManager.cull_connected is False
    assert c.Voila.tornado_settings["mushroom"] == {"max_kernels": 7, "close_grace": 5, "pool": 3}
    assert c.VoilaConfiguration.template == "mushroom"
    assert page_folder() == ROOT / "dashboards"  # the checkout's folder, found through importlib.resources
    folder = page_folder() / "share" / "voila" / "templates" / "mushroom"
    for path in (folder / "index.html.j2", folder / "static" / "page.js"):
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path  # nothing from a CDN


def test_limits_come_from_the_environment(monkeypatch):
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.dashboard.server import dashboard_limits

    def limits_from_env():
        return dashboard_limits(get_settings())

    monkeypatch.setenv("MUSHROOM_DASHBOARD_POOL", "4")
    monkeypatch.setenv("MUSHROOM_DASHBOARD_MAX_KERNELS", "12")
    limits = limits_from_env()
    assert limits["pool"] == 4 and limits["max_kernels"] == 12
    monkeypatch.delenv("MUSHROOM_DASHBOARD_POOL")  # by default the pool is half the cap, at most 16
    assert limits_from_env()["pool"] == 6
    monkeypatch.setenv("MUSHROOM_DASHBOARD_MAX_KERNELS", "40")
    assert limits_from_env()["pool"] == 16
    monkeypatch.setenv("MUSHROOM_DASHBOARD_MAX_KERNELS", "1")
    assert limits_from_env()["pool"] == 1
    monkeypatch.setenv("MUSHROOM_DASHBOARD_MAX_KERNELS", "lots")
    with pytest.raises(ValueError, match="MUSHROOM_DASHBOARD_MAX_KERNELS='lots' is not valid"):
        limits_from_env()


def test_serving_beyond_localhost_needs_a_token(trained_home, monkeypatch):
    monkeypatch.delenv("MUSHROOM_DASHBOARD_TOKEN", raising=False)
    out = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(trained_home), "dashboard",
                          "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "refusing to serve on 0.0.0.0 without a token" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_refuses_without_a_model(home):
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.dashboard import serve
    from mushroom_lib.service import NoChampionError

    with pytest.raises(NoChampionError):
        serve(get_settings(home), port=0)
    out = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(home), "dashboard"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "mushroom: error: no trained model" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_refuses_a_busy_port(trained_home):
    import socket

    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.dashboard import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            serve(get_settings(trained_home), port=port)


def test_neutralize():
    from mushroom_lib.dashboard import neutralize

    assert neutralize("=1+1") == "'=1+1" and neutralize("-x") == "'-x" and neutralize("@a") == "'@a"
    assert neutralize("+a") == "'+a" and neutralize("ok") == "ok" and neutralize(0.5) == 0.5


# ------------------------------------------------------- labelled files, sample
def test_a_labelled_file_is_sent_with_one_click_and_the_batch_is_scored_against_its_labels(dash, trained_home):
    rows = _rows(trained_home, 12)
    rows.loc[10:, "class"] = ""  # two rows without a label
    dash.upload_bytes(_csv(rows, with_class=True), name="field.csv")
    assert "10 row(s) carry a true label" in dash.messages[-1]
    receipt = dash.send_labelled()
    assert receipt.rows_written == 10
    said = [LABELS[c] for c in rows["class"][:10]]
    predicted = list(dash.rows["prediction"][:10])
    accuracy = sum(a == b for a, b in zip(said, predicted)) / 10
    false_edible = sum(p == "edible" and t == "poisonous" for p, t in zip(predicted, said))
    assert f"accuracy {accuracy * 100:.1f}%, false_edible {false_edible}" in dash.messages[-1]
    assert list(dash.rows["sent"]) == ["yes"] * 10 + ["", ""]
    dash.wait_for_retrain(timeout=180)
    assert dash.badge_text.startswith("model v0002")


def test_the_sample_button_scores_twenty_training_rows_half_labelled(dash, trained_home):
    import json as _json

    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.data.dataset import load_dataset

    dash.uploader.sample.click()
    assert len(dash.rows) == 20 and "sample.csv: 20 rows scored" in dash.messages[-1]
    assert (dash.rows["true label"] != "").sum() == 10
    assert set(dash.rows.loc[dash.rows["true label"] != "", "true label"]) == {"edible", "poisonous"}
    settings = get_settings(trained_home)
    data = load_dataset(settings)
    holdout = data.iloc[_json.loads(settings.split_path.read_text())["holdout"]]
    keys = {tuple(r) for r in holdout[FEATURES].to_numpy()}
    train = data.drop(index=holdout.index)
    train_keys = {tuple(r) for r in train[FEATURES].to_numpy()}
    mine = [tuple(r) for r in dash.rows[FEATURES].to_numpy()]
    assert all(k in train_keys for k in mine)  # training rows only (identical rows may also sit in the holdout)
    assert len(set(mine) - keys) > 0


def test_mushroom_data_writes_the_sample_files(trained_home):
    labelled = pd.read_csv(trained_home / "data" / "samples" / "sample_labelled.csv", dtype=str)
    unlabelled = pd.read_csv(trained_home / "data" / "samples" / "sample_unlabelled.csv", dtype=str)
    assert len(labelled) == 20 and list(labelled.columns) == ["class", *FEATURES]
    assert sorted(labelled["class"].value_counts().tolist()) == [10, 10]
    assert len(unlabelled) == 20 and list(unlabelled.columns) == FEATURES
    assert not set(map(tuple, labelled[FEATURES].to_numpy())) & set(map(tuple, unlabelled.to_numpy()))  # other rows


# ------------------------------------------------------ identification panel
def test_the_identification_renderer_shows_prediction_counts_reason_and_next_question():
    from mushroom_lib.dashboard.form import render_identification

    html = render_identification({"prediction": "poisonous", "matching_known": 12, "matching_poisonous": 5,
                                  "reason": "5 of the 12 matching known mushrooms are <poisonous>",
                                  "ask_next": ["spore-print-color", "odor"], "note": "unknown means poisonous"})
    assert "mushroom-result-poisonous" in html and "12 known mushroom(s) match" in html
    assert "5 of them poisonous" in html and "&lt;poisonous&gt;" in html
    assert "look next at: spore print color, odor" in html and "unknown means poisonous" in html
    assert "mushroom-result-poisonous" in render_identification({"prediction": None})


def test_unknown_features_go_to_the_identification_hook(dash, trained_home):
    row = _rows(trained_home, 1).iloc[0]
    asked = []
    dash.identify = lambda given: asked.append(given) or {"prediction": "poisonous", "matching_known": 3,
                                                          "matching_poisonous": 1, "ask_next": ["odor"]}
    for f in FEATURES:
        dash.form[f].value = row[f]
    dash.form["odor"].value = "unknown"
    assert asked and "odor" not in asked[-1] and len(asked[-1]) == 21  # asked at the dropdown change
    assert "3 known mushroom(s) match" in dash.form_view.identification.value
    assert dash.predict_manual() is None and "choose: odor" in dash.form_view.result.value


def _panel(d) -> str:
    from mushroom_lib.dashboard.values import plain

    return plain(d.form_view.identification.value)


def test_the_form_identifies_from_odor_almond_alone_as_each_dropdown_changes(dash):
    dash.form["odor"].value = "a"  # the other 21 features left unknown: no Predict click
    text = _panel(dash)
    assert text.startswith("edible") and "400 known mushroom(s) match what you gave, 0 of them poisonous" in text
    assert "all 400 known mushrooms with these features are edible in this dataset" in text
    assert "nothing more to ask" in text  # every match is edible: no next question
    assert "not advice to eat any mushroom" in text
    assert not dash.model.service_started  # answered from the dataset: the page made no ModelService for it

    dash.form["odor"].value = "n"  # the panel follows the dropdown
    text = _panel(dash)
    assert text.startswith("poisonous") and "3528 known mushroom(s) match" in text and "120 of them poisonous" in text
    assert "look next at: spore print color" in text and "not advice to eat any mushroom" in text
    dash.form["spore-print-color"].value = "r"  # green: an odourless mushroom with a green spore print
    assert _panel(dash).startswith("poisonous") and "72 known mushroom(s) match what you gave, 72 of them" in _panel(dash)
    dash.form["odor"].value = "a"
    assert "no known mushroom in this dataset has these features" in _panel(dash)  # none match: poisonous
    assert _panel(dash).startswith("poisonous")


def test_the_form_answers_through_the_page_service_once_it_exists(dash, trained_home):
    assert dash.service.model_version == "v0001"  # the page's service now exists (as after sending feedback)
    dash.form["odor"].value = "n"
    assert "3528 known mushroom(s) match" in _panel(dash)
    row = _rows(trained_home, 1, start=7).iloc[0]
    for f in FEATURES:  # all 22 known: the model's answer, as before
        dash.form[f].value = row[f]
    expected = dash.service.predict(pd.DataFrame([row[FEATURES]])).iloc[0]
    assert expected["prediction"] in dash.form_view.result.value and "p_poisonous" in dash.form_view.result.value
    assert dash.form_view.identification.value == ""


# --------------------------------------------------------- websocket filter
def _v1(channel: str, msg_type: str) -> bytes:
    parts = [channel.encode(), json.dumps({"msg_type": msg_type}).encode(), b"{}", b"{}", b"{}"]
    offsets, pos = [], 8 * (len(parts) + 2)
    for p in parts:
        offsets.append(pos)
        pos += len(p)
    offsets.append(pos)
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + b"".join(parts)


def test_the_page_cannot_shut_down_restart_or_run_code_in_its_kernel_through_the_websocket():
    from mushroom_lib.dashboard.handlers import message_allowed

    assert message_allowed(_v1("shell", "comm_msg")) and message_allowed(_v1("shell", "comm_open"))
    assert message_allowed(_v1("shell", "kernel_info_request"))
    for code in ("execute_request", "inspect_request", "complete_request", "history_request"):
        assert not message_allowed(_v1("shell", code)), code
    assert not message_allowed(_v1("stdin", "input_reply"))
    assert not message_allowed(_v1("control", "shutdown_request"))
    assert not message_allowed(_v1("control", "kernel_info_request"))
    assert not message_allowed(_v1("shell", "shutdown_request"))
    assert not message_allowed('{"channel": "shell"}') and not message_allowed(b"\x00garbage")


def test_a_kernel_websocket_opens_only_with_the_key_of_the_page_that_was_served_it():
    from mushroom_lib.dashboard.handlers import page_key_matches

    keys = {"kernel-a": "key-a", "kernel-b": "key-b"}
    assert page_key_matches(keys, "kernel-a", "key-a")
    assert not page_key_matches(keys, "kernel-a", "key-b")  # another page's key
    assert not page_key_matches(keys, "kernel-a", None) and not page_key_matches(keys, "kernel-a", "")
    assert not page_key_matches(keys, "kernel-c", "key-a")  # a kernel no page was served


def test_the_pool_refills_only_once_the_pages_of_a_burst_are_loaded_and_settled():
    from mushroom_lib.dashboard.handlers import PageLoads

    now = [100.0]
    loads = PageLoads(clock=lambda: now[0])
    assert not loads.busy()  # a quiet server refills at once
    loads.served("kernel-a")
    loads.served("kernel-b")
    loads.connected("kernel-a")
    assert loads.loading() == 1 and loads.busy()
    now[0] += 30
    loads.connected("kernel-b")  # every page has connected; its visitor acts now
    assert loads.loading() == 0 and loads.busy()
    now[0] += PageLoads.SETTLE_S - 1
    assert loads.busy()
    now[0] += 1
    assert not loads.busy()
    loads.served("kernel-c")  # a tab that never connects stops holding refills back
    now[0] += PageLoads.LOADING_MAX_S + 1
    assert loads.loading() == 0 and not loads.busy()

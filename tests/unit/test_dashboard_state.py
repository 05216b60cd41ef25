"""The dashboard's state without widgets: uploads with labels, edits, what is sent, a batch's accuracy."""

from __future__ import annotations

import pandas as pd
import pytest

from mushroom_lib.dashboard.state import GridState, parse_upload
from mushroom_lib.data.schema import FEATURES, SchemaError


def _score(features: pd.DataFrame) -> pd.DataFrame:
    """A stand-in model: poisonous when the odor is foul; with the extra columns the service may add."""
    poisonous = (features["odor"] == "f").to_numpy()
    return pd.DataFrame({"prediction": ["poisonous" if p else "edible" for p in poisonous],
                         "p_poisonous": [0.9 if p else 0.1 for p in poisonous],
                         "uncertain": [False] * len(features), "unseen_codes": [""] * len(features),
                         "nearest_known": [0] * len(features), "reason": ["a reason"] * len(features),
                         "model_version": ["v0001"] * len(features)}, index=features.index)


def _csv(odors: list[str], labels: list[str] | None = None, column: str = "class") -> bytes:
    from mushroom_lib.data.schema import CODES

    rows = []
    for i, odor in enumerate(odors):
        row = {f: next(iter(CODES[f])) for f in FEATURES}
        row["odor"] = odor
        if labels is not None:
            row[column] = labels[i]
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False).encode()


def _state(odors, labels=None, column="class") -> GridState:
    state = GridState()
    upload = parse_upload(_csv(odors, labels, column), "x.csv", 10 ** 6)
    state.load(upload, _score(upload.features), "x.csv")
    return state


@pytest.mark.parametrize("column", ["class", "true label", "True_Label"])
def test_a_label_column_fills_the_true_labels(column):
    state = _state(["f", "n", "a"], ["p", "edible", ""], column)
    assert list(state.rows["true label"]) == ["poisonous", "edible", ""]
    assert state.labelled_positions() == [0, 1]


def test_a_bad_label_names_row_column_value():
    with pytest.raises(SchemaError, match=r"row 2, column 'class': 'maybe' is not a label"):
        parse_upload(_csv(["f", "n"], ["p", "maybe"]), "x.csv", 10 ** 6)


def test_every_column_the_model_returns_is_shown_after_the_lead_columns():
    state = _state(["f"])
    cols = list(state.rows.columns)
    assert cols[:5] == ["true label", "prediction", "p_poisonous", "uncertain", "sent"]
    assert "nearest_known" in cols and "reason" in cols and "model_version" not in cols
    assert cols.index("reason") < cols.index("cap-shape")
    assert state.rows.at[0, "reason"] == "a reason"


def test_a_feature_edit_rescores_the_row_and_clears_sent():
    state = _state(["n", "n"], ["e", "e"])
    state.mark_sent([0], "yes")
    edit = state.edit(0, "odor", "foul", _score)
    assert edit.refused is None and edit.changes["odor"] == "f" and edit.changes["prediction"] == "poisonous"
    assert state.rows.at[0, "sent"] == "" and state.rows.at[1, "prediction"] == "edible"
    assert state.edit(0, "odor", "f", _score) is None  # nothing changed


def test_refused_edits_say_why_and_what_to_restore():
    state = _state(["n"])
    edit = state.edit(0, "odor", "zz", _score)
    assert "row 1, column 'odor': 'zz' is not a valid code" in edit.refused and edit.restore == {"odor": "n"}
    assert "computed" in state.edit(0, "prediction", "poisonous", _score).refused
    assert "not a label" in state.edit(0, "true label", "maybe", _score).refused
    assert state.rows.at[0, "odor"] == "n"


def test_feedback_frame_and_batch_metrics():
    state = _state(["f", "n", "n", "f"], ["p", "e", "p", ""])
    positions = state.labelled_positions()
    assert positions == [0, 1, 2]
    frame = state.feedback_frame(positions)
    assert list(frame["class"]) == ["poisonous", "edible", "poisonous"] and list(frame.columns[:22]) == FEATURES
    metrics = state.batch_metrics(positions)
    assert metrics == {"rows": 3, "accuracy": pytest.approx(2 / 3), "false_edible": 1}  # row 3: called edible
    state.mark_sent(positions, "yes")
    assert state.labelled_positions() == []


def test_download_frame_order_and_version():
    state = _state(["f", "n"])
    frame = state.download_frame("v0007")
    assert list(frame.columns[:23]) == ["row", *FEATURES] and set(frame["model_version"]) == {"v0007"}
    assert list(frame["row"]) == [1, 2] and frame.at[0, "p_poisonous"] == "0.900000"


def test_sent_batches_undo_until_a_retrain_takes_them_and_again_if_it_failed():
    from types import SimpleNamespace

    from mushroom_lib.dashboard.batches import SentBatches

    batches = SentBatches()
    one = batches.add(SimpleNamespace(rows_written=2, feedback_ids=[1, 2]), "dashboard", [0, 1], grid=1)
    two = batches.add(SimpleNamespace(rows_written=1, feedback_ids=[3]), "dashboard", [2], grid=1)
    assert [b.undoable for b in batches.shown()] == [True, True] and batches.get("2") is two
    batches.retrained(up_to=1, by=7)  # a retrain queued with batch 1 takes it, not batch 2
    assert (one.undoable, two.undoable) == (False, True)
    batches.reopen(8)  # another retrain's failure changes nothing here
    assert not one.undoable
    batches.reopen(7)  # that retrain failed: batch 1 can be undone again
    assert one.undoable
    empty = batches.add(SimpleNamespace(rows_written=0, feedback_ids=[]), "dashboard", [], grid=1)
    assert not empty.undoable  # nothing written, nothing to undo

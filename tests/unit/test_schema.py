"""The schema's validation: errors people can act on (row, column, value, valid codes), on synthetic frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mushroom_lib.data.dataset import synthetic_frame
from mushroom_lib.data.schema import (
    CODES,
    FEATURES,
    SchemaError,
    describe,
    normalize_labels,
    read_csv_bytes,
    validate_frame,
)

ROOT = Path(__file__).resolve().parents[2]


def _frame(n=6, seed=0):
    return synthetic_frame(n, seed, with_class=False)


def test_invalid_code_names_row_column_value_and_valid_codes():
    df = _frame()
    df.loc[3, "odor"] = "z"
    with pytest.raises(SchemaError) as err:
        validate_frame(df)
    msg = str(err.value)
    assert "row 4" in msg and "'odor'" in msg and "'z'" in msg
    for code, name in CODES["odor"].items():  # every valid code with its name
        assert f"{code} ({name})" in msg
    assert (err.value.row, err.value.column, err.value.value) == (4, "odor", "z")


def test_row_numbers_follow_first_row_and_report_the_first_bad_row():
    df = _frame(10)
    df.loc[7, "habitat"] = "Q"
    df.loc[2, "cap-color"] = "?"
    with pytest.raises(SchemaError) as err:
        validate_frame(df, first_row=101)
    assert err.value.row == 103 and err.value.column == "cap-color" and err.value.value == "?"
    assert str(err.value).startswith("2 invalid cells")
    assert any("row 108" in p and "'habitat'" in p for p in err.value.problems)


def test_question_mark_is_valid_only_for_stalk_root():
    df = _frame()
    df["stalk-root"] = "?"
    assert len(validate_frame(df).features) == len(df)


@pytest.mark.parametrize("empty", ["", "   ", None, np.nan])
def test_empty_cell_is_named(empty):
    df = _frame().astype(object)
    df.loc[1, "gill-size"] = empty
    with pytest.raises(SchemaError, match=r"row 2, column 'gill-size' is empty; valid codes: b \(broad\)"):
        validate_frame(df)


def test_label_encoded_integers_are_recognised():
    df = pd.DataFrame({f: np.arange(5) % 3 for f in FEATURES})
    with pytest.raises(SchemaError, match="label-encoded integers"):
        validate_frame(df)


def test_missing_misspelled_and_duplicated_columns():
    df = _frame()
    with pytest.raises(SchemaError, match="missing column.*habitat") as err:
        validate_frame(df.drop(columns="habitat"))
    assert err.value.column == "habitat"
    with pytest.raises(SchemaError, match=r"'odour' a misspelling of 'odor'"):
        validate_frame(df.rename(columns={"odor": "odour"}))
    dup = pd.concat([df, df[["odor"]]], axis=1)
    with pytest.raises(SchemaError, match="'odor' appears 2 times"):
        validate_frame(dup)
    # the same column written two ways is a duplicate too
    twice = df.assign(**{"ODOR": df["odor"]})
    with pytest.raises(SchemaError, match="'odor' appears 2 times"):
        validate_frame(twice)


def test_no_columns_and_no_rows():
    with pytest.raises(SchemaError, match="no columns"):
        validate_frame(pd.DataFrame())
    with pytest.raises(SchemaError, match="header but no rows"):
        validate_frame(_frame().iloc[:0])


def test_order_extra_columns_class_and_name_spellings():
    df = _frame()
    shuffled = df[list(reversed(FEATURES))].assign(note="x", **{"class": "p"})
    shuffled = shuffled.rename(columns={"bruises": "bruises?", "gill-size": "Gill_Size"})
    checked = validate_frame(shuffled)
    assert list(checked.features.columns) == FEATURES
    pd.testing.assert_frame_equal(checked.features, df.astype(object))
    assert checked.extra == ["note"] and "note" in checked.warnings[0]
    assert checked.labels is None  # class is not needed to predict, and not used


def test_labels_accept_codes_and_words_and_name_bad_rows():
    got = normalize_labels(pd.Series(["e", "P", " edible ", "Poisonous"]))
    assert list(got) == ["e", "p", "e", "p"]
    with pytest.raises(SchemaError, match=r"row 3, column 'class': label '1'"):
        normalize_labels(pd.Series(["e", "p", "1"]))
    df = _frame()
    with pytest.raises(SchemaError, match="missing column 'class'"):
        validate_frame(df, require_label=True)


def _csv(df: pd.DataFrame, **kw) -> bytes:
    return df.to_csv(index=False, lineterminator="\n", **kw).encode()


def test_read_csv_both_layouts_bom_crlf_quotes():
    df = synthetic_frame(8, 3)
    plain = read_csv_bytes(_csv(df))
    expected = validate_frame(plain, require_label=True)
    variants = {
        "bom": b"\xef\xbb\xbf" + _csv(df),
        "crlf": _csv(df).replace(b"\n", b"\r\n"),
        "quoted": _csv(df, quoting=1),
        "uci": _csv(df, header=False),
        "uci-crlf": _csv(df, header=False).replace(b"\n", b"\r\n"),
    }
    for name, data in variants.items():
        got = validate_frame(read_csv_bytes(data, source=name), require_label=True)
        pd.testing.assert_frame_equal(got.features, expected.features, obj=name)
        assert list(got.labels) == list(expected.labels), name
    assert read_csv_bytes(_csv(df, header=False)).attrs["layout"] == "uci"
    # features only, no header: also accepted (the 22 features in dataset order)
    feats_only = read_csv_bytes(_csv(df[FEATURES], header=False))
    pd.testing.assert_frame_equal(validate_frame(feats_only).features, expected.features)


@pytest.mark.parametrize("data, pattern", [
    (b"", "is empty"),
    (b"\n \n", "is empty"),
    (b"\x00\x01\x02PK\x03\x04" * 50, "binary"),
    (b'[{"odor": "a"}]', "JSON"),
    (b'{"odor": "a"}', "JSON"),
    ("odor;habitat\na;g\n".encode(), "delimiter"),
    ("odor\thabitat\na\tg\n".encode(), "delimiter"),
    ("cap-shape,odor\nx,a\nx\n".encode(), "line 3 has 1 fields"),
    ("cap-shape,odor\n\nx,a\nx\n".encode(), "line 4 has 1 fields"),  # blank lines still count
    ("cap-shape,odor\nx,\xe9\n".encode("latin-1"), "line 2 is not UTF-8"),
    ("cap-shape,odor\nx,a\n".encode("utf-16"), "UTF-16"),
])
def test_format_problems_are_one_clear_sentence(data, pattern):
    with pytest.raises(SchemaError, match=pattern) as err:
        read_csv_bytes(data, source="in.csv")
    assert "\n" not in str(err.value)


def test_size_cap():
    with pytest.raises(SchemaError, match="size cap"):
        read_csv_bytes(b"x" * 2000, size_cap=1000)


def test_describe():
    assert describe("odor", "f") == "foul" and describe("stalk-root", "?") == "missing"

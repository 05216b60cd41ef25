"""`mushroom predict` reads a file in the usual layout from its bytes and anything else with the general reader;
a user cannot tell which: same bytes out, same answers as the Pipeline plus the safety rules, and every refusal
is schema's sentence (row, column, value), exit 2, nothing written.

No timings here: speed lives in benchmarks/bench_speed.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from helpers.cli import one_error_line, run_main
from helpers.predict import csv_bytes, in_memory

from mushroom_lib.batch.predict import predict_file
from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.schema import CODES, FEATURES, SchemaError
from mushroom_lib.model import pipeline as M
from mushroom_lib.model import rules
from mushroom_lib.model.known import OFFSET
from mushroom_lib.registry.versions import Registry


@pytest.fixture(scope="module")
def home(_trained_template):
    """The trained template home, read-only here."""
    return _trained_template


@pytest.fixture(scope="module")
def rows(home) -> pd.DataFrame:
    """3000 real rows (class + features) in a random order."""
    data = pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    return data.sample(3000, random_state=11).reset_index(drop=True)


_csv, _in_memory = csv_bytes, in_memory


def _predict(home, src, out, **kw) -> tuple[bytes, str]:
    """(output bytes, the reader that read the file) of predict_file; small chunks cross many boundaries."""
    stages: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predict_file(get_settings(home), src, out, stages=stages, **kw)
    return out.read_bytes(), stages["reader"]


USUAL = {
    "header": lambda r: _csv(r.drop(columns="class")),
    "header_with_class": lambda r: _csv(r),
    "class_last": lambda r: _csv(r[[*FEATURES, "class"]]),
    "uci_headerless": lambda r: _csv(r, header=False),
    "features_headerless": lambda r: _csv(r.drop(columns="class"), header=False),
    "no_final_newline": lambda r: _csv(r).rstrip(b"\n"),
}


@pytest.mark.parametrize("name", sorted(USUAL))
def test_usual_layout_is_read_from_the_bytes_and_written_as_the_general_reader_writes_it(home, rows, tmp_path,
                                                                                          name):
    src = tmp_path / "in.csv"
    src.write_bytes(USUAL[name](rows))
    fast, reader = _predict(home, src, tmp_path / "fast.csv", chunk_rows=97)
    assert reader == "bytes"
    assert fast == _in_memory(home, src)
    crlf = tmp_path / "crlf.csv"  # the same rows with CRLF line ends: the general reader's file
    crlf.write_bytes(src.read_bytes().replace(b"\n", b"\r\n"))
    general, reader = _predict(home, crlf, tmp_path / "general.csv", block_size=4096, chunk_rows=97)
    assert reader == "general" and general == fast


def test_a_file_the_byte_reader_does_not_take_is_scored_by_the_general_reader(home, rows, tmp_path):
    unusual = rows.copy()
    unusual.loc[2500, "class"] = "poisonous"       # a label word, not a code: kept as given
    unusual.loc[1200, "odor"] = " f"                # padded code: valid once stripped
    src = tmp_path / "in.csv"
    src.write_bytes(_csv(unusual))
    out, reader = _predict(home, src, tmp_path / "o.csv", chunk_rows=500)
    assert reader == "general"
    assert out == _in_memory(home, src)


def test_predict_answers_like_the_pipeline_plus_the_safety_rules(home, rows, tmp_path):
    """Dataset rows and made-up rows unlike any known one, through the `mushroom predict` command."""
    rng = np.random.default_rng(5)
    made_up = pd.DataFrame({f: rng.choice(list(CODES[f]), 400) for f in FEATURES})
    feats = pd.concat([rows.drop(columns="class"), made_up], ignore_index=True)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_bytes(_csv(feats))
    res = run_main("--home", str(home), "predict", str(src), "-o", str(out))
    assert res.returncode == 0, res.stderr
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    reg = Registry(get_settings(home))
    loaded = reg.load(reg.champion())
    p, t, known = M.p_poisonous(loaded.pipeline, feats), loaded.threshold, loaded.known
    codes = np.stack([feats[f].map({c: i for i, c in enumerate(CODES[f])}).to_numpy() for f in FEATURES], axis=1)
    train = pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    unseen = np.array([";".join(f"{f}={r[f]}" for f in FEATURES if r[f] not in set(train[f]))
                       for _, r in feats.iterrows()], dtype=object)  # codes the training data never held
    seen = np.zeros(int(OFFSET[-1]) + len(CODES[FEATURES[-1]]), dtype=bool)
    for j, f in enumerate(FEATURES):  # the codes the training data held
        seen[[int(OFFSET[j]) + i for i, c in enumerate(CODES[f]) if c in set(train[f])]] = True
    ev = rules.evidence(known, seen, codes.astype(np.int16))
    assert list(ev.unseen) == list(unseen)
    called = rules.decide(p, t, ev).called
    assert (got["prediction"].to_numpy() == M.label_words(np.asarray(called))).all()
    assert np.abs(got["p_poisonous"].astype(float).to_numpy() - p).max() <= 1e-9
    assert (got["prediction"].iloc[len(rows):] == "poisonous").mean() > 0.9  # most made-up rows: unlike any known


def _late_problem(rows: pd.DataFrame, kind: str) -> bytes:
    """A file in the usual layout with one problem past the first chunks."""
    feats = rows.drop(columns="class")
    lines = _csv(feats).split(b"\n")
    if kind == "unknown_code":
        lines[2001] = b"z" + lines[2001][1:]
    elif kind == "empty_cell":
        lines[2001] = lines[2001][1:]
    elif kind == "ragged":
        lines[2001] = lines[2001] + b",x"
    elif kind == "not_utf8":
        lines[2001] = b"\xe9" + lines[2001][1:]
    elif kind == "label_integers":
        lines[2001] = b"3" + lines[2001][1:]
    elif kind == "header_only":
        lines = lines[:1] + [b""]
    return b"\n".join(lines)


@pytest.mark.parametrize("kind,words", [
    ("unknown_code", ["row 2001", "'cap-shape'", "'z'", "valid codes"]),
    ("empty_cell", ["row 2001", "'cap-shape'", "empty"]),
    ("ragged", ["line 2002", "23 fields", "the header has 22"]),
    ("not_utf8", ["line 2002", "not UTF-8", "0xe9"]),
    ("label_integers", ["row 2001", "'3'", "label-encoded"]),
    ("header_only", ["no rows"]),
])
def test_a_bad_file_gets_schemas_sentence_exit_2_and_nothing_written(home, rows, tmp_path, kind, words):
    src, out = tmp_path / "bad.csv", tmp_path / "out.csv"
    src.write_bytes(_late_problem(rows, kind))
    with pytest.raises(SchemaError) as whole:
        _in_memory(home, src)
    res = run_main("--home", str(home), "predict", str(src), "-o", str(out))
    line = one_error_line(res)
    assert str(whole.value) in line  # the very sentence the schema gives for the whole file
    for w in words:
        assert w in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # no output, no temporary file
    res = run_main("--home", str(home), "predict", str(src))  # to stdout: nothing written either
    assert one_error_line(res) == line and res.stdout == ""

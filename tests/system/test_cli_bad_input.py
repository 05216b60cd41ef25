"""The real `mushroom` command on bad and awkward input files.

Every bad input gets one sentence on stderr, a non-zero exit and no traceback, and nothing is written:
no -o file, no registry change, no prod_data.csv. The awkward-but-fine inputs (BOM, CRLF, quotes, both
layouts, any column order, extra columns, a class column) are scored like the plain file.
"""

from __future__ import annotations

import io
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import Run, assert_clean_failure, run, run_main, snapshot

from mushroom_lib.data.dataset import synthetic_frame
from mushroom_lib.data.schema import CODES, FEATURES, SchemaError
from mushroom_lib.scoring.scorer import SCORED_COLUMNS

OUT_COLUMNS = list(SCORED_COLUMNS)  # the scored columns, shared contract #1


def run_many(argvs: list[list[str]]) -> list[Run]:
    """Several independent commands at once (each its own process)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda a: run(*a), argvs))


# ---------------------------------------------------------------- the bad inputs
def _csv(df: pd.DataFrame, **kw) -> bytes:
    return df.to_csv(index=False, lineterminator="\n", **kw).encode()


def _base(with_class: bool) -> pd.DataFrame:
    df = synthetic_frame(6, seed=5)
    return df if with_class else df.drop(columns="class")


def _set(df, row, col, value):
    df = df.copy()
    df.loc[row, col] = value
    return df


def _ragged(df):
    lines = _csv(df).splitlines(keepends=True)
    lines[3] = b",".join(lines[3].split(b",")[:-2]) + b"\n"
    return b"".join(lines)


def _ints(df):
    out = df.copy()
    for i, f in enumerate(FEATURES):
        out[f] = (np.arange(len(df)) + i) % 4
    return _csv(out)


def _wide(df, n_columns=200_000):
    """The frame plus empty extra columns up to ``n_columns`` in all."""
    extra = [f"x{i}" for i in range(n_columns - df.shape[1])]
    lines = [",".join([*df.columns, *extra])] + [",".join([*row, *[""] * len(extra)]) for row in df.to_numpy()]
    return ("\n".join(lines) + "\n").encode()


INTERNALS = ("field limit", "pyarrow", "straddl", "ArrowInvalid", "Error:", "set_int_max_str_digits", "(131072)")
PREFIX = "mushroom: error: "

BAD_INPUTS = {
    # name: (bytes from the base frame, substrings the one error line must hold)
    "missing_column": (lambda df: _csv(df.drop(columns="habitat")), ["missing column", "habitat"]),
    "misspelled_column": (lambda df: _csv(df.rename(columns={"odor": "odour"})), ["'odour'", "'odor'"]),
    "duplicated_column": (lambda df: _csv(pd.concat([df, df[["odor"]]], axis=1)), ["'odor' appears 2 times"]),
    "invalid_code": (lambda df: _csv(_set(df, 2, "odor", "z")),
                     ["row 3", "'odor'", "'z'", "valid codes", "a (almond)", "s (spicy)"]),
    "empty_cell": (lambda df: _csv(_set(df, 1, "gill-size", "")), ["row 2", "'gill-size'", "empty", "b (broad)"]),
    "empty_file": (lambda df: b"", ["empty"]),
    "header_only": (lambda df: _csv(df.iloc[:0]), ["no rows"]),
    "ragged_row": (_ragged, ["line 4", "ragged"]),
    "semicolons": (lambda df: _csv(df, sep=";"), ["delimiter", "';'"]),
    "tabs": (lambda df: _csv(df, sep="\t"), ["delimiter"]),
    "latin1_bytes": (lambda df: _csv(df) + ",".join(["x"] * (df.shape[1] - 1) + ["\xe9"]).encode("latin-1")
                     + b"\n", ["not UTF-8", "line 8"]),
    "utf16": (lambda df: _csv(df).decode().encode("utf-16"), ["UTF-16"]),
    "binary": (lambda df: bytes(range(256)) * 8, ["binary"]),
    "json_named_csv": (lambda df: df.to_json(orient="records").encode(), ["JSON"]),
    "label_encoded_ints": (_ints, ["label-encoded"]),
    "over_size_cap": (lambda df: _csv(pd.concat([df] * 20)), ["size cap"]),
    "too_many_columns": (_wide, ["200,000 columns", "over the cap of 1,000"]),
    "five_mb_value": (lambda df: _csv(_set(df, 2, "odor", "z" * 5_000_000)),
                      ["line 4 holds a value longer than 1,000 characters, the cap"]),
}


@pytest.fixture(scope="module")
def served_home(_trained_template, tmp_path_factory) -> Path:
    """One trained home (real data, v0001) shared by the read-only runs of this module."""
    h = tmp_path_factory.mktemp("cli") / "home"
    shutil.copytree(_trained_template, h)
    return h


@pytest.fixture(scope="module")
def bad_runs(served_home, tmp_path_factory):
    """Every bad input through `mushroom predict -o` (the console script, one process each) and
    `mushroom feedback` (cli.main in this process); the home's files before and after."""
    folder = tmp_path_factory.mktemp("bad")
    before = snapshot(served_home)
    argvs = {}
    for name, (build, _) in BAD_INPUTS.items():
        for command in ("predict", "feedback"):
            path = folder / f"{command}-{name}.csv"
            path.write_bytes(build(_base(with_class=command == "feedback")))
            cap = ["--max-mb", "0.002"] if name == "over_size_cap" else []
            out = ["-o", str(folder / f"{command}-{name}.out.csv")] if command == "predict" else []
            argvs[(command, name)] = ["--home", str(served_home), command, str(path), *out, *cap]
    results = {}
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        pending = {k: pool.submit(run, *a) for k, a in argvs.items() if k[0] == "predict"}
        for key, args in argvs.items():
            if key[0] == "feedback":
                results[key] = run_main(*args)
        results.update({k: f.result() for k, f in pending.items()})
    return {"runs": results, "before": before, "after": snapshot(served_home), "folder": folder}


def test_over_size_cap_input_is_really_valid_otherwise(served_home, tmp_path):
    """Guard: the oversized file fails only because of its size."""
    path = tmp_path / "big.csv"
    path.write_bytes(BAD_INPUTS["over_size_cap"][0](_base(False)))
    assert path.stat().st_size > 0.002 * 1024 * 1024
    r = run("--home", str(served_home), "predict", str(path), "--max-mb", "1")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("command", ["predict", "feedback"])
@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_refused_cleanly(bad_runs, name, command):
    r = bad_runs["runs"][(command, name)]
    assert_clean_failure(r, *BAD_INPUTS[name][1])
    assert r.returncode == 2
    assert r.stdout == ""
    assert not (bad_runs["folder"] / f"{command}-{name}.out.csv").exists()  # no partial output


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_predict_and_feedback_refuse_a_file_in_the_same_words(bad_runs, name):
    """One rule in schema: the same caps and the same sentence whichever command reads the file."""
    pred, fb = (assert_clean_failure(bad_runs["runs"][(c, name)]) for c in ("predict", "feedback"))
    strip = lambda line: line.replace("predict-", "").replace("feedback-", "")  # noqa: E731 (file names)
    if name in ("over_size_cap", "too_many_columns", "five_mb_value", "empty_file", "binary", "utf16",
                "json_named_csv", "semicolons", "latin1_bytes"):  # the feedback file's class column shifts others
        assert strip(pred) == strip(fb)
    for line in (pred, fb):
        assert len(line) <= len(PREFIX) + 300, len(line)
        assert not any(word in line for word in INTERNALS), line


def test_bad_inputs_change_nothing_in_the_home(bad_runs, served_home):
    assert bad_runs["after"] == bad_runs["before"]  # registry, champion, prod_data.csv untouched
    assert not (served_home / "data" / "prod_data.csv").exists()
    leftovers = [p for p in bad_runs["folder"].iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert leftovers == []


def test_feedback_label_problems(served_home, tmp_path):
    before = snapshot(served_home)
    df = _base(with_class=True)
    no_label, words_wrong, ints = tmp_path / "nolabel.csv", tmp_path / "maybe.csv", tmp_path / "ints.csv"
    no_label.write_bytes(_csv(df.drop(columns="class")))
    words_wrong.write_bytes(_csv(_set(df, 4, "class", "maybe")))
    ints.write_bytes(_csv(df.assign(**{"class": np.arange(len(df)) % 2})))
    r1, r2, r3 = (run_main("--home", str(served_home), "feedback", str(p)) for p in (no_label, words_wrong, ints))
    assert_clean_failure(r1, "true label", "class")
    assert_clean_failure(r2, "row 5", "'maybe'", "e/edible or p/poisonous")
    assert_clean_failure(r3, "row 1", "label '0'")
    assert snapshot(served_home) == before


def test_missing_champion_says_how_to_train(tmp_path):
    home = tmp_path / "empty"
    home.mkdir()
    path = tmp_path / "in.csv"
    path.write_bytes(_csv(_base(False)))
    fb = tmp_path / "fb.csv"
    fb.write_bytes(_csv(_base(True)))
    r1 = run("--home", str(home), "predict", str(path), "-o", str(tmp_path / "out.csv"))
    r2 = run_main("--home", str(home), "feedback", str(fb))
    for r in (r1, r2):
        assert_clean_failure(r, "mushroom train")
    assert not (tmp_path / "out.csv").exists()
    assert snapshot(home) == {}


def test_no_such_input_file(served_home, tmp_path):
    r = run("--home", str(served_home), "predict", str(tmp_path / "nope.csv"))
    assert_clean_failure(r, "nope.csv", "no such file")


# ---------------------------------------------------------------- fine inputs
@pytest.fixture(scope="module")
def real_rows(served_home) -> pd.DataFrame:
    """40 real rows (class + 22 features) read from the home's dataset at test time."""
    df = pd.read_csv(served_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    return df.sample(40, random_state=3).reset_index(drop=True)


def _read_out(text_or_path) -> pd.DataFrame:
    src = io.StringIO(text_or_path) if isinstance(text_or_path, str) else text_or_path
    return pd.read_csv(src, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def fine_runs(served_home, real_rows, tmp_path_factory):
    """Awkward-but-valid files through the console script (one process each, run side by side)."""
    folder = tmp_path_factory.mktemp("fine")
    feats = real_rows.drop(columns="class")
    flipped = real_rows.assign(**{"class": real_rows["class"].map({"e": "p", "p": "e"})})
    shuffled_cols = list(np.random.default_rng(0).permutation([*real_rows.columns, "site", "picker"]))
    extra = real_rows.assign(site=[f"plot-{i}" for i in range(len(real_rows))], picker="ann")
    variants = {
        "plain": _csv(feats),                                    # scored to stdout (no -o)
        "with_class": _csv(real_rows),
        "class_flipped": _csv(flipped),
        "bom_crlf_quoted": b"\xef\xbb\xbf" + _csv(feats, quoting=1).replace(b"\n", b"\r\n"),
        "uci_headerless": _csv(real_rows, header=False),
        "shuffled_extra": _csv(extra[shuffled_cols]),            # any column order, two extra columns
    }
    argvs = []
    for name, data in variants.items():
        (folder / f"{name}.csv").write_bytes(data)
        out = [] if name == "plain" else ["-o", str(folder / f"{name}.out.csv")]
        argvs.append(["--home", str(served_home), "predict", str(folder / f"{name}.csv"), *out])
    runs = dict(zip(variants, run_many(argvs)))
    return {"runs": runs, "folder": folder, "shuffled_cols": shuffled_cols}


def _out(fine_runs, name) -> pd.DataFrame:
    r = fine_runs["runs"][name]
    assert r.returncode == 0, f"{name}: {r.stderr}"
    assert "Traceback" not in r.stderr
    if name == "plain":
        assert not (fine_runs["folder"] / "plain.out.csv").exists()
        return _read_out(r.stdout)
    return _read_out(fine_runs["folder"] / f"{name}.out.csv")


def test_output_columns_and_values(fine_runs, real_rows):
    out = _out(fine_runs, "with_class")
    assert list(out.columns) == [*real_rows.columns, *OUT_COLUMNS]
    assert set(out["prediction"]) <= {"edible", "poisonous"} and len(out) == len(real_rows)
    p = out["p_poisonous"].astype(float)
    assert ((p >= 0) & (p <= 1)).all()
    assert set(out["model_version"]) == {"v0001"}
    assert set(out["uncertain"]) <= {"True", "False"}
    assert (out["unseen_codes"] == "").all()  # real rows: every code was seen in training
    # the class column is kept as given
    assert list(out["class"]) == list(real_rows["class"])
    # and the champion is good on real rows
    truth = real_rows["class"].map({"e": "edible", "p": "poisonous"})
    assert (out["prediction"] == truth).mean() >= 0.9


def test_without_o_the_csv_goes_to_stdout(fine_runs, real_rows):
    out = _out(fine_runs, "plain")  # parsed from stdout
    assert list(out.columns) == [*FEATURES, *OUT_COLUMNS] and len(out) == len(real_rows)
    pd.testing.assert_frame_equal(out, _out(fine_runs, "with_class").drop(columns="class"))
    assert "warning" not in fine_runs["runs"]["plain"].stderr


def test_class_column_is_kept_but_not_used(fine_runs):
    plain, given, flipped = (_out(fine_runs, n) for n in ("plain", "with_class", "class_flipped"))
    for other in (given, flipped):
        pd.testing.assert_frame_equal(other[OUT_COLUMNS], plain[OUT_COLUMNS])
    assert (given["class"] != flipped["class"]).all()


@pytest.mark.parametrize("name", ["bom_crlf_quoted", "uci_headerless", "shuffled_extra"])
def test_awkward_but_valid_files_score_like_the_plain_one(fine_runs, name):
    plain = _out(fine_runs, "plain")
    out = _out(fine_runs, name)
    pd.testing.assert_frame_equal(out[OUT_COLUMNS], plain[OUT_COLUMNS])
    pd.testing.assert_frame_equal(out[FEATURES], plain[FEATURES])


def test_input_column_order_and_extra_columns_are_kept_and_warned(fine_runs):
    out = _out(fine_runs, "shuffled_extra")
    assert list(out.columns) == [*fine_runs["shuffled_cols"], *OUT_COLUMNS]
    assert list(out["site"]) == [f"plot-{i}" for i in range(len(out))] and set(out["picker"]) == {"ann"}
    warning = [ln for ln in fine_runs["runs"]["shuffled_extra"].stderr.splitlines() if "warning" in ln]
    assert len(warning) == 1 and "site" in warning[0] and "picker" in warning[0]
    assert "class" not in warning[0]  # the class column is expected, not "extra"


def test_unseen_but_valid_code_is_flagged(tmp_path):
    """A home trained on synthetic rows that never show odor=m: a row with odor=m is flagged."""
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.data.dataset import acquire
    from mushroom_lib.training.train import train

    train_rows = synthetic_frame(400, seed=11)
    train_rows = train_rows[train_rows["odor"] != "m"].reset_index(drop=True)
    assert all(set(CODES[f]) == set(train_rows[f]) for f in FEATURES if f != "odor"), "seed lost a code"
    src = tmp_path / "synthetic.csv"
    src.write_bytes(_csv(train_rows))
    home = tmp_path / "synthetic-home"
    settings = get_settings(home, report_on_promote=False)
    with pytest.warns(UserWarning, match="subset"):
        acquire(settings, str(src), progress=False, force=True)
    train(settings)
    query = train_rows.drop(columns="class").iloc[:3].copy()
    query.loc[0, "odor"] = "m"
    query.loc[2, "cap-color"] = "r"  # seen in training: not flagged
    inp = tmp_path / "q.csv"
    inp.write_bytes(_csv(query))
    r = run("--home", str(home), "predict", str(inp))
    assert r.returncode == 0, r.stderr
    out = _read_out(r.stdout)
    assert list(out["unseen_codes"]) == ["odor=m", "", ""]
    assert set(out["prediction"]) <= {"edible", "poisonous"}


# ---------------------------------------------------------------- the library entry point
def _service_cases():
    df = _base(with_class=False)
    ints = pd.DataFrame({f: (np.arange(4) + i) % 4 for i, f in enumerate(FEATURES)})
    return {
        "missing_column": (df.drop(columns="habitat"), "habitat"),
        "misspelled_column": (df.rename(columns={"odor": "odour"}), "'odour' a misspelling of 'odor'"),
        "duplicated_column": (pd.concat([df, df[["odor"]]], axis=1), "'odor' appears 2 times"),
        "invalid_code": (_set(df, 2, "odor", "z"), "row 3, column 'odor' has 'z'"),
        "empty_cell": (_set(df.astype(object), 1, "gill-size", None), "row 2, column 'gill-size' is empty"),
        "nan_cell": (_set(df.astype(object), 1, "gill-size", np.nan), "row 2, column 'gill-size' is empty"),
        "no_columns": (pd.DataFrame(), "no columns"),
        "no_rows": (df.iloc[:0], "no rows"),
        "label_encoded_ints": (ints, "label-encoded"),
        "dict_missing_key": ([{**df.iloc[0].to_dict()}, {k: v for k, v in df.iloc[1].items() if k != "odor"}],
                             "row 2, column 'odor' is empty"),
        "positional_array": (pd.DataFrame(df.to_numpy()), "no header"),
        "one_dict_invalid_code": ({**df.iloc[0].to_dict(), "odor": "z"}, "row 1, column 'odor' has 'z'"),
        "one_dict_missing_key": ({k: v for k, v in df.iloc[0].items() if k != "habitat"}, "habitat"),
        "one_dict_padded_code": ({**df.iloc[0].to_dict(), "odor": "zz "}, "row 1, column 'odor' has 'zz'"),
    }


@pytest.mark.parametrize("name", list(_service_cases()))
def test_model_service_predict_refuses_bad_input(served_home, name):
    from mushroom_lib.service import ModelService

    rows, pattern = _service_cases()[name]
    svc = ModelService(served_home)
    with pytest.raises(SchemaError, match=pattern.replace("(", r"\(").replace(")", r"\)")):
        svc.predict(rows)


def test_model_service_predict_accepts_a_dict_and_a_list(served_home, real_rows):
    from mushroom_lib.service import ModelService

    svc = ModelService(served_home)
    one = real_rows.drop(columns="class").iloc[0].to_dict()
    a = svc.predict(one)
    b = svc.predict([one, one])
    assert len(a) == 1 and len(b) == 2 and a["model_version"][0] == svc.model_version == "v0001"
    assert a["prediction"][0] == b["prediction"][1]


def test_model_service_without_champion(home):
    from mushroom_lib.service import ModelService, NoChampionError

    with pytest.raises(NoChampionError, match="mushroom train"):
        ModelService(home).predict(_base(False))


# ---------------------------------------------------------------- one error style: short, one line, exit 2
def test_many_extra_columns_give_one_short_warning(served_home, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_bytes(_wide(_base(False), 900))  # under the column cap: scored, with one warning
    r = run("--home", str(served_home), "predict", str(path), "-o", str(tmp_path / "out.csv"))
    assert r.returncode == 0, r.stderr
    warning = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(warning) == 1 and warning[0].startswith("mushroom: warning: extra column(s)"), r.stderr
    assert "x0, x1" in warning[0] and "and 873 more" in warning[0] and len(warning[0]) <= 320


def test_a_huge_version_name_is_refused_in_one_short_sentence(served_home):
    r = run_main("--home", str(served_home), "models", "promote", "v" + "1" * 5000)
    line = assert_clean_failure(r, "is not a version name like v0003", "…")
    assert r.returncode == 2 and len(line) <= len(PREFIX) + 300
    assert not any(word in line for word in INTERNALS), line


def test_a_usage_error_is_one_line(served_home):
    r = run_main("--home", str(served_home), "predict")
    assert r.returncode == 2
    assert_clean_failure(r, "input", "--help")


def test_library_errors_quote_long_values_cut(served_home):
    from mushroom_lib.service import ModelService

    rows = _set(_base(with_class=False), 1, "odor", "z" * 5_000_000)
    with pytest.raises(SchemaError) as err:
        ModelService(served_home).predict(rows)
    text = str(err.value)
    assert text.startswith("row 2, column 'odor' has 'zzz") and "…" in text and len(text) <= 300
    assert all(len(p) <= 300 for p in err.value.problems)

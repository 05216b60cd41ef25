"""The fast scoring path answers exactly like the fitted Pipeline, and the streaming file path like the old one.

* ``Scorer`` (lookup-table embedding, distinct rows, fitted KNN / forest, Pipeline fallback for fragile rows)
  gives the Pipeline's labels exactly and p_poisonous within 1e-9: on the whole dataset, on a 200k-row file
  resampled from it (the benchmark checks 1M), for every encoder/classifier the config allows, and for a
  pipeline that is not additive (the Pipeline itself scores).
* ``mushroom predict`` streams: the output does not depend on the block size and equals the in-memory path
  byte for byte; an error in a later block names the row counted from the start of the file; nothing is
  written on bad input.
* ``--engine dask`` gives the same bytes as the local engine (dask's local schedulers).
* The lean one-row path of ``ModelService.predict`` returns what the general path returns, and bad one-row
  input raises the very same SchemaError.

No timings here: speed lives in benchmarks/.
"""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers.predict import csv_bytes, in_memory

from mushroom_lib.batch import csv_reader as batch_reader
from mushroom_lib.batch import predict as P
from mushroom_lib.batch.dask_engine import predict_dask
from mushroom_lib.core.errors import NoChampionError
from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.schema import CODES, FEATURES, SchemaError
from mushroom_lib.model import pipeline as M
from mushroom_lib.registry.versions import LoadedModel, Registry
from mushroom_lib.scoring import loader as plan_cache
from mushroom_lib.scoring.accelerator import KnnRule, LinearEmbedding
from mushroom_lib.scoring.scorer import SCORED_COLUMNS, Scorer, codes_to_frame
from mushroom_lib.service import ModelService

OUT = list(SCORED_COLUMNS)  # the scored columns, shared contract #1


# ---------------------------------------------------------------- helpers
def _dataset(home) -> pd.DataFrame:
    return pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)


def _loaded(home) -> LoadedModel:
    reg = Registry(get_settings(home))
    return reg.load(reg.champion())


def _pipeline_calls(loaded: LoadedModel, frame: pd.DataFrame, p_pipe) -> np.ndarray:
    """'edible'/'poisonous' of the Pipeline's own votes under the safety rules (``rules.decide``)."""
    from mushroom_lib.model import rules
    from mushroom_lib.model.threshold import seen_table
    from mushroom_lib.scoring.scorer import feature_codes

    ev = rules.evidence(loaded.known, seen_table(M.seen_codes(loaded.pipeline)), feature_codes(frame))
    return M.label_words(rules.decide(np.asarray(p_pipe, dtype=float), loaded.threshold, ev).called)


def _assert_same_answers(p_fast, p_pipe, threshold):
    p_fast, p_pipe = np.asarray(p_fast, dtype=float), np.asarray(p_pipe, dtype=float)
    assert np.array_equal(M.decide(p_fast, threshold), M.decide(p_pipe, threshold)), "labels differ"
    assert np.abs(p_fast - p_pipe).max() <= 1e-9


_csv, _in_memory = csv_bytes, in_memory


def _stream(home, path, out, small=False) -> bytes:
    """predict_file; ``small``: 4 KiB reads gathered into chunks of 97 rows (many chunk boundaries)."""
    sizes = {"block_size": 4096, "chunk_rows": 97} if small else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P.predict_file(get_settings(home), path, out, **sizes)
    return out.read_bytes()


@pytest.fixture(scope="module")
def fast_home(_trained_template, tmp_path_factory):
    """A copy of the trained template home shared by this module's tests (what they write stays here)."""
    home = tmp_path_factory.mktemp("fast") / "home"
    shutil.copytree(_trained_template, home)
    return home


@pytest.fixture(scope="module")
def rows(fast_home) -> pd.DataFrame:
    """7000 real rows (class + features) in a random order: enough for a file larger than the 256 KiB head."""
    return _dataset(fast_home).sample(7000, random_state=7).reset_index(drop=True)


# ---------------------------------------------------------------- same answers as the Pipeline
def test_fast_path_equals_pipeline_on_the_whole_dataset(fast_home):
    loaded = _loaded(fast_home)
    scorer = Scorer(loaded)
    df = _dataset(fast_home)
    assert scorer.fast, "the default model must take the fast path"
    _assert_same_answers(scorer.p_poisonous(df), M.p_poisonous(loaded.pipeline, df), loaded.threshold)
    assert np.abs(scorer.pca(df) - loaded.pipeline[:-1].transform(df[FEATURES])).max() <= 1e-9
    scored = scorer.score(df)
    assert list(scored.columns) == OUT
    assert (scored["prediction"] == _pipeline_calls(loaded, df, M.p_poisonous(loaded.pipeline, df))).all()


def test_fast_path_equals_pipeline_on_a_resampled_file(fast_home, tmp_path):
    """200k rows resampled from the data, through `predict_file` (the benchmark checks 1M rows)."""
    df = _dataset(fast_home)
    big = df.iloc[np.random.default_rng(0).integers(0, len(df), 200_000)].reset_index(drop=True)
    src, out = tmp_path / "big.csv", tmp_path / "big.out.csv"
    src.write_bytes(_csv(big))
    _stream(fast_home, src, out)
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    loaded = _loaded(fast_home)
    p_pipe = M.p_poisonous(loaded.pipeline, big)
    assert len(got) == len(big)
    assert (got[list(big.columns)] == big).all().all()  # input columns kept as given, in order
    _assert_same_answers(got["p_poisonous"].astype(float), p_pipe, loaded.threshold)
    assert (got["prediction"] == _pipeline_calls(loaded, big, p_pipe)).all()


CONFIGS = [("onehot", "knn"), ("ordinal", "knn"), ("target", "extra_trees"), ("onehot", "random_forest"),
           ("ordinal", "random_forest"), ("target", "knn")]


@pytest.mark.parametrize("encoder,classifier", CONFIGS)
def test_every_allowed_model_is_exact(fast_home, encoder, classifier):
    """Other encoders/classifiers: exact (the fragile rows, e.g. exact matches under one-hot, go to the Pipeline)."""
    df = _dataset(fast_home)
    train = df.sample(3000, random_state=1)
    cfg = M.ModelConfig(encoder=encoder, classifier=classifier, n_estimators=40, n_components=3)
    pipe = M.build_pipeline(cfg).fit(train[FEATURES], M.to_binary(train["class"]))
    loaded = LoadedModel("v9999", pipe, 0.3, {})
    scorer = Scorer(loaded)
    rng = np.random.default_rng(3)
    random_rows = codes_to_frame(np.stack([rng.integers(0, len(CODES[f]), 1500) for f in FEATURES], axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-hot: codes unseen in training
        for X in (df, random_rows):
            _assert_same_answers(scorer.p_poisonous(X), M.p_poisonous(pipe, X), loaded.threshold)


def test_a_pipeline_that_is_not_additive_is_scored_by_the_pipeline(fast_home):
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    df = _dataset(fast_home)
    pipe = Pipeline([("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                     ("squash", FunctionTransformer(np.tanh)), ("pca", PCA(3, random_state=0)),
                     ("classify", KNeighborsClassifier(10, weights="distance"))])
    pipe.fit(df[FEATURES].iloc[:2000], M.to_binary(df["class"].iloc[:2000]))
    assert LinearEmbedding.from_pipeline(pipe) is None
    scorer = Scorer(LoadedModel("v9998", pipe, 0.5, {}))
    assert not scorer.fast
    _assert_same_answers(scorer.p_poisonous(df), M.p_poisonous(pipe, df), 0.5)


def test_knn_rule_marks_ties_and_zero_distances_and_otherwise_votes_like_sklearn():
    """The KNN vote without scikit-learn's search: same p; rows whose answer hangs on a tie go to the Pipeline."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(300, 3)), [[5.0, 5.0, 5.0]] * 2, [[9.0, 9.0, 9.0]] * 4])
    y = np.r_[rng.integers(0, 2, 300), [0, 1], [0, 1, 0, 1]]
    for weights in ("distance", "uniform"):
        knn = KNeighborsClassifier(3, weights=weights).fit(X, y)
        rule = KnnRule(X, y == 1, 3, weights, threshold=0.3)
        queries = rng.normal(size=(500, 3))
        p, fragile = rule.proba(queries)
        ok = ~fragile
        assert ok.mean() > 0.95
        assert np.abs(p[ok] - knn.predict_proba(queries)[ok, 1]).max() <= 1e-12
        # four identical training points (two of each class) compete for 3 places: a tie between classes
        _, fragile_tie = rule.proba(np.array([[9.0, 9.0, 9.2]]))
        assert fragile_tie.all()
    # a query on a training point (distance 0): sklearn weighs only the exact matches, the Pipeline decides
    _, fragile_zero = KnnRule(X, y == 1, 3, "distance", 0.3).proba(X[:5])
    assert fragile_zero.all()


def test_repeated_rows_are_scored_once(fast_home):
    scorer = Scorer(_loaded(fast_home))
    df = _dataset(fast_home).iloc[:50]
    first = scorer.p_poisonous(pd.concat([df] * 4, ignore_index=True))
    assert scorer.stats["distinct"] == 50
    again = scorer.p_poisonous(df)
    assert scorer.stats["cached"] == 50
    assert np.array_equal(first[:50], again)


# ---------------------------------------------------------------- streaming
def _awkward_files(rows: pd.DataFrame) -> dict[str, bytes]:
    feats = rows.drop(columns="class")
    lines = _csv(feats).split(b"\n")
    padded = feats.copy()
    padded.loc[10, "odor"] = " f "
    note = [f'a, "b" é\n{i % 7}' if i % 997 == 0 else f"n{i % 13}" for i in range(len(feats))]
    return {
        "plain": _csv(feats),
        "with_class": _csv(rows),
        "bom_crlf": b"\xef\xbb\xbf" + _csv(feats).replace(b"\n", b"\r\n"),
        "quoted": _csv(feats, quoting=1),
        "uci_headerless": _csv(rows, header=False),
        "extra_columns": _csv(feats.assign(note=note, prediction="kept?")),
        "blank_lines": b"\n".join(lines[:3000] + [b"", b"   ", b"," * 22, b" , "] + lines[3000:]),
        "padded_code": _csv(padded),
    }


@pytest.mark.parametrize("name", ["plain", "with_class", "bom_crlf", "quoted", "uci_headerless", "extra_columns",
                                  "blank_lines", "padded_code"])
def test_streaming_output_equals_non_streaming(fast_home, rows, tmp_path, name):
    src = tmp_path / f"{name}.csv"
    src.write_bytes(_awkward_files(rows)[name])
    whole = _in_memory(fast_home, src)
    assert _stream(fast_home, src, tmp_path / "a.csv", small=True) == whole  # many small chunks
    assert _stream(fast_home, src, tmp_path / "b.csv") == whole                # one chunk


def _bad(df, row, col, value):
    df = df.copy()
    df.loc[row, col] = value
    return df


@pytest.mark.parametrize("row,col,value,words", [
    (6500, "odor", "z", ["row 6501", "'odor'", "'z'", "valid codes"]),
    (5999, "gill-size", "", ["row 6000", "'gill-size'", "empty"]),
    (0, "habitat", "Q", ["row 1", "'habitat'", "'Q'"]),
])
def test_errors_in_a_later_block_name_the_row_in_the_file(fast_home, rows, tmp_path, row, col, value, words):
    src, out = tmp_path / "bad.csv", tmp_path / "bad.out.csv"
    src.write_bytes(_csv(_bad(rows.drop(columns="class"), row, col, value)))
    with pytest.raises(SchemaError) as streamed:
        _stream(fast_home, src, out, small=True)
    for w in words:
        assert w in str(streamed.value)
    assert streamed.value.row == row + 1 and streamed.value.column == col
    with pytest.raises(SchemaError) as whole:
        _in_memory(fast_home, src)
    assert str(streamed.value) == str(whole.value)  # one bad cell: the very same sentence
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.csv"]  # no output, no temp file


def test_blank_lines_do_not_count_as_rows(fast_home, rows, tmp_path):
    feats = _bad(rows.drop(columns="class"), 4000, "odor", "z")
    lines = _csv(feats).split(b"\n")
    src = tmp_path / "blank.csv"
    src.write_bytes(b"\n".join(lines[:100] + [b"", b"", b",,"] + lines[100:]))
    with pytest.raises(SchemaError, match="row 4001, column 'odor'") as streamed:
        _stream(fast_home, src, tmp_path / "o.csv", small=True)
    with pytest.raises(SchemaError) as whole:
        _in_memory(fast_home, src)
    assert str(streamed.value) == str(whole.value)


def test_ragged_row_and_bad_bytes_after_the_head_name_their_line(fast_home, rows, tmp_path, monkeypatch):
    monkeypatch.setattr(batch_reader, "HEAD_BYTES", 8192)  # the schema reads the head itself; these problems lie past it
    lines = _csv(rows.drop(columns="class")).split(b"\n")
    cases = {"ragged": lines[:6000] + [b"x,y"] + lines[6000:],
             "ragged_after_blanks": lines[:5000] + [b"", b""] + lines[5000:6000] + [b"x,y"] + lines[6000:],
             "latin1": lines[:6500] + [",".join(["x"] * 21 + ["\xe9"]).encode("latin-1")] + lines[6500:]}
    for name, body in cases.items():
        src = tmp_path / f"{name}.csv"
        src.write_bytes(b"\n".join(body))
        with pytest.raises(SchemaError) as streamed:
            _stream(fast_home, src, tmp_path / "o.csv", small=True)
        with pytest.raises(SchemaError) as whole:
            _in_memory(fast_home, src)
        assert str(streamed.value) == str(whole.value), name
        assert not (tmp_path / "o.csv").exists()


def test_stdout_gets_nothing_when_a_later_block_is_bad(fast_home, rows, tmp_path, capfdbinary):
    src = tmp_path / "bad.csv"
    src.write_bytes(_csv(_bad(rows.drop(columns="class"), 6900, "odor", "z")))
    with pytest.raises(SchemaError, match="row 6901"):
        P.predict_file(get_settings(fast_home), src, None, block_size=4096, chunk_rows=97)
    assert capfdbinary.readouterr().out == b""
    good = tmp_path / "good.csv"
    good.write_bytes(_csv(rows.drop(columns="class").iloc[:300]))
    P.predict_file(get_settings(fast_home), good, None, block_size=4096, chunk_rows=97)
    assert capfdbinary.readouterr().out == _in_memory(fast_home, good)


# ---------------------------------------------------------------- the saved scoring plan
def test_second_predict_scores_from_the_saved_plan_without_scikit_learn(trained_home, rows, tmp_path):
    import subprocess
    import sys

    settings = get_settings(trained_home)
    src = tmp_path / "in.csv"
    src.write_bytes(_csv(rows))
    first = _stream(trained_home, src, tmp_path / "first.csv")
    plans = list((trained_home / "artifacts" / "cache").glob("scoring-v0001-*.npz"))
    assert len(plans) == 1
    scorer = plan_cache.champion_scorer(settings)
    assert scorer.from_saved_plan and not scorer.model_loaded
    code = ("import sys, warnings; warnings.simplefilter('ignore');"
            "from mushroom_lib.batch.predict import predict_file; from mushroom_lib.core.settings import get_settings;"
            f"predict_file(get_settings({str(trained_home)!r}), {str(src)!r}, {str(tmp_path / 'second.csv')!r});"
            "print(sorted(m for m in ('sklearn', 'skops') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"  # neither imported: the plan was enough
    assert (tmp_path / "second.csv").read_bytes() == first


def test_a_plan_is_used_only_for_the_registered_model_file(trained_home, rows, tmp_path):
    settings = get_settings(trained_home)
    src = tmp_path / "in.csv"
    src.write_bytes(_csv(rows.iloc[:50]))
    _stream(trained_home, src, tmp_path / "o.csv")
    assert plan_cache.champion_scorer(settings).from_saved_plan
    model = trained_home / "artifacts" / "models" / "v0001" / "model.skops"
    model.write_bytes(model.read_bytes() + b"tampered")
    with pytest.raises(NoChampionError, match="does not match the sha256"):
        plan_cache.champion_scorer(settings)  # the registry refuses the changed file; the plan is not used


def test_fragile_rows_from_a_plan_load_the_pipeline(tmp_path, real_data):
    """One-hot + KNN: dataset rows sit at distance 0 from training points, so the Pipeline decides them."""
    from mushroom_lib.data.dataset import acquire
    from mushroom_lib.training.train import train

    home = tmp_path / "onehot"
    settings = get_settings(home, report_on_promote=False)
    acquire(settings, str(real_data), progress=False)
    train(settings, M.ModelConfig(encoder="onehot"))
    df = _dataset(home).iloc[:400]
    src = tmp_path / "in.csv"
    src.write_bytes(_csv(df))
    first = _stream(home, src, tmp_path / "first.csv")
    scorer = plan_cache.champion_scorer(settings)
    assert scorer.from_saved_plan and not scorer.model_loaded
    p = scorer.p_poisonous(df)
    assert scorer.model_loaded and scorer.stats["pipeline"] > 0
    loaded = _loaded(home)
    _assert_same_answers(p, M.p_poisonous(loaded.pipeline, df), loaded.threshold)
    assert _stream(home, src, tmp_path / "second.csv") == first


# ---------------------------------------------------------------- dask
def _need_dask() -> None:
    """dask is a test dependency in CI (the extra is installed there): missing, the test fails, never skips."""
    if os.environ.get("CI"):
        import dask.dataframe  # noqa: F401
    else:
        pytest.importorskip("dask.dataframe")


def test_dask_engine_equals_the_local_engine(fast_home, rows, tmp_path):
    _need_dask()
    settings = get_settings(fast_home)
    src = tmp_path / "in.csv"
    src.write_bytes(_awkward_files(rows)["extra_columns"])
    local = _stream(fast_home, src, tmp_path / "local.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = predict_dask(settings, src, tmp_path / "dask.csv", blocksize=60_000, scheduler="threads")
    assert n == len(rows) and (tmp_path / "dask.csv").read_bytes() == local
    # a folder of files (and a glob) = the files one after the other
    folder = tmp_path / "parts"
    folder.mkdir()
    feats = rows.drop(columns="class")
    for i in range(3):
        (folder / f"part-{i}.csv").write_bytes(_csv(feats.iloc[i * 1000:(i + 1) * 1000]))
    whole = tmp_path / "whole.csv"
    whole.write_bytes(_csv(feats.iloc[:3000]))
    local = _stream(fast_home, whole, tmp_path / "local3.csv")
    for inp in (folder, folder / "part-*.csv"):
        predict_dask(settings, inp, tmp_path / "dask3.csv", blocksize=30_000, scheduler="sync")
        assert (tmp_path / "dask3.csv").read_bytes() == local


def test_dask_engine_names_the_row_in_the_file(fast_home, rows, tmp_path):
    _need_dask()
    src, out = tmp_path / "bad.csv", tmp_path / "o.csv"
    src.write_bytes(_csv(_bad(rows.drop(columns="class"), 6500, "odor", "z")))
    with pytest.raises(SchemaError) as err:
        predict_dask(get_settings(fast_home), src, out, blocksize=40_000, scheduler="threads")
    with pytest.raises(SchemaError) as whole:
        _in_memory(fast_home, src)
    assert str(err.value) == str(whole.value)
    assert not out.exists()


def test_dask_missing_says_how_to_install_it(fast_home, rows, tmp_path, monkeypatch):
    src = tmp_path / "in.csv"
    src.write_bytes(_csv(rows.iloc[:20]))
    monkeypatch.setitem(__import__("sys").modules, "dask", None)  # `import dask` now fails
    with pytest.raises(ImportError, match=r"pip install .*\[dask\]"):
        P.predict_file(get_settings(fast_home), src, tmp_path / "o.csv", engine="dask")
    assert not (tmp_path / "o.csv").exists()


# ---------------------------------------------------------------- one row
def _general(svc, rows):
    """ModelService.predict without the lean one-row path."""
    scorer = svc.scorer
    lean = scorer.predict_one
    scorer.predict_one = lambda _rows: None
    try:
        return svc.predict(rows)
    finally:
        scorer.predict_one = lean


def test_one_row_path_returns_what_the_general_path_returns(fast_home, rows):
    svc = ModelService(fast_home)
    one = rows.drop(columns="class").iloc[3].to_dict()
    cases = [one, {"class": "p", **one, "site": "plot 7", "prediction": "old"},
             {**one, "odor": f" {one['odor']} "}, {k.upper(): v for k, v in one.items()},
             rows.iloc[[5]], rows.drop(columns="class").iloc[[8]].set_index(pd.Index([42]))]
    for case in cases:
        quick = svc.scorer.predict_one(case)
        assert quick is not None
        pd.testing.assert_frame_equal(quick, _general(svc, case))
        pd.testing.assert_frame_equal(svc.predict(case), quick)


@pytest.mark.parametrize("change", ["bad_code", "empty", "none", "int", "missing", "duplicate", "ints_frame"])
def test_bad_one_row_input_raises_the_same_error(fast_home, rows, change):
    svc = ModelService(fast_home)
    one = rows.drop(columns="class").iloc[0].to_dict()
    case = {"bad_code": {**one, "odor": "z"}, "empty": {**one, "gill-size": ""}, "none": {**one, "habitat": None},
            "int": {**one, "ring-number": 1}, "missing": {k: v for k, v in one.items() if k != "odor"},
            "duplicate": {**one, "ODOR": "f"},
            "ints_frame": pd.DataFrame([{f: i % 3 for i, f in enumerate(FEATURES)}])}[change]
    assert svc.scorer.predict_one(case) is None  # the lean path declines; the general path explains
    with pytest.raises(SchemaError) as quick:
        svc.predict(case)
    with pytest.raises(SchemaError) as general:
        _general(svc, case)
    assert str(quick.value) == str(general.value)

"""One implementation of the rules: every surface answers a row the same way (prediction, uncertain,
nearest_known, reason). Hypothesis draws rows (known, one feature away, random, unseen codes); each example is
scored one row at a time (svc.predict(dict), a one-row DataFrame, POST /predict, the dashboard grid's edit) and
as a batch (svc.predict(DataFrame), `mushroom predict` on one file, POST /predict, the dashboard's ModelSource)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mushroom_lib.api.app import create_app
from mushroom_lib.core.settings import get_settings
from mushroom_lib.dashboard.source import ModelSource
from mushroom_lib.dashboard.state import GridState, Upload
from mushroom_lib.data.schema import CODES, FEATURES, validate_frame
from mushroom_lib.service import ModelService

COLUMNS = ["prediction", "uncertain", "nearest_known", "reason"]
#: x s g f n f w b k t e s s w w p w o e r a g: odor none, green spore print, one feature from an edible one
GREEN = dict(zip(FEATURES, ["x", "s", "g", "f", "n", "f", "w", "b", "k", "t", "e", "s", "s", "w", "w", "p", "w", "o",
                            "e", "r", "a", "g"], strict=True))


def answers(frame: pd.DataFrame) -> list[tuple]:
    """The compared columns as plain strings (a CSV reads them back as text)."""
    out = frame[COLUMNS].astype(str).replace({"True": "True", "False": "False"})
    return [tuple(r) for r in out.to_numpy().tolist()]


@pytest.fixture
def surfaces(trained_home, tmp_path):
    svc = ModelService(trained_home)
    client = TestClient(create_app(get_settings(trained_home), api_key=None))
    source = ModelSource(get_settings(trained_home))
    dataset = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    yield svc, client, source, dataset[FEATURES], tmp_path
    svc.close()


def rows_from(dataset: pd.DataFrame):
    """A strategy of rows: known, one feature away (any valid code), random, one unseen code."""
    n = len(dataset)
    seen = {f: sorted(set(dataset[f])) for f in FEATURES}
    unseen = [(f, c) for f in FEATURES for c in CODES[f] if c not in seen[f]]
    known = st.integers(0, n - 1).map(lambda i: dataset.iloc[i].to_dict())
    feature = st.sampled_from(FEATURES)

    def moved(args):
        row, f, k = args
        codes = list(CODES[f])
        return {**row, f: codes[k % len(codes)]}

    one_away = st.tuples(known, feature, st.integers(0, 11)).map(moved)
    rand = st.fixed_dictionaries({f: st.sampled_from(seen[f]) for f in FEATURES})
    with_unseen = st.tuples(known, st.sampled_from(unseen)).map(lambda a: {**a[0], a[1][0]: a[1][1]})
    return st.one_of(known, one_away, rand, with_unseen)


def grid_edit(source, row: dict) -> pd.Series:
    """The dashboard grid's path: a grid holding the green-spore row, edited cell by cell into ``row``; each
    edit scores the row as it stands (``GridState.edit``), so the last one that changed a cell scores it whole."""
    base = pd.DataFrame([GREEN])[FEATURES]
    state = GridState()
    scored = source.score(base)
    state.load(Upload(base, None, pd.DataFrame(index=base.index)), scored, "drawn.csv")
    last = scored.iloc[0]
    for f in FEATURES:
        edit = state.edit(0, f, row[f], source.score)
        if edit is not None:
            assert edit.refused is None, edit.refused
            last = edit.scored
    return last


def one_at_a_time(svc, client, source, rows: list[dict]) -> dict[str, list[tuple]]:
    out = {"svc.predict(dict)": [], "svc.predict(one-row DataFrame)": [], "POST /predict (one row)": [],
           "dashboard grid edit": []}
    for row in rows:
        out["svc.predict(dict)"] += answers(svc.predict(dict(row)))
        out["svc.predict(one-row DataFrame)"] += answers(svc.predict(pd.DataFrame([row])))
        body = client.post("/predict", json={"rows": [row]}).json()
        out["POST /predict (one row)"] += answers(pd.DataFrame(body["predictions"]))
        out["dashboard grid edit"] += answers(grid_edit(source, row).to_frame().T)
    return out


def batch(svc, client, source, rows: list[dict], folder) -> dict[str, list[tuple]]:
    frame = pd.DataFrame(rows)[FEATURES]
    inp, outp = folder / "drawn.csv", folder / "scored.csv"
    frame.to_csv(inp, index=False)
    cli = run("--home", str(svc.settings.home), "predict", str(inp), "-o", str(outp))
    assert cli.returncode == 0, cli.stderr
    body = client.post("/predict", json={"rows": rows}).json()
    return {"svc.predict(DataFrame)": answers(svc.predict(frame)),
            "mushroom predict (file)": answers(pd.read_csv(outp, dtype=str, keep_default_na=False)),
            "POST /predict (rows)": answers(pd.DataFrame(body["predictions"])),
            "dashboard ModelSource.score": answers(source.score(validate_frame(frame).features))}


def test_every_surface_gives_the_same_answer(surfaces):
    svc, client, source, dataset, folder = surfaces

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(rows_from(dataset), min_size=2, max_size=10))
    def check(rows):
        rows = rows + [GREEN]
        got = {**one_at_a_time(svc, client, source, rows), **batch(svc, client, source, rows, folder)}
        want = got["svc.predict(DataFrame)"]
        for name, answer in got.items():
            assert answer == want, f"{name} differs from svc.predict(DataFrame)"

    check()


def test_the_green_spore_row_is_poisonous_with_its_reason_everywhere(surfaces):
    svc, client, source, _, folder = surfaces
    got = {**one_at_a_time(svc, client, source, [GREEN]), **batch(svc, client, source, [GREEN], folder)}
    model_line = svc.identify(dict(GREEN))["model"]
    got["identify model line"] = [tuple(str(model_line[c]) for c in COLUMNS)]
    for name, ((prediction, uncertain, _, reason),) in got.items():
        assert (prediction, uncertain) == ("poisonous", "True"), name
        assert reason.startswith("every one of the ") and "spore-print-color=r (green) is poisonous" in reason, name
    assert np.all(svc.predict(dict(GREEN))["p_poisonous"] < 0.5)  # the model alone would call it edible

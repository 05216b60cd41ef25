"""The REST API's contract: FastAPI's TestClient against create_app over a trained home, plus a real
`mushroom api --workers 2` on a free 127.0.0.1 port (feedback through HTTP -> retrain -> both workers serve it)."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers.server import ServerProcess

from mushroom_lib.api import create_app
from mushroom_lib.cli import commands as cli
from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import load_dataset
from mushroom_lib.data.schema import (
    CODES,
    FEATURES,
    LABELS,
    SchemaError,
    validate_frame,
)
from mushroom_lib.service import ModelService

KEY = "s3cret-key"


def make_client(home, **kwargs) -> TestClient:
    kwargs.setdefault("api_key", None)
    return TestClient(create_app(get_settings(home), **kwargs), raise_server_exceptions=False)


@pytest.fixture
def client(trained_home):
    with make_client(trained_home) as c:
        yield c


@pytest.fixture
def dataset(trained_home) -> pd.DataFrame:
    return load_dataset(get_settings(trained_home))


def rows_of(df: pd.DataFrame, n: int, label: bool = False) -> list[dict]:
    cols = ["class", *FEATURES] if label else FEATURES
    return df[cols].head(n).to_dict("records")


# ---------------------------------------------------------------- probes and docs
def test_health_ready_and_docs(client):
    assert client.get("/health").json()["status"] == "alive"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == "v0001"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    doc = client.get("/openapi.json").json()
    mushroom = doc["components"]["schemas"]["Mushroom"]["properties"]
    assert list(mushroom) == FEATURES
    assert mushroom["odor"]["enum"] == list(CODES["odor"]) and "f (foul)" in mushroom["odor"]["description"]
    observation = doc["components"]["schemas"]["SeedPredictRequest"]["properties"]["observation"]
    assert [i["title"] for i in observation["prefixItems"]] == FEATURES


def test_not_ready_before_a_champion(home):
    with make_client(home) as c:
        assert c.get("/health").status_code == 200
        ready = c.get("/ready")
        assert ready.status_code == 503 and "mushroom train" in ready.json()["detail"]
        assert str(home) not in ready.text  # paths in the home are shown relative to it
        row = {f: next(iter(CODES[f])) for f in FEATURES}
        assert c.post("/predict", json={"rows": [row]}).status_code == 503
        assert c.get("/status").json()["model_version"] is None


# ---------------------------------------------------------------- predict
def test_predict_json_returns_every_library_column(client, trained_home, dataset):
    rows = rows_of(dataset, 50)
    res = client.post("/predict", json={"rows": rows})
    assert res.status_code == 200
    body = res.json()
    expected = ModelService(trained_home).predict(rows)
    got = pd.DataFrame(body["predictions"])
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert body["model_version"] == "v0001"
    poisonous = dataset["class"].head(50).to_numpy() == "p"
    assert (got["prediction"][poisonous] == "poisonous").all()  # none of the known poisonous rows called edible


def test_one_row_predict_equals_the_library(client, trained_home, dataset):
    svc = ModelService(trained_home)
    for i in (0, 7, 4000):
        row = {"id": f"m{i}", **dataset[FEATURES].iloc[i].to_dict()}
        row["odor"] = f" {row['odor']} "  # the library strips codes and echoes the input as sent
        got = client.post("/predict", json={"rows": [row]}).json()["predictions"]
        assert got == svc.predict([row]).to_dict("records")


@pytest.mark.parametrize("layout", ["header", "uci"])
def test_predict_csv_is_the_same_csv_as_mushroom_predict(client, trained_home, dataset, tmp_path, layout):
    src = tmp_path / "in.csv"
    part = dataset.head(300)
    part.to_csv(src, index=False, header=layout == "header")
    out = tmp_path / "out.csv"
    assert cli.main(["--home", str(trained_home), "predict", str(src), "-o", str(out)]) == 0
    res = client.post("/predict", content=src.read_bytes(), headers={"Content-Type": "text/csv"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    assert res.content == out.read_bytes()


def test_bad_row_gets_the_librarys_sentence(client, dataset):
    rows = rows_of(dataset, 3)
    rows[2]["odor"] = "q"
    res = client.post("/predict", json={"rows": rows})
    with pytest.raises(SchemaError) as expected:
        validate_frame(pd.DataFrame(rows))
    assert res.status_code == 422
    assert res.json() == {"detail": str(expected.value)}
    assert "row 3" in res.json()["detail"] and "'odor'" in res.json()["detail"] and "'q'" in res.json()["detail"]


@pytest.mark.parametrize("body, content_type, status", [
    (b"{not json", "application/json", 422),
    (b'{"rows": []}', "application/json", 422),
    (b'{"rows": [1, 2]}', "application/json", 422),
    (b'{"rows": [{"odor": {"deep": [1]}}]}', "application/json", 422),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 422),
    (b'{"observation": [0, 1]}', "application/json", 422),
    (b'{"observation": [true' + b", 0" * 21 + b"]}", "application/json", 422),
    (b"\x00\x01\x02binary", "text/csv", 422),
    (b"cap-shape;odor\nx;f\n", "text/csv", 422),
    (b"<xml/>", "application/xml", 415),
])
def test_client_garbage_never_causes_a_server_error(client, body, content_type, status):
    res = client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert res.status_code == status
    detail = res.json()["detail"]
    assert isinstance(detail, str) and 0 < len(detail) <= 300 and "Traceback" not in detail


def test_extra_columns_are_echoed_even_when_not_json_numbers(client, dataset):
    rows = rows_of(dataset, 2)
    body = json.dumps({"rows": [{**rows[0], "weight": float("inf")}, {**rows[1], "id": "b"}]})  # "Infinity"
    res = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert res.status_code == 200
    first, second = res.json()["predictions"]
    assert first["weight"] is None and second["weight"] is None and second["id"] == "b"
    assert first["prediction"] == "poisonous"


def test_unexpected_errors_are_one_neutral_sentence(trained_home, dataset, monkeypatch):
    def broken(self, rows, **kw):
        raise RuntimeError(f"{trained_home}/secret/place exploded")

    monkeypatch.setattr(ModelService, "predict", broken)
    with make_client(trained_home) as c:
        res = c.post("/predict", json={"rows": rows_of(dataset, 2)})
    assert res.status_code == 500
    assert "secret" not in res.text and str(trained_home) not in res.text and "Traceback" not in res.text


# ---------------------------------------------------------------- the seed's protocol
def label_encoded(df: pd.DataFrame) -> pd.DataFrame:
    """The seed's encoding, independently: scikit-learn's LabelEncoder per column over mushrooms.csv."""
    from sklearn.preprocessing import LabelEncoder

    return pd.DataFrame({f: LabelEncoder().fit(df[f]).transform(df[f]) for f in FEATURES})


def test_seed_predict_answers_in_the_seeds_shape(client, trained_home, dataset):
    encoded = label_encoded(dataset)
    for i in (0, 1, 2, 3):
        res = client.post("/predict", json={"observation": [int(v) for v in encoded.iloc[i]]})
        assert res.status_code == 200
        body = res.json()
        ours = ModelService(trained_home).predict(dataset[FEATURES].iloc[i].to_dict()).iloc[0]
        assert body["prediction"] == ours["prediction"].capitalize()
        assert body["p_poisonous"] == pytest.approx(ours["p_poisonous"]) and body["model_version"] == "v0001"


def test_seed_integer_out_of_range_names_column_and_range(client, dataset):
    observation = [0] * 22
    observation[FEATURES.index("odor")] = 9
    res = client.post("/predict", json={"observation": observation})
    assert res.status_code == 422
    detail = res.json()["detail"]
    assert "'odor'" in detail and "0 to 8" in detail


def test_seed_feedback_is_stored_with_true_meaning_poisonous(client, trained_home, dataset):
    encoded = label_encoded(dataset)
    i = int(np.flatnonzero(dataset["class"].to_numpy() == "e")[0])
    body = {"observation": [int(v) for v in encoded.iloc[i]], "prediction": "Edible", "target": "True"}
    res = client.post("/feedback", json=body)
    assert res.status_code == 200 and res.json()["rows_written"] == 1
    stored = pd.read_csv(get_settings(trained_home).prod_path, dtype=str)
    assert stored["target"].tolist() == ["poisonous"]
    assert stored[FEATURES].iloc[0].tolist() == dataset[FEATURES].iloc[i].tolist()
    assert res.json()["contradictions"] == 1  # the dataset says edible


# ---------------------------------------------------------------- feedback, size cap
def test_feedback_receipt_and_retrain_in_the_background(client, trained_home, dataset):
    rows = rows_of(dataset.iloc[100:], 10, label=True)
    first = client.post("/feedback", json={"rows": rows[:9]}).json()
    assert first["rows_written"] == 9 and first["rows_until_retrain"] == 1 and not first["retrain_pending"]
    csv = pd.DataFrame(rows[9:]).to_csv(index=False)
    second = client.post("/feedback", content=csv, headers={"Content-Type": "text/csv"}).json()
    assert second["rows_written"] == 1 and second["retrain_pending"] and not second["retrained"]
    assert second["model_version"] == "v0001"  # answered before the retrain finished


def test_feedback_without_class_is_refused_and_nothing_written(client, trained_home, dataset):
    res = client.post("/feedback", json={"rows": rows_of(dataset, 2)})
    assert res.status_code == 422 and "class" in res.json()["detail"]
    assert not get_settings(trained_home).prod_path.exists()


def test_body_over_the_cap_is_refused_before_parsing(trained_home, dataset):
    body = json.dumps({"rows": rows_of(dataset, 200, label=True)}).encode()
    with make_client(trained_home, max_body_bytes=10_000) as c:
        declared = c.post("/feedback", content=body, headers={"Content-Type": "application/json"})
        chunked = c.post("/feedback", content=iter([body[i:i + 1000] for i in range(0, len(body), 1000)]),
                         headers={"Content-Type": "application/json"})
        small = c.post("/predict", json={"rows": rows_of(dataset, 1)})
    assert declared.status_code == 413 and "size cap" in declared.json()["detail"]
    assert chunked.status_code == 413
    assert small.status_code == 200
    assert not get_settings(trained_home).prod_path.exists()


# ---------------------------------------------------------------- keys
def test_writes_need_the_key_reads_stay_open(trained_home, dataset):
    with make_client(trained_home, api_key=KEY) as c:
        rows = {"rows": rows_of(dataset, 1, label=True)}
        assert c.post("/feedback", json=rows).status_code == 401
        assert c.post("/feedback", json=rows, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/models/rollback").status_code == 401
        assert c.post("/models/v0001/promote").status_code == 401
        assert c.post("/feedback", json=rows, headers={"X-API-Key": KEY}).status_code == 200
        assert c.post("/predict", json={"rows": rows_of(dataset, 1)}).status_code == 200
        assert c.get("/status").status_code == 200


def test_key_for_reads_closes_reads_but_not_probes(trained_home, dataset):
    with make_client(trained_home, api_key=KEY, key_for_reads=True) as c:
        assert c.post("/predict", json={"rows": rows_of(dataset, 1)}).status_code == 401
        assert c.get("/status").status_code == 401 and c.get("/models").status_code == 401
        assert c.post("/identify", json={"odor": "a"}).status_code == 401 and c.get("/feedback").status_code == 401
        assert c.post("/identify", json={"odor": "a"}, headers={"X-API-Key": KEY}).json()["prediction"] == "edible"
        ok = c.post("/predict", json={"rows": rows_of(dataset, 1)}, headers={"X-API-Key": KEY})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200


def test_non_loopback_without_a_key_refuses_to_start(trained_home, monkeypatch, capsys):
    monkeypatch.delenv("MUSHROOM_API_KEY", raising=False)
    assert cli.main(["--home", str(trained_home), "api", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MUSHROOM_API_KEY" in err and "0.0.0.0" in err


# ---------------------------------------------------------------- identify
def test_identify_almond_odor_is_edible_like_every_matching_known_mushroom(client, trained_home, dataset):
    res = client.post("/identify", json={"odor": "a"})
    assert res.status_code == 200
    body = res.json()
    almond = dataset[dataset["odor"] == "a"]
    assert (body["prediction"], body["matching_known"], body["matching_poisonous"]) == ("edible", 400, 0)
    assert len(almond) == 400 and (almond["class"] == "e").all()  # what the answer claims, from the data
    assert body["ask_next"] is None and body["given"] == {"odor": "a"} and "not advice" in body["note"]
    assert "model" not in body  # only with all 22 features
    assert body == ModelService(trained_home).identify({"odor": "a"})


def test_identify_no_odor_is_poisonous_and_asks_the_next_question(client, dataset):
    body = client.post("/identify", json={"odor": "n", "cap-color": "unknown", "habitat": None}).json()
    none = dataset[dataset["odor"] == "n"]
    assert body["prediction"] == "poisonous" and body["given"] == {"odor": "n"}  # unknown and null stay open
    assert body["matching_known"] == len(none) and body["matching_poisonous"] == int((none["class"] == "p").sum()) > 0
    ask = body["ask_next"]
    assert ask["feature"] != "odor" and ask["information_gain"] > 0
    assert set(ask["codes"]) == set(none[ask["feature"]])  # the codes seen among the matches


def test_identify_a_combination_no_known_mushroom_has_is_poisonous(client, dataset):
    almond = dataset[dataset["odor"] == "a"]
    never = sorted(set(CODES["spore-print-color"]) - set(almond["spore-print-color"]))[0]
    body = client.post("/identify", json={"odor": "a", "spore-print-color": never}).json()
    assert (body["prediction"], body["matching_known"], body["matching_poisonous"]) == ("poisonous", 0, 0)
    assert "unknown means poisonous" in body["reason"] and body["ask_next"] is None


def test_identify_with_all_22_features_adds_the_models_answer(client, trained_home, dataset):
    row = dataset[FEATURES].iloc[3].to_dict()
    body = client.post("/identify", json=row).json()
    expected = ModelService(trained_home).predict(row).iloc[0]
    assert body["model"]["model_version"] == "v0001" and body["model"]["prediction"] == expected["prediction"]
    assert body["prediction"] == LABELS[dataset["class"].iloc[3]] and body["matching_known"] >= 1


@pytest.mark.parametrize("given, words", [
    ({"odor": "q"}, ["odor='q'", "a (almond)", "n (none)"]),
    ({"odor": 7}, ["odor='7'", "valid codes"]),
    ({"smell": "a"}, ["'smell' is not a mushroom feature"]),
])
def test_identify_bad_feature_or_code_gets_the_librarys_sentence(client, given, words):
    from mushroom_lib.data.identify import check_given

    res = client.post("/identify", json=given)
    assert res.status_code == 422
    with pytest.raises(SchemaError) as expected:
        check_given({k: v if isinstance(v, str) else json.dumps(v) for k, v in given.items()})
    assert res.json() == {"detail": str(expected.value)}
    assert all(w in res.json()["detail"] for w in words)


def test_identify_refuses_what_is_not_an_object_of_codes(client):
    assert client.post("/identify", json=[["odor", "a"]]).status_code == 422
    assert client.post("/identify", content=b"odor=a", headers={"Content-Type": "text/plain"}).status_code == 415


# ---------------------------------------------------------------- feedback review (issue 15)
def test_mallory_and_alice_through_http(trained_home, dataset):
    """10 wrong labels from mallory, 10 right ones from alice; mallory's are excluded by source with a reason,
    GET /feedback shows them excluded, K counts alice's only, and writes need the key."""
    poisonous = dataset[dataset["class"] == "p"].iloc[:10]
    mallory = rows_of(poisonous.assign(**{"class": "e"}), 10, label=True)  # deadly mushrooms called edible
    alice = rows_of(dataset.iloc[1000:], 10, label=True)
    key = {"X-API-Key": KEY}
    log = get_settings(trained_home).prod_path.with_name("prod_data.exclusions.jsonl")
    with TestClient(create_app(get_settings(trained_home, k=50), api_key=KEY), raise_server_exceptions=False) as c:
        for name, rows in (("mallory", mallory), ("alice", alice)):
            res = c.post("/feedback", params={"source": name}, json={"rows": rows}, headers=key)
            assert res.status_code == 200 and res.json()["rows_written"] == 10
        exclude = {"source": "mallory", "reason": "labels were guesses"}
        assert c.post("/feedback/exclude", json=exclude).status_code == 401
        assert c.post("/feedback/exclude", json=exclude, headers={"X-API-Key": "wrong"}).status_code == 401
        assert not log.exists()  # refused: nothing written
        res = c.post("/feedback/exclude", json=exclude, headers=key)
        assert res.status_code == 200
        event = res.json()
        assert event["action"] == "exclude" and event["ids"] == list(range(1, 11)) and event["who"] == "api:key"

        again = c.post("/feedback/exclude", json={"ids": [2, 5], "reason": "twice"}, headers=key)
        assert again.status_code == 409 and "already excluded" in again.json()["detail"]

        listed = c.get("/feedback", params={"source": "mallory"}).json()
        assert listed["total"] == 10 and [r["feedback_id"] for r in listed["rows"]] == list(range(1, 11))
        assert all(r["excluded"] and r["excluded_reason"] == "labels were guesses" and r["contradicts"]
                   and r["excluded_by"] == "api:key" and r["excluded_at"] for r in listed["rows"])
        alice_rows = c.get("/feedback", params={"source": "alice"}).json()["rows"]
        assert [r["excluded"] for r in alice_rows] == [False] * 10 and alice_rows[0]["excluded_reason"] is None
        status = c.get("/status").json()
        assert status["feedback_excluded"] == 10 and status["rows_until_retrain"] == 40  # K counts alice's only
        assert status["feedback_sources"] == {"mallory": 10, "alice": 10}

        assert c.post("/feedback/include", json={"ids": [3]}).status_code == 401
        assert c.post("/feedback/include", json={"ids": [3]}, headers=key).json()["ids"] == [3]
        still = c.get("/feedback", params={"excluded": "true"}).json()
        assert [r["feedback_id"] for r in still["rows"]] == [i for i in range(1, 11) if i != 3]
    assert len(log.read_text().splitlines()) == 2  # the exclusion and the inclusion, nothing else
    assert len(pd.read_csv(get_settings(trained_home).prod_path)) == 20  # prod_data.csv keeps every row


@pytest.mark.parametrize("path, body, status, words", [
    ("/feedback/exclude", {"ids": [999], "reason": "typo"}, 404, "no feedback row with id 999"),
    ("/feedback/exclude", {"source": "nobody", "reason": "typo"}, 404, "no feedback rows from source 'nobody'"),
    ("/feedback/exclude", {"source": "alice", "since": "2100-01-01", "reason": "x"}, 404, "since 2100-01-01"),
    ("/feedback/include", {"ids": [2]}, 409, "row 2 is not excluded"),
    ("/feedback/exclude", {"ids": [1, -4], "reason": "typo"}, 422, "'-4' is not a feedback id"),
    ("/feedback/exclude", {"ids": [True], "reason": "typo"}, 422, "ids.0: Input should be a valid integer"),
    ("/feedback/exclude", {"source": "alice", "since": "soon-ish", "reason": "x"}, 422, "is not an ISO 8601 time"),
    ("/feedback/exclude", {"ids": [1, 2]}, 422, "needs a reason"),
    ("/feedback/exclude", {"ids": [1], "reason": "   "}, 422, "needs a reason"),
    ("/feedback/exclude", {"reason": "why"}, 422, "name the rows"),
    ("/feedback/exclude", {"ids": [1], "source": "alice", "reason": "why"}, 422, "not both"),
    ("/feedback/include", {"ids": []}, 422, "name the feedback ids"),
])
def test_refused_review_requests_get_the_librarys_sentence_and_write_nothing(client, trained_home, dataset,
                                                                             path, body, status, words):
    sent = client.post("/feedback", params={"source": "alice"}, json={"rows": rows_of(dataset, 3, label=True)})
    assert sent.status_code == 200
    prod = get_settings(trained_home).prod_path
    before = prod.read_bytes()
    res = client.post(path, json=body)
    assert res.status_code == status and words in res.json()["detail"]
    assert prod.read_bytes() == before and not prod.with_name("prod_data.exclusions.jsonl").exists()


def test_feedback_list_filters_and_pages(client, dataset):
    assert client.get("/feedback").json() == {"total": 0, "rows": []}
    client.post("/feedback", json={"rows": rows_of(dataset, 4, label=True)})  # source "api" by default
    client.post("/feedback", params={"source": "bob"}, json={"rows": rows_of(dataset.iloc[4:], 3, label=True)})
    page = client.get("/feedback", params={"offset": 2, "limit": 3}).json()
    assert page["total"] == 7 and [r["feedback_id"] for r in page["rows"]] == [3, 4, 5]
    assert [r["source"] for r in page["rows"]] == ["api", "api", "bob"]
    assert client.get("/feedback", params={"contradicting": "true"}).json()["total"] == 0  # true labels
    assert client.get("/feedback", params={"since": "2999-01-01"}).json()["total"] == 0
    bad = client.get("/feedback", params={"since": "someday"})
    assert bad.status_code == 422 and "'someday' is not an ISO 8601 time" in bad.json()["detail"]
    assert client.get("/feedback", params={"limit": 0}).status_code == 422
    assert client.post("/feedback", params={"source": "a b;c"}, json={"rows": rows_of(dataset, 1, label=True)}
                       ).status_code == 422  # a source name is letters, digits and -_.:@


# ---------------------------------------------------------------- models, status
def test_promote_rollback_and_unknown_version(client, trained_home):
    from mushroom_lib.training.train import train

    second = train(get_settings(trained_home), trigger="manual", promote=False).version
    listed = client.get("/models").json()
    assert listed["champion"] == "v0001" and [v["version"] for v in listed["versions"]] == ["v0001", second]
    assert client.post("/models/v0042/promote").status_code == 404
    assert client.post("/models/not-a-version/promote").status_code == 404
    res = client.post(f"/models/{second}/promote")
    assert res.json() == {"model_version": second, "previous": "v0001"}
    assert client.get("/ready").json()["model_version"] == second
    assert client.post("/models/rollback").json()["model_version"] == "v0001"
    assert client.get("/ready").json()["model_version"] == "v0001"


def test_status_is_mushroom_status_json_without_paths(client, trained_home, capsys):
    assert cli.main(["--home", str(trained_home), "status", "--json"]) == 0
    cli_status = json.loads(capsys.readouterr().out)
    api_status = client.get("/status").json()
    assert api_status["home"] == "."
    assert {k: v for k, v in api_status.items() if k != "home"} == {k: v for k, v in cli_status.items() if k != "home"}
    assert str(trained_home) not in json.dumps(api_status)


# ---------------------------------------------------------------- schemathesis over the OpenAPI document
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(trained_home, mode):
    """Every operation in /openapi.json, generated cases (valid, then invalid) -> no 5xx, answers match the
    document (status codes, content types, bodies). K is raised so that feedback cases do not retrain."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hyp_settings
    from schemathesis import GenerationMode

    app = create_app(get_settings(trained_home, k=1_000_000), api_key=None)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "POST /predict", "POST /identify", "POST /feedback", "GET /feedback", "POST /feedback/exclude",
        "POST /feedback/include", "GET /models", "POST /models/{version}/promote", "POST /models/rollback",
        "GET /health", "GET /ready", "GET /status"}
    if mode == "negative":  # the bodies and the feedback list's typed query; other inputs are free strings
        operations = [op for op in operations if op.path.startswith(("/predict", "/identify", "/feedback"))]
    for op in operations:
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        @hyp_settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate()

        check()


# ---------------------------------------------------------------- a real server with 2 workers
def test_real_server_two_workers_feedback_retrain_both_serve_new_version(trained_home, dataset, tmp_path):
    rows = rows_of(dataset.iloc[500:], 10, label=True)
    one = {"rows": rows_of(dataset, 1)}
    with ServerProcess.api(trained_home, workers=2, log_path=tmp_path / "api.log") as api:
        versions: dict[str, str] = {}

        def poll_predict(until, deadline_s: float = 120.0) -> dict[str, str]:
            deadline = time.monotonic() + deadline_s
            while time.monotonic() < deadline:
                with httpx.Client(base_url=api.url, timeout=10) as fresh:  # a new connection: any worker
                    res = fresh.post("/predict", json=one)
                assert res.status_code == 200
                versions[res.headers["X-Mushroom-Worker"]] = res.json()["model_version"]
                if until(versions):
                    return versions
            raise AssertionError(f"not reached before the deadline: {versions}; log: {api.log_tail()}")

        poll_predict(lambda v: len(v) >= 2)  # both workers answer
        assert set(versions.values()) == {"v0001"}
        with httpx.Client(base_url=api.url, timeout=30) as c:
            receipt = c.post("/feedback", json={"rows": rows}).json()
        assert receipt["rows_written"] == 10 and receipt["retrain_pending"]
        versions.clear()
        final = poll_predict(lambda v: len(v) >= 2 and all(x != "v0001" for x in v.values()))
        assert set(final.values()) == {"v0002"}
        assert api.get_json("/models")["champion"] == "v0002"

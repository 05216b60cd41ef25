"""The feedback loop: prod_data.csv, retrain every K rows, the safety gate, hot swap, background retrain."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings

import pandas as pd
import pytest

from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.schema import FEATURES, SchemaError
from mushroom_lib.feedback import queue as jobs
from mushroom_lib.feedback.store import PROD_COLUMNS, FeedbackStore
from mushroom_lib.registry.versions import Registry
from mushroom_lib.service import ModelService


def dataset_rows(home, n, *, start=0, label=None):
    """n rows of the home's dataset (class + 22), optionally relabelled."""
    df = pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    rows = df.iloc[start:start + n].reset_index(drop=True)
    if label is not None:
        rows["class"] = label
    return rows


def test_receipt_and_prod_rows(trained_home):
    svc = ModelService(trained_home)
    rows = dataset_rows(trained_home, 3)
    rows["class"] = rows["class"].map({"e": "edible", "p": "poisonous"})  # words are accepted too
    receipt = svc.submit_feedback(rows, source="unit-test")
    assert receipt.rows_written == 3 and not receipt.retrained and not receipt.promoted
    assert receipt.model_version == "v0001" and receipt.rows_until_retrain == 7 and receipt.reason is None
    with open(trained_home / "data" / "prod_data.csv", newline="") as fh:
        recs = list(csv.reader(fh))
    assert recs[0] == PROD_COLUMNS and len(recs) == 4
    first = dict(zip(recs[0], recs[1]))
    assert first["target"] == rows["class"][0]
    assert first["prediction"] in ("edible", "poisonous") and 0 <= float(first["p_poisonous"]) <= 1
    assert first["model_version"] == "v0001" and first["source"] == "unit-test"
    assert pd.Timestamp(first["timestamp"]).tzinfo is not None  # UTC, ISO 8601


def test_the_true_label_may_be_in_a_true_label_column(trained_home):
    """'True_Label' is matched as schema.validate_frame spells it (vocab.norm_column): it was refused as missing."""
    svc = ModelService(trained_home)
    rows = dataset_rows(trained_home, 2).rename(columns={"class": "True_Label"})
    receipt = svc.submit_feedback(rows, source="unit-test")
    assert receipt.rows_written == 2
    stored = FeedbackStore(svc.settings).read()
    assert stored["target"].tolist() == rows["True_Label"].map({"e": "edible", "p": "poisonous"}).tolist()


def test_invalid_feedback_writes_nothing(trained_home):
    svc = ModelService(trained_home)
    rows = dataset_rows(trained_home, 4)
    rows.loc[2, "odor"] = "q"
    with pytest.raises(SchemaError) as err:
        svc.submit_feedback(rows)
    assert "row 3" in str(err.value) and "odor" in str(err.value) and "'q'" in str(err.value)
    bad_label = dataset_rows(trained_home, 2)
    bad_label.loc[1, "class"] = "maybe"
    with pytest.raises(SchemaError, match="row 2.*maybe"):
        svc.submit_feedback(bad_label)
    with pytest.raises(SchemaError, match="true label"):
        svc.submit_feedback(dataset_rows(trained_home, 2).drop(columns="class"))
    assert not (trained_home / "data" / "prod_data.csv").exists()


def test_nine_rows_never_retrain_the_tenth_does(trained_home):
    svc = ModelService(trained_home)
    rows = dataset_rows(trained_home, 10, start=100)
    for i in range(9):
        r = svc.submit_feedback(rows.iloc[[i]])
        assert not r.retrained and r.rows_until_retrain == 9 - i
    r = svc.submit_feedback(rows.iloc[[9]])
    assert r.retrained and r.candidate_version == "v0002"
    assert r.rows_until_retrain == 10
    meta = Registry(svc.settings).metadata("v0002")
    assert meta["trigger"] == "feedback" and meta["parent"] == "v0001" and meta["feedback_rows"] == 10
    # ten correctly labelled dataset rows (fixed split and seed): the candidate passes the gate and serves
    assert r.promoted and r.reason is None and meta["status"] == "champion"
    assert svc.model_version == "v0002" and r.model_version == "v0002"


def test_bulk_of_25_retrains_and_leaves_less_than_k(trained_home):
    svc = ModelService(trained_home)
    r = svc.submit_feedback(dataset_rows(trained_home, 25, start=300))
    assert r.rows_written == 25 and r.retrained
    assert 0 <= 10 - r.rows_until_retrain <= 9
    assert svc.status()["feedback_rows"] == 25


def test_k_is_configurable(trained_home):
    svc = ModelService(trained_home, k=3)
    rows = dataset_rows(trained_home, 3, start=40)
    assert not svc.submit_feedback(rows.iloc[:2]).retrained
    assert svc.submit_feedback(rows.iloc[[2]]).retrained


def test_poisoned_feedback_never_teaches_edible(trained_home):
    """Poisonous rows labelled edible are accepted and counted; as conflicting reports they are kept out of
    training and called poisonous by rule, so the lie never serves (issue 12 part 3)."""
    svc = ModelService(trained_home)
    data = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    poisonous = data[data["class"] == "p"].sample(400, random_state=0).reset_index(drop=True)
    poisonous["class"] = "e"  # lies: deadly mushrooms called edible
    before = svc.predict(poisonous.drop(columns="class"))
    assert (before["prediction"] == "poisonous").all()
    r = svc.submit_feedback(poisonous)
    assert r.contradictions == 400 and r.retrained
    meta = Registry(svc.settings).metadata(r.candidate_version)
    in_training = 400 - meta["feedback_rows_excluded_as_holdout"]
    assert meta["conflicting_rows_total"] == in_training > 0
    # the lies are kept out of training, so the candidate is as safe as the champion and serves
    assert r.promoted and svc.model_version == r.candidate_version
    after = svc.predict(poisonous.drop(columns="class"))
    assert (after["prediction"] == "poisonous").all()
    assert after["reason"].str.startswith("conflicting reports").sum() >= in_training
    assert svc.status()["contradicting_feedback_rows"] == 400


def test_other_service_swaps_before_its_next_prediction(trained_home):
    reader = ModelService(trained_home)
    writer = ModelService(trained_home)
    assert reader.model_version == "v0001"
    registry = Registry(writer.settings)
    r = writer.submit_feedback(dataset_rows(trained_home, 10, start=500))
    assert r.retrained
    if not r.promoted:  # make a second version serve regardless of the gate's verdict
        registry.promote(r.candidate_version)
    out = reader.predict(dataset_rows(trained_home, 2).drop(columns="class"))
    assert set(out["model_version"]) == {"v0002"}
    # rollback from the CLI propagates the same way
    res = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(trained_home), "models",
                          "rollback"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert reader.predict(dataset_rows(trained_home, 1).drop(columns="class"))["model_version"][0] == "v0001"
    assert reader.model_version == "v0001"


def test_prediction_in_flight_finishes_with_old_model(trained_home, monkeypatch):
    """A predict running while the retrain swaps keeps the model it started with; the next uses the new."""
    svc = ModelService(trained_home)
    started, release = threading.Event(), threading.Event()
    old_scorer = svc.scorer
    original = type(old_scorer).score

    def slow(self, features):
        if self is old_scorer and not started.is_set():
            started.set()
            release.wait(30)
        return original(self, features)

    monkeypatch.setattr(type(old_scorer), "score", slow)
    features = dataset_rows(trained_home, 5).drop(columns="class")
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("out", svc.predict(features)))
    t.start()
    assert started.wait(30)
    receipt = svc.submit_feedback(dataset_rows(trained_home, 10, start=900))  # retrain while predict waits
    if not receipt.promoted:
        Registry(svc.settings).promote(receipt.candidate_version)
    release.set()
    t.join(30)
    assert set(result["out"]["model_version"]) == {"v0001"}
    assert set(svc.predict(features)["model_version"]) == {"v0002"}


def test_background_retrain_returns_at_once(trained_home):
    svc = ModelService(trained_home)
    svc.submit_feedback(dataset_rows(trained_home, 9, start=1200))
    done = threading.Event()
    seen = {}

    def on_done(receipt):
        seen["receipt"] = receipt
        done.set()

    r = svc.submit_feedback(dataset_rows(trained_home, 1, start=1300), wait=False, on_done=on_done)
    assert r.retrain_pending and r.future is not None
    # predictions keep working while the retrain runs
    assert len(svc.predict(dataset_rows(trained_home, 3).drop(columns="class"))) == 3
    final = r.future.result(timeout=60)
    assert done.wait(10) and seen["receipt"] is final
    assert final.retrained and not final.retrain_pending and final.candidate_version == "v0002"
    svc.close()


def test_torn_last_line_is_quarantined(trained_home):
    svc = ModelService(trained_home)
    svc.submit_feedback(dataset_rows(trained_home, 3, start=10))
    prod = trained_home / "data" / "prod_data.csv"
    with open(prod, "ab") as fh:
        fh.write(b"x,s,n,t,p,f,c")  # a crash in the middle of an append
    store = FeedbackStore(svc.settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = store.read()
    assert len(df) == 3
    assert any("quarantine" in str(w.message) for w in caught)
    assert prod.read_bytes().endswith(b"\n")
    assert b"x,s,n,t,p,f,c" in (trained_home / "data" / "prod_data.quarantine.csv").read_bytes()
    # appending after a torn line (not yet repaired) never glues rows together
    with open(prod, "ab") as fh:
        fh.write(b"b,y,w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svc.submit_feedback(dataset_rows(trained_home, 2, start=20))
        df = store.read()
    assert len(df) == 5 and list(df.columns) == PROD_COLUMNS
    assert svc.status()["feedback_rows"] == 5


_SUBMITTER = r"""
import sys, pandas as pd
from mushroom_lib.service import ModelService
home, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
df = pd.read_csv(home + "/data/mushrooms.csv", dtype=str, keep_default_na=False)
svc = ModelService(home)
pending = []
for i in range(start, start + n):
    r = svc.submit_feedback(df.iloc[[i]], source=f"proc{start}", wait=False)
    if r.retrain_pending:
        pending.append(r.future)
finals = [f.result(timeout=600) for f in pending]
print(sum(f.retrained for f in finals), len(finals))
"""


def _worker_lifetimes(home) -> list[tuple[str, str]]:
    """(started, stopped) log lines of every worker that served the home, in order."""
    lines = (home / "artifacts" / "worker" / "worker.log").read_text().splitlines()
    return [line for line in lines if "worker started" in line or "worker stopped" in line]


@pytest.mark.slow
def test_four_processes_times_100_rows(trained_home):
    """4 processes x 100 single rows, K=10: one worker at a time, every K crossing queued once and covered by
    exactly one retrain (piled-up crossings coalesced), no row lost or duplicated."""
    procs = [subprocess.Popen([sys.executable, "-c", _SUBMITTER, str(trained_home), str(1000 * i), "100"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "MUSHROOM_REPORT_ON_PROMOTE": "0"})
             for i in range(4)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    with open(trained_home / "data" / "prod_data.csv", newline="") as fh:
        recs = list(csv.reader(fh))
    assert recs[0] == PROD_COLUMNS
    body = recs[1:]
    assert len(body) == 400 and all(len(r) == len(PROD_COLUMNS) for r in body)
    assert [int(r[-1]) for r in body] == list(range(1, 401))  # feedback ids: file order, no gap
    per_source = pd.Series([r[-2] for r in body]).value_counts()
    assert sorted(per_source.tolist()) == [100, 100, 100, 100]
    data = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    for i in range(4):
        mine = [r[:22] for r in body if r[-2] == f"proc{1000 * i}"]
        assert mine == data.iloc[1000 * i:1000 * i + 100][FEATURES].values.tolist()
    settings = get_settings(trained_home)
    # every waiting receipt got a retrain; 40 crossings of K were queued, each exactly once
    retrained, waited = map(sum, zip(*(map(int, o[0].split()) for o in outs)))
    assert retrained == waited == 40
    outcomes = jobs.outcomes(settings)
    covered = [j for o in outcomes for j in o["jobs"]]
    assert sorted(covered) == list(range(1, 41))  # each job covered by exactly one retrain
    assert all(o["status"] in ("promoted", "rejected") for o in outcomes)
    registry = Registry(settings)
    versions = registry.versions()
    assert [int(v[1:]) for v in versions] == list(range(1, len(versions) + 1))
    assert len(versions) - 1 == len(outcomes) <= 40
    uptos = [registry.metadata(v)["feedback_upto_id"] for v in versions[1:]]
    assert uptos == sorted(set(uptos)) and uptos[-1] == 400 and all(u % 10 == 0 for u in uptos)
    assert ModelService(trained_home).status()["rows_until_retrain"] == 10
    # one worker at a time: its log alternates started / stopped
    marks = ["started" if "started" in line else "stopped" for line in _worker_lifetimes(trained_home)]
    assert marks[0] == "started" and all(a != b for a, b in zip(marks, marks[1:])), marks


def _kill_worker_during_retrain(home, delay: float) -> str:
    """Queue a retrain, SIGKILL the worker ``delay`` s into it, check the champion serves and it recovers."""
    settings = get_settings(home)
    svc = ModelService(home)
    receipt = svc.submit_feedback(dataset_rows(home, 10, start=2000), wait=False)
    assert receipt.retrain_pending
    paths = jobs.paths(settings)
    deadline = time.monotonic() + 120
    while (jobs.last_retrain(settings) or {}).get("status") != "running":  # bounded: the worker took the job
        assert time.monotonic() < deadline, "the worker never started the retrain"
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(json.loads(paths["pid"].read_text())["pid"], signal.SIGKILL)
    # the last good model serves meanwhile
    out = ModelService(home).predict(dataset_rows(home, 3).drop(columns="class"))
    assert len(out) == 3 and out["model_version"][0] in ("v0001", "v0002")
    # the waiting receipt sees the dead worker, starts a new one and gets the retrain's outcome
    final = receipt.future.result(timeout=300)
    assert final.retrained and final.candidate_version
    registry = Registry(settings)
    settled = [v for v in registry.versions() if 1 in registry.metadata(v).get("feedback_jobs", [])
               and registry.metadata(v)["status"] != "candidate"]
    assert settled == [final.candidate_version]  # the crossing was retrained exactly once
    assert len(FeedbackStore(settings).read()) == 10
    r = svc.submit_feedback(dataset_rows(home, 1, start=3000))
    assert not r.retrained and r.rows_until_retrain == 9
    return "adopted" if jobs.outcomes(settings)[-1].get("recovered") else "redone"


@pytest.mark.slow
def test_killed_worker_leaves_the_champion_serving_and_the_retrain_recovers(trained_home, tmp_path):
    outcomes = {}
    for delay in (0.0, 0.3, 1.0):
        home = tmp_path / f"kill-{delay}"
        shutil.copytree(trained_home, home)
        outcomes[delay] = _kill_worker_during_retrain(home, delay)
    assert "redone" in outcomes.values(), outcomes


def test_damaged_pointer_keeps_the_model_in_memory_serving(trained_home):
    import pandas as pd

    from mushroom_lib.service import ModelService
    svc = ModelService(trained_home)
    rows = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False).head(3)
    assert svc.predict(rows)["model_version"].tolist() == ["v0001"] * 3
    (trained_home / "artifacts" / "champion.json").write_text("{not json")
    assert svc.predict(rows)["model_version"].tolist() == ["v0001"] * 3
    assert "champion.json" in svc.last_error


def test_a_watching_service_loads_a_new_champion_off_the_request_path(trained_home):
    """watch(): a server's service swaps a promotion in from a background thread, before any request."""
    from mushroom_lib.training.train import train

    svc = ModelService(trained_home)
    svc.watch(interval=0.05)
    try:
        assert svc.serving_version == "v0001"
        res = train(get_settings(trained_home), trigger="manual", force=True)
        assert res.promoted
        deadline = time.monotonic() + 60
        while svc.serving_version != res.version and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not a sleep standing in for one
        assert svc.serving_version == res.version
    finally:
        svc.close()

"""The feedback loop: prod_data.csv, retrain every K rows, the safety gate, hot swap, background retrain."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import threading
import time
import warnings

import pandas as pd
import pytest

from mushroom_lib.feedback import PROD_COLUMNS, FeedbackStore
from mushroom_lib.registry import Registry
from mushroom_lib.schema import FEATURES, SchemaError
from mushroom_lib.service import ModelService
from mushroom_lib.settings import get_settings


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
    if r.promoted:
        assert svc.model_version == "v0002" and r.model_version == "v0002"
    else:
        assert r.reason and meta["status"] == "rejected" and svc.model_version == "v0001"


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
    after = svc.predict(poisonous.drop(columns="class"))
    assert (after["prediction"] == "poisonous").all()
    if r.promoted:
        assert (after["reason"] != "").sum() >= in_training
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
    original = type(old_scorer).p_poisonous

    def slow(self, features):
        if self is old_scorer and not started.is_set():
            started.set()
            release.wait(30)
        return original(self, features)

    monkeypatch.setattr(type(old_scorer), "p_poisonous", slow)
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
retrains = 0
for i in range(start, start + n):
    r = svc.submit_feedback(df.iloc[[i]], source=f"proc{start}")
    retrains += r.retrained
print(retrains)
"""


@pytest.mark.slow
def test_four_processes_times_100_rows(trained_home):
    procs = [subprocess.Popen([sys.executable, "-c", _SUBMITTER, str(trained_home), str(1000 * i), "100"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**__import__("os").environ, "MUSHROOM_REPORT_ON_PROMOTE": "0"})
             for i in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    retrains = sum(int(o[0].strip().splitlines()[-1]) for o in outs)
    with open(trained_home / "data" / "prod_data.csv", newline="") as fh:
        recs = list(csv.reader(fh))
    assert recs[0] == PROD_COLUMNS
    body = recs[1:]
    assert len(body) == 400 and all(len(r) == len(PROD_COLUMNS) for r in body)
    per_source = pd.Series([r[-1] for r in body]).value_counts()
    assert sorted(per_source.tolist()) == [100, 100, 100, 100]
    # no row lost or duplicated: each process's 100 rows are all there, in its order
    data = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    for i in range(4):
        mine = [r[:22] for r in body if r[-1] == f"proc{1000 * i}"]
        assert mine == data.iloc[1000 * i:1000 * i + 100][FEATURES].values.tolist()
    registry = Registry(get_settings(trained_home))
    versions = registry.versions()
    numbers = [int(v[1:]) for v in versions]
    assert numbers == list(range(1, len(versions) + 1))  # strictly increasing, no gaps or duplicates
    assert retrains == 40 == len(versions) - 1  # every 10th row, exactly once across all processes
    feedback_counts = [registry.metadata(v)["feedback_rows"] for v in versions[1:]]
    assert feedback_counts == list(range(10, 401, 10))


_RETRAINER = r"""
import sys, pandas as pd
from mushroom_lib.service import ModelService
home, start = sys.argv[1], int(sys.argv[2])
df = pd.read_csv(home + "/data/mushrooms.csv", dtype=str, keep_default_na=False)
svc = ModelService(home)
print("ready", flush=True)
svc.submit_feedback(df.iloc[start:start + 10])
print("done", flush=True)
"""


def _kill_during_retrain(home, delay: float) -> str:
    """Start a retrain in a child process, SIGKILL it after ``delay`` seconds, check the aftermath."""
    proc = subprocess.Popen([sys.executable, "-c", _RETRAINER, str(home), "2000"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.kill()
    proc.wait(30)
    svc = ModelService(home)
    # the champion loads and serves
    out = svc.predict(dataset_rows(home, 3).drop(columns="class"))
    assert len(out) == 3 and out["model_version"][0] == svc.model_version
    # prod_data.csv is intact: whole rows only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prod = FeedbackStore(svc.settings).read()
    assert len(prod) in (0, 10)
    registry = Registry(svc.settings)
    settled = [v for v in registry.versions()
               if registry.metadata(v)["status"] != "candidate" or v == registry.champion()]
    if len(prod) == 0:
        outcome = "before append"
    elif len(settled) == 1:
        outcome = "retrain lost"
    else:
        outcome = "retrain finished"
    r = svc.submit_feedback(dataset_rows(home, 1, start=3000))
    assert r.retrained == (outcome == "retrain lost")  # a lost retrain is redone by the next submission
    assert ModelService(home).predict(dataset_rows(home, 1).drop(columns="class"))["model_version"][0]
    return outcome


@pytest.mark.slow
def test_sigkill_at_several_points_of_a_retrain(trained_home, tmp_path):
    outcomes = {}
    for delay in (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.3, 1.8, 3.0):
        home = tmp_path / f"kill-{delay}"
        shutil.copytree(trained_home, home)
        outcomes[delay] = _kill_during_retrain(home, delay)
    # the kills really landed inside the retrain, and on both sides of it
    assert "retrain lost" in outcomes.values(), outcomes
    assert "retrain finished" in outcomes.values(), outcomes
def test_damaged_pointer_keeps_the_model_in_memory_serving(trained_home):
    from mushroom_lib.service import ModelService
    import pandas as pd
    svc = ModelService(trained_home)
    rows = pd.read_csv(trained_home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False).head(3)
    assert svc.predict(rows)["model_version"].tolist() == ["v0001"] * 3
    (trained_home / "artifacts" / "champion.json").write_text("{not json")
    assert svc.predict(rows)["model_version"].tolist() == ["v0001"] * 3
    assert "champion.json" in svc.last_error

"""The background worker and registry growth: failures recorded, reports coalesced, prune, refused models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pandas as pd
import pytest

from mushroom_lib.core.settings import get_settings
from mushroom_lib.feedback import queue as jobs
from mushroom_lib.registry.versions import Registry, RegistryError
from mushroom_lib.service import ModelService
from mushroom_lib.training.train import train
from mushroom_lib.worker import process as worker


def rows(home, n, start=0):
    return pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False).iloc[start:start + n]


def test_a_failed_retrain_is_recorded_and_the_next_submission_retries(trained_home):
    svc = ModelService(trained_home)
    svc.submit_feedback(rows(trained_home, 9, 100))
    split = trained_home / "data" / "split.json"
    good = split.read_bytes()
    split.write_text("{damaged")  # the worker cannot read the split: its retrain fails
    r = svc.submit_feedback(rows(trained_home, 1, 200))
    assert not r.retrained and r.reason.startswith("retrain failed: JSONDecodeError") and r.rows_until_retrain == 0
    assert svc.predict(rows(trained_home, 2).drop(columns="class"))["model_version"].tolist() == ["v0001"] * 2
    status = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(trained_home), "status",
                             "--json"], capture_output=True, text=True, timeout=300)
    last = json.loads(status.stdout)["last_retrain"]
    assert last["status"] == "failed" and last["error"] == r.reason and last["finished"]
    split.write_bytes(good)
    again = svc.submit_feedback(rows(trained_home, 1, 300))  # the 10 rows still wait: retried now
    assert again.retrained and again.candidate_version == "v0002"
    assert Registry(svc.settings).metadata("v0002")["feedback_rows"] == 11


def test_a_second_worker_exits_at_once(trained_home):
    settings = get_settings(trained_home)
    with jobs.FileLock(str(jobs.paths(settings)["lock"])):  # as if a worker held the home
        res = subprocess.run([sys.executable, "-m", "mushroom_lib.worker", "--home", str(trained_home)],
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not jobs.paths(settings)["pid"].exists()


def test_promotions_during_a_report_leave_one_follow_up_report(trained_home, monkeypatch):
    settings = get_settings(trained_home)
    covered, running, release = [], threading.Event(), threading.Event()

    def fake_report(s):
        covered.append(Registry(s).champion())
        running.set()
        assert release.wait(60)

    monkeypatch.setattr(worker, "report", fake_report)
    store = worker.FeedbackStore(settings)

    def request():
        with store.lock():
            state = jobs.load_state(settings)
            state["report_requested"] = True
            jobs.save_state(settings, state)

    request()
    reporter = worker.Reporter(settings)
    reporter.start_if_requested(jobs.load_state(settings))
    assert running.wait(60)
    running.clear()
    for _ in range(3):  # three promotions while the first report runs
        train(settings, force=True)
        request()
    reporter.start_if_requested(jobs.load_state(settings))  # busy: no second report thread
    release.set()
    reporter._thread.join(60)
    assert covered == ["v0001", "v0004"]  # one follow-up, for the latest champion
    assert not jobs.load_state(settings)["report_requested"]


def test_prune_keeps_newest_champion_and_parent_and_k_accounting(trained_home):
    settings = get_settings(trained_home)
    svc = ModelService(trained_home)
    svc.submit_feedback(rows(trained_home, 10, 500))  # v0002 by the worker
    for _ in range(4):
        train(settings, force=True)  # v0003..v0006
    reg = Registry(settings)
    reg.promote("v0003")
    before = svc.status()["rows_until_retrain"]
    res = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(trained_home), "models", "prune",
                          "--keep", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert reg.versions() == ["v0002", "v0003", "v0005", "v0006"]  # v0003 serves, v0002 is its parent
    assert "removed 2 version(s): v0001, v0004" in res.stdout
    assert svc.status()["rows_until_retrain"] == before == 10  # accounting never read the pruned versions
    r = svc.submit_feedback(rows(trained_home, 10, 700))
    assert r.retrained and r.candidate_version == "v0007"
    bad = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(trained_home), "models", "prune",
                          "--keep", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--keep must be at least 1" in bad.stderr


def test_refused_versions_keep_their_record_and_only_the_newest_three_their_model(trained_home):
    settings = get_settings(trained_home)
    reg = Registry(settings)
    for _ in range(5):
        v = train(settings, promote=False).version
        reg.set_status(v, "rejected", reason="false_edible would rise (test)")
    assert reg.drop_rejected_models(keep=3) == ["v0002", "v0003"]
    assert reg.metadata("v0002")["reason"] == "false_edible would rise (test)"
    with pytest.raises(RegistryError, match="dropped"):
        reg.promote("v0002")
    assert reg.promote("v0004", reason="forced") == "v0004"  # a recent refused one can still be forced
    assert not os.path.exists(settings.models_dir / "v0003" / "model.skops")

"""The hot swap's promise: a promotion or a rollback is served from the next request on, in-process (a
ModelService with its watch thread, readers in other threads) and through `mushroom api --workers 2`."""

from __future__ import annotations

import threading

import httpx
import pytest
from helpers.server import ServerProcess

from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import load_dataset
from mushroom_lib.registry.versions import Registry
from mushroom_lib.service import ModelService
from mushroom_lib.training.train import train

ROUNDS = 10  # in-process: each round promotes then rolls back
SERVER_ROUNDS = 3  # real server: each round 4 changes (API promote, rollback, registry promote, rollback)


@pytest.fixture
def three_versions(trained_home):
    """The trained home with v0002 and v0003 registered beside the champion v0001 (not promoted)."""
    settings = get_settings(trained_home)
    made = [train(settings, trigger="manual", promote=False).version for _ in range(2)]
    assert made == ["v0002", "v0003"] and Registry(settings).champion() == "v0001"
    return trained_home


def one_row(home) -> dict:
    return load_dataset(get_settings(home)).drop(columns=["class"]).iloc[0].to_dict()


def test_every_call_after_a_pointer_change_answers_the_new_version(three_versions):
    """Readers predict without pause while the pointer moves (another Registry, as another process would do);
    a call that starts after change k returned answers change k's version (or a later one begun meanwhile),
    whether the watch thread loaded it ahead, is loading it, or has not seen it yet. Each round uses a new
    service, so that its promotions meet versions it has not loaded (v0002) or is loading ahead (v0003)."""
    settings = get_settings(three_versions)
    row = one_row(three_versions)
    mover = Registry(settings)
    begun, done = ["v0001"], 1  # begun[g]: the champion after change g; changes 0..done-1 have returned
    wrong: list[str] = []
    calls = [0]

    def read(svc: ModelService, stop: threading.Event) -> None:
        while not stop.is_set():
            after = done - 1  # the call starts after change `after` returned
            answer = svc.predict(row)["model_version"].iloc[0]
            calls[0] += 1
            if answer not in begun[after:]:  # or a change begun while the call ran
                wrong.append(f"answered {answer} after change {after} ({begun[after]})")

    for i in range(ROUNDS):
        svc, stop = ModelService(settings=settings), threading.Event()
        svc.watch()
        readers = [threading.Thread(target=read, args=(svc, stop)) for _ in range(3)]
        for t in readers:
            t.start()
        try:
            target = "v0003" if i % 2 else "v0002"
            for version, change in ((target, lambda: mover.promote(target)), ("v0001", mover.rollback)):
                begun.append(version)
                assert change() == version
                done += 1
                assert svc.predict(row)["model_version"].iloc[0] == version  # this thread's next call
                assert svc.model_version == version and svc.status()["model_version"] == version
        finally:
            stop.set()
            for t in readers:
                t.join()
            svc.close()
    assert calls[0] > 0 and wrong == []


def test_two_uvicorn_workers_serve_a_promotion_and_a_rollback_from_the_next_request(three_versions, tmp_path):
    """Each promotion (through the API, or through the registry as `mushroom models promote` does) and each
    rollback: every request sent after it returns, on a fresh connection to either worker, answers the new
    version in /predict and /ready."""
    one = {"rows": [one_row(three_versions)]}
    mover = Registry(get_settings(three_versions))
    workers: set[str] = set()
    with ServerProcess.api(three_versions, workers=2, log_path=tmp_path / "api.log") as api:

        def answers(expected: str, n: int = 8) -> None:
            for _ in range(n):
                with httpx.Client(base_url=api.url, timeout=30) as fresh:  # a new connection: either worker
                    res = fresh.post("/predict", json=one)
                    ready = fresh.get("/ready").json()
                assert res.status_code == 200, res.text
                workers.add(res.headers["X-Mushroom-Worker"])
                assert (res.json()["model_version"], ready["model_version"]) == (expected, expected), api.log_tail()

        answers("v0001")
        for i in range(SERVER_ROUNDS):
            target = "v0003" if i % 2 else "v0002"
            with httpx.Client(base_url=api.url, timeout=60) as c:
                assert c.post(f"/models/{target}/promote").json()["model_version"] == target
            answers(target)
            with httpx.Client(base_url=api.url, timeout=60) as c:
                assert c.post("/models/rollback").json()["model_version"] == "v0001"
            answers("v0001")
            mover.promote(target)  # outside the server, as the CLI would
            answers(target)
            mover.rollback()
            answers("v0001")
    assert len(workers) == 2, f"only worker(s) {workers} answered"

"""The files between serving processes and the background worker: the job queue, the outcomes, the start.

Light on purpose (no scikit-learn): dashboards, API workers and the CLI enqueue a retrain here, start the
worker when none runs, and wait for its outcome by watching ``artifacts/worker/outcomes.json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from filelock import FileLock, Timeout

from ..core.fileio import atomic_write_json, read_json
from ..core.settings import Settings
from ..core.vocab import utc_iso
from ..registry.versions import Registry, RegistryError

#: Settings a job carries to the worker (a ModelService made with k=3 retrains with k=3).
KNOBS = ("k", "seed", "test_size", "n_components", "accuracy_margin", "report_on_promote", "keep_rejected_models")
OUTCOMES_KEPT = 200
POLL = 0.02  # seconds between looks at a file that another process rewrites


def paths(settings: Settings) -> dict[str, Path]:
    d = settings.worker_dir
    return {"lock": d / "worker.lock", "log": d / "worker.log", "pid": d / "worker.pid", "outcomes": d / "outcomes.json",
            "last_retrain": d / "last_retrain.json", "last_report": settings.reports_dir / "last_report.json"}


def _read(path: Path, default):
    try:
        return read_json(path, default)
    except ValueError:  # a damaged file: treated as missing, rewritten whole next time
        return default


# ------------------------------------------------------------------ loop state (caller holds the feedback lock)
def load_state(settings: Settings) -> dict:
    """artifacts/loop_state.json: trained_upto (feedback ids the last retrain covered), claimed_upto (ids a
    queued retrain will cover), jobs, next_job, report_requested. An older home derives trained_upto once
    from the registry (its feedback_rows were file-order counts, the ids of the upgrade)."""
    state = _read(settings.state_path, None)
    if isinstance(state, dict) and "trained_upto" in state:
        state.setdefault("jobs", [])
        return state
    return {"trained_upto": _legacy_consumed(settings), "claimed_upto": 0, "jobs": [], "next_job": 1,
            "report_requested": False}


def _legacy_consumed(settings: Settings) -> int:
    reg = Registry(settings)
    try:
        champion = reg.champion()
        for version in reversed(reg.versions()):
            meta = reg.metadata(version)
            if meta.get("status") != "candidate" or version == champion:
                return int(meta.get("feedback_upto_id", meta.get("feedback_rows", 0)))
    except RegistryError:
        pass
    return 0


def save_state(settings: Settings, state: dict) -> None:
    atomic_write_json(settings.state_path, state)


def pending_rows(state: dict, last_id: int, excluded: set[int] | dict, *, claimed: bool = True) -> int:
    """Rows not excluded with an id above what is trained (and, with ``claimed``, above what a queued
    retrain will cover): the rows counting toward K."""
    base = max(state["trained_upto"], state.get("claimed_upto", 0)) if claimed else state["trained_upto"]
    return max(0, last_id - base - sum(1 for i in excluded if base < i <= last_id))


def enqueue(settings: Settings, state: dict, last_id: int, *, force: bool = False) -> dict:
    """Queue a retrain covering feedback ids up to ``last_id``; caller holds the lock and saves the state."""
    job = {"id": int(state.get("next_job", 1)), "upto": int(last_id), "force": bool(force),
           "submitted": utc_iso(), "settings": {k: getattr(settings, k) for k in KNOBS}}
    state["next_job"] = job["id"] + 1
    state["claimed_upto"] = max(int(state.get("claimed_upto", 0)), int(last_id))
    state["jobs"].append(job)
    return job


# ------------------------------------------------------------------ the worker process
def worker_running(settings: Settings) -> bool:
    """True when a worker holds the home's worker lock."""
    lock_path = paths(settings)["lock"]
    if not lock_path.exists() and not os.access(settings.home, os.W_OK):
        return False  # a read-only home has no worker
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    probe = FileLock(str(lock_path))
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release()
    return False


def ensure_worker(settings: Settings) -> bool:
    """Start the home's worker unless one runs (a second one started in a race exits at once). True if started."""
    if worker_running(settings):
        return False
    p = paths(settings)
    log_path = p["log"]
    if log_path.exists() and log_path.stat().st_size > 1 << 20:  # bounded: keep the last run's lines only
        log_path.replace(log_path.with_suffix(".log.1"))
    env = {**os.environ, "DO_NOT_TRACK": "1", "MUSHROOM_HOME": str(settings.home)}
    env.setdefault("OMP_NUM_THREADS", "1")  # one core for the retrain; the other stays with the serving processes
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mushroom_lib.worker", "--home", str(settings.home)],
                                env=env, start_new_session=True, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, close_fds=True)
    threading.Thread(target=proc.wait, name="mushroom-worker-reaper", daemon=True).start()  # no zombie
    return True


# ------------------------------------------------------------------ outcomes
def outcomes(settings: Settings) -> list[dict]:
    """The newest retrain outcomes (oldest first), each: status, version, reason, jobs, upto, started,
    finished, seconds, error, promoted, metrics_delta, feedback_excluded."""
    data = _read(paths(settings)["outcomes"], [])
    return data if isinstance(data, list) else []


def record_outcome(settings: Settings, outcome: dict) -> None:
    """Append an outcome (kept bounded) and make it the last retrain; the worker is the only writer."""
    p = paths(settings)
    kept = (outcomes(settings) + [outcome])[-OUTCOMES_KEPT:]
    atomic_write_json(p["outcomes"], kept)
    atomic_write_json(p["last_retrain"], outcome)


def last_retrain(settings: Settings) -> dict | None:
    data = _read(paths(settings)["last_retrain"], None)
    return data if isinstance(data, dict) else None


def last_report(settings: Settings) -> dict | None:
    data = _read(paths(settings)["last_report"], None)
    return data if isinstance(data, dict) else None


def _stamp(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def find_outcome(settings: Settings, job_id: int) -> dict | None:
    return next((o for o in reversed(outcomes(settings)) if job_id in o.get("jobs", [])), None)


def wait_for_outcome(settings: Settings, job_id: int, timeout: float | None = None,
                     queued: callable = None) -> dict | None:
    """Wait (bounded) for the outcome of job ``job_id``; None on timeout. While waiting, a worker that died
    with the job still queued (``queued(job_id)`` True) is started again."""
    deadline = time.monotonic() + (settings.retrain_timeout if timeout is None else timeout)
    path = paths(settings)["outcomes"]
    seen, next_check = object(), time.monotonic() + 1.0
    while True:
        stamp = _stamp(path)
        if stamp != seen:
            seen = stamp
            found = find_outcome(settings, job_id)
            if found is not None:
                return found
        now = time.monotonic()
        if now >= deadline:
            return None
        if now >= next_check:
            next_check = now + 1.0
            if queued is not None and queued(job_id):
                ensure_worker(settings)
        time.sleep(POLL)

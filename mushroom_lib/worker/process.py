"""The background worker: one process per home runs every retrain and every monitoring report, in order.

Started on demand (``python -m mushroom_lib.worker --home H``, see ``jobs.ensure_worker``), held by
``artifacts/worker/worker.lock`` so a second one exits at once, gone after ``worker_idle_seconds`` idle.
Queued retrains are coalesced into one; a promotion asks for a report, and promotions during a report
leave one follow-up report for the latest champion. Every outcome, failures too, is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
import traceback

from filelock import FileLock, Timeout

from ..core.settings import Settings, get_settings
from ..core.vocab import utc_iso
from ..feedback import queue as jobs
from ..feedback.store import FeedbackStore
from ..notebooks.runner import run_report_notebook
from ..registry.versions import Registry, RegistryError
from ..training import train as training

log = logging.getLogger("mushroom_lib.worker")


# ------------------------------------------------------------------ one retrain
def _adopt_finished(settings: Settings, state: dict) -> dict | None:
    """A worker killed after registering but before saving the state: adopt its version's outcome."""
    reg = Registry(settings)
    try:
        versions = reg.versions()
        meta = reg.metadata(versions[-1]) if versions else {}
    except RegistryError:
        return None
    done = set(meta.get("feedback_jobs", []))
    if not done or not done & {j["id"] for j in state["jobs"]} or meta.get("status") == "candidate":
        return None
    status = "rejected" if meta.get("status") == "rejected" else "promoted"
    return {"status": status, "version": meta["version"], "reason": meta.get("reason"), "jobs": sorted(done),
            "upto": meta.get("feedback_upto_id"), "started": meta.get("created_utc"), "finished": utc_iso(),
            "seconds": None, "error": None, "metrics_delta": {}, "recovered": True}


def run_retrain(settings: Settings) -> dict | None:
    """Take every queued job, train once on the rows they cover, save the state, record the outcome."""
    store = FeedbackStore(settings)
    with store.lock():
        state = jobs.load_state(settings)
        taken = list(state["jobs"])
        if not taken:
            return None
        adopted = _adopt_finished(settings, state)
        if adopted is not None:
            _settle(settings, store, adopted, taken, advance=adopted["upto"])
            return adopted
        upto = max(j["upto"] for j in taken)
        excluded = store.excluded()
        waiting = jobs.pending_rows(state, upto, excluded, claimed=False)
    run_settings = get_settings(settings.home, **taken[-1]["settings"])
    rows = store.read(include_excluded=False)  # outside the lock: rows appended meanwhile are cut off here
    rows = rows[~rows["feedback_id"].isin(list(excluded)) & (rows["feedback_id"] <= upto)].reset_index(drop=True)
    ids = [j["id"] for j in taken]
    started, t0 = utc_iso(), time.perf_counter()
    outcome = {"status": "running", "version": None, "reason": None, "jobs": ids, "upto": upto,
               "started": started, "finished": None, "seconds": None, "error": None, "metrics_delta": {}}
    jobs.atomic_write_json(jobs.paths(settings)["last_retrain"], outcome)
    advance = None
    try:
        if waiting < run_settings.k and not any(j["force"] for j in taken):
            outcome.update(status="skipped", reason=f"only {waiting} rows wait after exclusions (K is "
                                                    f"{run_settings.k}); nothing was trained")
        else:
            result = _train(run_settings, rows, upto, ids, sum(1 for i in excluded if i <= upto))
            outcome.update(status="promoted" if result.promoted else "rejected", version=result.version,
                           reason=result.reason, metrics_delta=result.delta(), feedback_rows=result.feedback_rows,
                           feedback_excluded=sum(1 for i in excluded if i <= upto))
            advance = upto
    except Exception as exc:  # recorded where `mushroom status` shows it; the champion keeps serving
        log.exception("retrain failed")
        outcome.update(status="failed", error=f"retrain failed: {exc.__class__.__name__}: {exc}",
                       traceback=traceback.format_exc()[-4000:])
    outcome.update(finished=utc_iso(), seconds=round(time.perf_counter() - t0, 3))
    if outcome["status"] == "promoted" and run_settings.report_on_promote:
        outcome["report_requested"] = True
    _settle(settings, store, outcome, taken, advance=advance)
    _drop_old_rejected(run_settings)
    return outcome


def _train(settings: Settings, rows, upto: int, job_ids: list[int], n_excluded: int):
    return training.train(settings, trigger="feedback", feedback=rows,
                          record_extra={"feedback_upto_id": int(upto), "feedback_jobs": job_ids,
                                        "feedback_excluded": int(n_excluded)})


def _settle(settings: Settings, store: FeedbackStore, outcome: dict, taken: list[dict], advance) -> None:
    """Under the lock: move the watermark, drop the jobs done, release unclaimed rows, ask for a report."""
    done = {j["id"] for j in taken}
    with store.lock():
        state = jobs.load_state(settings)
        state["jobs"] = [j for j in state["jobs"] if j["id"] not in done]
        if advance is not None:
            state["trained_upto"] = max(int(state["trained_upto"]), int(advance))
        if not state["jobs"]:  # rows no queued job covers count toward K again
            state["claimed_upto"] = state["trained_upto"]
        if outcome.pop("report_requested", False):
            state["report_requested"] = True
        jobs.save_state(settings, state)
        jobs.record_outcome(settings, outcome)


def _drop_old_rejected(settings: Settings) -> None:
    try:
        Registry(settings).drop_rejected_models(keep=settings.keep_rejected_models)
    except (RegistryError, OSError) as exc:
        log.warning("could not drop old refused models: %s", exc)


# ------------------------------------------------------------------ reports
class Reporter:
    """Runs one report at a time in a thread; a request during a run leaves one follow-up run."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = FeedbackStore(settings)
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_if_requested(self, state: dict) -> None:
        if self.busy or not state.get("report_requested"):
            return
        self._thread = threading.Thread(target=self._run, name="mushroom-report", daemon=True)
        self._thread.start()

    def _take_request(self) -> bool:
        with self.store.lock():
            state = jobs.load_state(self.settings)
            if not state.get("report_requested"):
                return False
            state["report_requested"] = False
            jobs.save_state(self.settings, state)
            return True

    def _run(self) -> None:
        while self._take_request():  # a promotion during this report asks again: one follow-up covers it
            last = jobs.last_report(self.settings) or {}
            if last.get("status") == "ok" and last.get("model_version") == Registry(self.settings).champion():
                continue  # the report that just ran already covers the champion this request was made for
            report(self.settings)


def report(settings: Settings) -> None:
    """One report through the runner (which writes reports/last_report.json); a failure before the
    runner could record it is recorded here."""
    started, path = utc_iso(), jobs.paths(settings)["last_report"]
    try:
        run_report_notebook(settings, progress=False)
    except Exception as exc:
        log.exception("report failed")
        previous = jobs.last_report(settings) or {}
        if str(previous.get("started") or "") < started:
            jobs.atomic_write_json(path, {"status": "failed", "model_version": Registry(settings).champion(),
                                          "rows": None, "started": started, "finished": utc_iso(),
                                          "reason": f"{exc.__class__.__name__}: {exc}"[:300], "html": None,
                                          "notebook": None})


# ------------------------------------------------------------------ the process
def serve(settings: Settings, idle_seconds: float, lock: FileLock) -> int:
    """The worker's loop; returns when idle for ``idle_seconds``, releasing the worker ``lock`` under the
    feedback lock, so a submitter either sees its job taken or finds no worker and starts one."""
    reporter = Reporter(settings)
    store = FeedbackStore(settings)
    idle_since = time.monotonic()
    seen = None
    while True:
        if not settings.artifacts_dir.is_dir():  # the home was deleted: nothing left to serve
            lock.release()
            return 0
        state = jobs.load_state(settings)
        if state["jobs"]:
            run_retrain(settings)
            idle_since = time.monotonic()
            continue
        reporter.start_if_requested(state)
        if reporter.busy:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= idle_seconds:
            with store.lock():
                state = jobs.load_state(settings)
                if not state["jobs"] and not state.get("report_requested"):
                    log.info("worker stopped (idle %.0f s)", idle_seconds)
                    for handler in logging.getLogger().handlers:
                        handler.flush()
                    lock.release()
                    return 0
            continue
        stamp = jobs._stamp(settings.state_path)
        deadline = time.monotonic() + 1.0
        while stamp == seen and time.monotonic() < deadline:  # bounded look for new work
            time.sleep(jobs.POLL)
            stamp = jobs._stamp(settings.state_path)
        seen = stamp


def warm_up() -> None:
    """Import the training stack once, before the first job: skops alone walks every scikit-learn estimator
    (seconds), which every retrain would otherwise wait for in a fresh process."""
    import skops.io  # noqa: F401  (lazy: a worker that lost the lock race exits without paying for it)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mushroom_lib.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--idle", type=float, default=None, help="seconds idle before exiting")
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s")
    settings = get_settings(args.home)
    lock_path = jobs.paths(settings)["lock"]
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return 0  # another worker serves this home
    try:
        # background work yields the CPU to the processes serving people (dashboard kernels, API workers)
        with contextlib.suppress(OSError):
            os.nice(10)
        warm_up()

        jobs.atomic_write_json(jobs.paths(settings)["pid"], {"pid": os.getpid(), "started": utc_iso()})
        log.info("worker started for %s", settings.home)
        return serve(settings, settings.worker_idle_seconds if args.idle is None else args.idle, lock)
    except Exception as exc:  # a bug outside one retrain: recorded where `mushroom status` shows it
        log.exception("worker crashed")
        jobs.atomic_write_json(jobs.paths(settings)["last_retrain"], {
            "status": "failed", "version": None, "reason": None, "jobs": [], "started": None,
            "finished": utc_iso(), "error": f"the background worker crashed: {exc.__class__.__name__}: {exc}"})
        return 1
    finally:
        if lock.is_locked:
            lock.release()


if __name__ == "__main__":
    sys.exit(main())

"""The feedback loop beside the store: label column, contradictions, the retrain decision, the receipt.

Rows are validated, scored and appended under the feedback lock; when K rows (not excluded) have
gathered, a retrain job is queued for the home's background worker (``worker.py``), which trains, gates,
promotes and records the outcome. Serving processes never train: they wait for, or watch, that outcome.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ..core.settings import Settings
from ..core.vocab import label_word, norm_column, utc_iso
from ..data.schema import (
    FEATURES,
    TARGET,
    SchemaError,
    records_to_frame,
    validate_frame,
)
from . import queue as jobs
from .store import PROD_COLUMNS, FeedbackStore

log = logging.getLogger("mushroom_lib")

#: where the true label may be, as ``vocab.norm_column`` spells a column name ("True_Label" -> "true-label")
LABEL_COLUMNS = ("class", "target", "true label", "true-label", "label")


@dataclass
class Receipt:
    """What ``submit_feedback`` did."""

    rows_written: int
    retrained: bool
    promoted: bool
    model_version: str | None
    rows_until_retrain: int
    reason: str | None = None
    contradictions: int = 0
    candidate_version: str | None = None
    metrics_delta: dict = field(default_factory=dict)
    retrain_seconds: float | None = None
    retrain_pending: bool = False
    future: Future | None = field(default=None, repr=False, compare=False)
    feedback_ids: list[int] = field(default_factory=list)  #: the ids of the rows this call wrote

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "future"}


def clean_source(source) -> str:
    """A source name as stored: letters, digits and -_.:@ only, at most 40 characters."""
    return "".join(ch for ch in str(source) if ch.isalnum() or ch in "-_.:@")[:40] or "api"


class FeedbackLoop:
    """Take labelled rows for one home, decide retrains, hand them to the worker, report their outcome."""

    def __init__(self, settings: Settings, scorer: Callable[[], object], version: Callable[[], str | None],
                 refresh: Callable[[], object] = lambda: None):
        self.settings = settings
        self.store = FeedbackStore(settings)
        self._scorer, self._version, self._refresh = scorer, version, refresh
        self._known: dict | None = None

    # ------------------------------------------------------------ contradictions
    def _known_labels(self) -> dict:
        if self._known is None:
            # lazy: data imports urllib/ssl/email for downloads (~25 modules); `mushroom status` never needs them
            from ..data.dataset import load_dataset

            if self.settings.dataset_path.exists():
                df = load_dataset(self.settings)
                self._known = dict(zip(map(tuple, df[FEATURES].to_numpy()), df[TARGET].to_numpy()))
            else:
                self._known = {}
        return self._known

    def contradicting(self, features: pd.DataFrame, labels) -> pd.Series:
        """Per row: True when its label contradicts the dataset's label for the identical feature row."""
        known = self._known_labels()
        words = [label_word(v) or v for v in labels]  # accept e/p or edible/poisonous
        flags = [key in known and label_word(known[key]) != label
                 for key, label in zip(map(tuple, features[FEATURES].to_numpy()), words)]
        return pd.Series(flags, index=features.index, dtype=bool)

    def contradictions(self, features: pd.DataFrame, labels) -> int:
        """How many rows contradict the dataset's label for identical features."""
        return int(self.contradicting(features, labels).sum())

    def _count(self, prod: pd.DataFrame) -> int:
        return self.contradictions(prod[FEATURES], prod["target"])

    # ------------------------------------------------------------ submitting
    def prepare(self, rows, source: str) -> tuple[pd.DataFrame, int]:
        """Validate labelled rows and add prediction, p_poisonous, model_version, timestamp and source."""
        frame = records_to_frame(rows)
        cols = {norm_column(c): c for c in frame.columns}
        label_col = next((cols[c] for c in LABEL_COLUMNS if c in cols), None)
        if label_col is None:
            raise SchemaError("feedback needs the true label in a 'class' column (e/edible or p/poisonous)",
                              column="class")
        checked = validate_frame(frame, require_label=True, label_column=norm_column(label_col))
        scorer = self._scorer()
        scored = scorer.score(checked.features)
        out = checked.features.copy()
        out["target"] = checked.labels.map(label_word).to_numpy()
        out["prediction"] = scored["prediction"].to_numpy()
        out["p_poisonous"] = scored["p_poisonous"].map(lambda v: f"{v:.6f}").to_numpy()
        out["model_version"] = scorer.version
        out["timestamp"] = utc_iso()
        out["source"] = clean_source(source)
        return out[PROD_COLUMNS[:-1]], self.contradictions(checked.features, out["target"])

    def submit(self, rows, *, wait: bool = True, source: str = "api",
               on_done: Callable[[Receipt], None] | None = None) -> Receipt:
        """Append labelled rows; queue a retrain when K rows wait. ``wait`` blocks for its outcome, else the
        receipt comes back at once with ``retrain_pending`` and a ``future`` (``on_done`` is called too)."""
        prepared, contradictions = self.prepare(rows, source)
        with self.store.lock():
            ids = self.store.append_ids(prepared, contradicting=contradictions, counter=self._count)
            job, until = self._decide(force=False)
        receipt = Receipt(len(ids), False, False, self._version(), until, contradictions=contradictions,
                          feedback_ids=ids)
        jobs.ensure_worker(self.settings)  # also on rows that queue nothing: the K-th row finds a warm worker
        return self._follow(receipt, job, wait, on_done)

    def retrain_now(self, *, wait: bool = True) -> Receipt:
        """Queue a retrain whatever the count (after an exclusion, say) and (optionally) wait for it."""
        with self.store.lock():
            job, until = self._decide(force=True)
        jobs.ensure_worker(self.settings)
        return self._follow(Receipt(0, False, False, self._version(), until), job, wait, None)

    def _decide(self, force: bool) -> tuple[dict | None, int]:
        """Caller holds the lock: queue a job if K rows wait (or ``force``); returns (job, rows until next)."""
        idx = self.store.summary(self._count)
        state = jobs.load_state(self.settings)
        excluded = self.store.excluded()
        pending = jobs.pending_rows(state, idx["last_id"], excluded)
        job = None
        if force or pending >= self.settings.k:
            job = jobs.enqueue(self.settings, state, idx["last_id"], force=force)
            jobs.save_state(self.settings, state)
            pending = 0
        elif not self.settings.state_path.exists():  # an older home: its derived count is kept from now on
            jobs.save_state(self.settings, state)
        return job, max(0, self.settings.k - pending)

    def _follow(self, receipt: Receipt, job: dict | None, wait: bool, on_done) -> Receipt:
        if job is None:
            if on_done:
                on_done(receipt)
            return receipt
        receipt.retrain_pending = True
        if wait:
            return self._settle(receipt, job["id"])
        future: Future = Future()

        def watch():
            try:
                final = self._settle(receipt, job["id"])
                if on_done:
                    on_done(final)
                future.set_result(final)
            except BaseException as exc:  # delivered through the future, never lost
                log.exception("watching the retrain outcome failed")
                future.set_exception(exc)

        receipt.future = future
        threading.Thread(target=watch, name="mushroom-retrain-watch", daemon=True).start()
        return receipt

    def _queued(self, job_id: int) -> bool:
        state = jobs._read(self.settings.state_path, {})
        return any(j.get("id") == job_id for j in (state or {}).get("jobs", []))

    def _settle(self, receipt: Receipt, job_id: int) -> Receipt:
        """Fill the receipt from the worker's outcome of ``job_id`` (bounded by settings.retrain_timeout)."""
        outcome = jobs.wait_for_outcome(self.settings, job_id, queued=self._queued)
        receipt.retrain_pending = False
        if outcome is None:
            receipt.reason = (f"the retrain did not finish within {self.settings.retrain_timeout:g} s; it goes "
                              "on in the background (see `mushroom status`)")
        else:
            receipt.retrained = outcome["status"] in ("promoted", "rejected")
            receipt.promoted = outcome["status"] == "promoted"
            receipt.candidate_version = outcome.get("version")
            receipt.reason = outcome.get("reason") or outcome.get("error")
            receipt.metrics_delta = outcome.get("metrics_delta") or {}
            receipt.retrain_seconds = outcome.get("seconds")
        self._refresh()
        receipt.model_version = self._version()
        receipt.rows_until_retrain = self.rows_until_retrain()
        return receipt

    # ------------------------------------------------------------ reading
    def rows_until_retrain(self) -> int:
        """Rows (not excluded) still needed before the next retrain is queued."""
        idx = self.store.summary(self._count)
        pending = jobs.pending_rows(jobs.load_state(self.settings), idx["last_id"], self.store.excluded())
        return max(0, self.settings.k - pending)

    def status(self) -> dict:
        """Feedback counts (per source, excluded, contradicting), K, the last retrain and report."""
        idx = self.store.summary(self._count)
        excluded = self.store.excluded()
        state = jobs.load_state(self.settings)
        return {
            "feedback_rows": idx["rows"],
            "feedback_sources": idx["sources"],
            "feedback_excluded": len(excluded),
            "rows_until_retrain": max(0, self.settings.k - jobs.pending_rows(state, idx["last_id"], excluded)),
            "retrain_queued": len(state["jobs"]),
            "contradicting_feedback_rows": idx["contradictions"],
            "last_retrain": jobs.last_retrain(self.settings),
            "last_report": jobs.last_report(self.settings),
            "worker_running": jobs.worker_running(self.settings),
        }

"""ModelService: the in-memory champion, predict, submit_feedback, retrain every K rows, hot swap.

Every ModelService (another thread, process, Voila kernel or notebook) checks ``champion.json`` with one
``os.stat`` before each prediction and swaps in a new champion when the pointer changed. A prediction
holds a reference to the model it started with, so a swap never disturbs a prediction in flight.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from .feedback import PROD_COLUMNS, FeedbackStore
from .registry import Registry, RegistryError
from .schema import FEATURES, LABELS, TARGET, SchemaError, records_to_frame, validate_frame
from .scoring import Scorer
from .settings import Settings, get_settings

log = logging.getLogger("mushroom_lib")


_GC_FROZEN = False


def _freeze_startup_objects() -> None:
    """Once per process, after the first model is loaded: move the objects alive now (modules, the model) out
    of the cyclic garbage collector's scans (``gc.freeze``). A full collection stops every thread; with these
    frozen it takes ~10 ms instead of ~100 ms, so predictions served while a retrain allocates stay fast."""
    global _GC_FROZEN
    if not _GC_FROZEN:
        _GC_FROZEN = True
        gc.freeze()


from .errors import NoChampionError  # noqa: E402,F401 (defined in errors.py; kept importable here)


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

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "future"}


class ModelService:
    """Predict with the champion, take feedback, retrain every K rows and swap models in place."""

    def __init__(self, home: str | Path | None = None, *, settings: Settings | None = None, **overrides):
        self.settings = settings or get_settings(home, **overrides)
        self.registry = Registry(self.settings)
        self.store = FeedbackStore(self.settings)
        self._scorer: Scorer | None = None
        self._stamp: tuple | None = None
        self._bad_stamp: tuple | None = None
        self._swap_lock = threading.Lock()
        self._retraining = threading.Event()  # set while this service retrains; it swaps the result in itself
        self._executor: ThreadPoolExecutor | None = None
        self._known: dict | None = None
        self.last_error: str | None = None
        self.refresh()
        if self._scorer is not None:
            _freeze_startup_objects()

    # ------------------------------------------------------------------ model
    def refresh(self) -> bool:
        """Swap in the champion if champion.json changed since the last look. Returns True on a swap."""
        if self._retraining.is_set():  # our own retrain swaps its model in when it ends: predictions meanwhile
            return False               # keep the current one instead of loading the new file a second time
        stamp = self.registry.champion_stamp()
        if stamp == self._stamp or stamp is None or stamp == self._bad_stamp:
            return False
        with self._swap_lock:
            stamp = self.registry.champion_stamp()
            if stamp == self._stamp:
                return False
            try:
                version = self.registry.champion()
                if self._scorer is not None and version == self._scorer.version:
                    self._stamp = stamp
                    return False
                scorer = Scorer(self.registry.load(version))
            except (RegistryError, OSError, ValueError) as exc:
                # the last good model keeps serving
                self._bad_stamp = stamp
                self.last_error = str(exc)
                if self._scorer is not None:  # with nothing to keep, the caller gets the reason instead
                    log.error("champion pointer refused, keeping %s: %s", self._scorer.version, exc)
                return False
            self._scorer, self._stamp = scorer, stamp
            self.last_error = None
            return True

    def _swap_to(self, version: str) -> None:
        scorer = Scorer(self.registry.load(version))
        with self._swap_lock:
            self._scorer = scorer
            self._stamp = self.registry.champion_stamp()

    @property
    def scorer(self) -> Scorer:
        """The serving scorer (after a cheap check for a newer champion)."""
        self.refresh()
        if self._scorer is None:
            if self.last_error:
                raise NoChampionError(f"the champion was refused: {self.last_error} (promote another "
                                      "version with `mushroom models promote vNNNN` or run `mushroom train`)")
            raise NoChampionError(f"no trained model in {self.settings.artifacts_dir}; "
                                  "run `mushroom train` (or `make all`) first")
        return self._scorer

    @property
    def model_version(self) -> str | None:
        """The version serving now (None before the first training)."""
        self.refresh()
        return self._scorer.version if self._scorer else None

    # ---------------------------------------------------------------- predict
    def predict(self, rows, *, validated: bool = False) -> pd.DataFrame:
        """Score a DataFrame, a dict (one mushroom) or a list of dicts with the champion.

        Returns the input columns plus prediction (edible|poisonous), p_poisonous, uncertain,
        unseen_codes and model_version. Raises SchemaError on bad input.
        """
        scorer = self.scorer  # one model for the whole call, whatever happens meanwhile
        quick = scorer.predict_one(rows)  # one plain valid record: a lean path with the same answer
        if quick is not None:
            return quick
        frame = records_to_frame(rows)
        feats = frame if validated else validate_frame(frame).features
        scored = scorer.score(feats)
        base = frame.reset_index(drop=True)
        scored.index = base.index
        keep = [c for c in base.columns if c not in scored.columns]
        return pd.concat([base[keep], scored], axis=1)

    # --------------------------------------------------------------- identify
    def identify(self, given: dict) -> dict:
        """Identify from any subset of the 22 features: the worst case over the dataset's known mushrooms that
        match (``identify.answer``: prediction, matching_known, matching_poisonous, reason, ask_next, note);
        with all 22 given, also ``model``: the champion's scored row. Raises SchemaError on a bad name/code."""
        from . import identify
        from .data import load_dataset

        if getattr(self, "_identify_frame", None) is None:
            if not self.settings.dataset_path.exists():
                raise NoChampionError(f"no dataset in {self.settings.data_dir}; run `mushroom data` first")
            self._identify_frame = load_dataset(self.settings)
        ans = identify.answer(self._identify_frame, given)
        if len(ans["given"]) == len(FEATURES):
            row = self.predict(ans["given"]).iloc[0]
            ans["model"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k not in FEATURES}
        return ans

    # --------------------------------------------------------------- feedback
    def _known_labels(self) -> dict:
        if self._known is None:
            from .data import load_dataset

            if self.settings.dataset_path.exists():
                df = load_dataset(self.settings)
                self._known = dict(zip(map(tuple, df[FEATURES].to_numpy()), df[TARGET].to_numpy()))
            else:
                self._known = {}
        return self._known

    def contradictions(self, features: pd.DataFrame, labels) -> int:
        """Rows whose label contradicts the dataset's label for the identical feature row."""
        known = self._known_labels()
        words = [LABELS.get(v, v) for v in labels]  # accept e/p or edible/poisonous
        return sum(1 for key, label in zip(map(tuple, features[FEATURES].to_numpy()), words)
                   if key in known and LABELS[known[key]] != label)

    def consumed_rows(self) -> int:
        """Feedback rows used by the latest settled model version (derived from the registry).

        A version left as a bare ``candidate`` (a process killed between registering and promoting)
        does not count, so the next submission retrains again.
        """
        champion = self.registry.champion()
        for version in reversed(self.registry.versions()):
            meta = self.registry.metadata(version)
            if meta.get("status") != "candidate" or version == champion:
                return int(meta.get("feedback_rows", 0))
        return 0

    def rows_until_retrain(self, total: int | None = None) -> int:
        total = self.store.count() if total is None else total
        return max(0, self.settings.k - (total - self.consumed_rows()))

    def _prepare_feedback(self, rows, source: str) -> tuple[pd.DataFrame, int]:
        frame = records_to_frame(rows)
        cols = {str(c).strip().lower(): c for c in frame.columns}
        label_col = next((cols[c] for c in ("class", "target", "true label", "true_label", "label")
                          if c in cols), None)
        if label_col is None:
            raise SchemaError("feedback needs the true label in a 'class' column (e/edible or p/poisonous)",
                              column="class")
        checked = validate_frame(frame, require_label=True, label_column=str(label_col).strip().lower())
        scorer = self.scorer
        scored = scorer.score(checked.features)
        out = checked.features.copy()
        out["target"] = checked.labels.map(LABELS).to_numpy()
        out["prediction"] = scored["prediction"].to_numpy()
        out["p_poisonous"] = scored["p_poisonous"].map(lambda v: f"{v:.6f}").to_numpy()
        out["model_version"] = scorer.version
        out["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out["source"] = "".join(ch for ch in str(source) if ch.isalnum() or ch in "-_.:@")[:40] or "api"
        return out[PROD_COLUMNS], self.contradictions(checked.features, out["target"])

    def submit_feedback(self, rows, *, wait: bool = True, source: str = "api",
                        on_done: Callable[[Receipt], None] | None = None) -> Receipt:
        """Validate and append labelled rows; retrain when K rows have gathered since the last retrain.

        With ``wait=False`` the retrain runs in a background thread: the receipt comes back at once with
        ``retrain_pending`` set and ``future`` resolving to the final receipt (``on_done`` is called too).
        """
        prepared, contradictions = self._prepare_feedback(rows, source)
        if not wait:
            with self.store.lock():
                written = self.store.append(prepared)
                total = self.store.count()
                pending = total - self.consumed_rows()
            receipt = Receipt(written, False, False, self.model_version, max(0, self.settings.k - pending),
                              contradictions=contradictions)
            if pending >= self.settings.k:
                receipt.retrain_pending = True
                receipt.future = self._background().submit(self._retrain_job, receipt, on_done)
            elif on_done:
                on_done(receipt)
            return receipt
        with self.store.lock():
            written = self.store.append(prepared)
            receipt = Receipt(written, False, False, None, 0, contradictions=contradictions)
            self._retrain_if_due(receipt)
        return receipt

    def _background(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mushroom-retrain")
        return self._executor

    def _retrain_job(self, receipt: Receipt, on_done) -> Receipt:
        try:
            with self.store.lock():
                self._retrain_if_due(receipt)
        except Exception as exc:  # reported through the receipt; the champion keeps serving
            log.exception("background retrain failed")
            receipt.reason = f"retrain failed: {exc}"
            receipt.model_version = self.model_version
        receipt.retrain_pending = False
        if on_done:
            on_done(receipt)
        return receipt

    def _retrain_if_due(self, receipt: Receipt) -> None:
        """Caller holds the feedback lock: retrain once if K rows are waiting, then fill the receipt."""
        from . import training

        total = self.store.count()
        if total - self.consumed_rows() >= self.settings.k:
            self._retraining.set()
            try:
                result = training.train(self.settings, trigger="feedback", feedback=self.store.read())
                receipt.retrained = True
                receipt.promoted = result.promoted
                receipt.candidate_version = result.version
                receipt.reason = result.reason
                receipt.metrics_delta = result.delta()
                receipt.retrain_seconds = result.seconds
                if result.promoted:
                    self._swap_to(result.version)
            finally:
                self._retraining.clear()
            if result.promoted:
                self._report_after_promotion(result.version)
        receipt.model_version = self.model_version
        receipt.rows_until_retrain = self.rows_until_retrain(total)

    def _report_after_promotion(self, version: str) -> None:
        """Start a monitoring report in a separate process (Evidently stays out of this one)."""
        if not self.settings.report_on_promote:
            return
        env = {**os.environ, "DO_NOT_TRACK": "1", "MUSHROOM_HOME": str(self.settings.home)}
        try:
            subprocess.Popen([sys.executable, "-m", "mushroom_lib.cli", "--home", str(self.settings.home),
                              "report", "--quiet"], env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.warning("could not start the monitoring report for %s: %s", version, exc)

    # ----------------------------------------------------------------- status
    def status(self) -> dict:
        """Champion, its holdout metrics and threshold, feedback counts, the last retrain's outcome."""
        version = self.model_version
        meta = self.registry.metadata(version) if version else {}
        total = self.store.count()
        last = None
        for v in reversed(self.registry.versions()):
            m = self.registry.metadata(v)
            if m.get("trigger") == "feedback":
                last = {"version": v, "status": m.get("status"), "reason": m.get("reason") or
                        (m.get("gate") or {}).get("reason"), "created_utc": m.get("created_utc")}
                break
        fb = self.store.read() if total else None
        contradictions = self.contradictions(fb[FEATURES], fb["target"]) if fb is not None and len(fb) else 0
        return {
            "model_version": version,
            "metrics": meta.get("holdout_metrics", {}),
            "threshold": meta.get("threshold"),
            "created_utc": meta.get("created_utc"),
            "feedback_rows": total,
            "rows_until_retrain": self.rows_until_retrain(total) if version else None,
            "k": self.settings.k,
            "last_retrain": last,
            "contradicting_feedback_rows": contradictions,
            "versions": len(self.registry.versions()),
            "home": str(self.settings.home),
            "load_error": self.last_error,
        }

    def close(self) -> None:
        """Wait for a background retrain to finish."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)

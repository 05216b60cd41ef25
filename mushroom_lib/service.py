"""ModelService: the library's facade over one home: predict with the champion, identify, feedback, status.
Never imports a surface (CLI, API, dashboard); it never trains (the background worker does).

Retrains run in the home's background worker (``worker.py``), never in a serving process; the service
swaps the champion in at its next call after the worker promoted one.

Every ModelService (another thread, process, Voila kernel or notebook) checks ``champion.json`` with one
``os.stat`` before each prediction and swaps in a new champion when the pointer changed. A prediction
holds a reference to the model it started with, so a swap never disturbs a prediction in flight.
Verified scorers of recent versions are kept (``VersionLoads``), and a server's watch thread loads a new
version as soon as its folder appears, before it is promoted, so the request that meets the promotion
finds it loaded (a promotion is still served from the next request: that request waits if it is not).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

import pandas as pd

from .core.settings import Settings, get_settings
from .data.schema import CODES, FEATURES, records_to_frame, validate_frame
from .feedback.loop import FeedbackLoop, Receipt
from .feedback.review import FeedbackReview
from .model.known import codes_of
from .registry.versions import (
    KNOWN,
    RECORD,
    Registry,
    RegistryError,
    parse_version,
    version_name,
)
from .scoring.loader import plan_scorer
from .scoring.scorer import Scorer
from .training.upgrade import upgrade_home

__all__ = ["ModelService", "NoChampionError", "Receipt"]

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


from .core.errors import NoChampionError  # noqa: E402,F401 (defined in errors.py; kept importable here)


def _first_known_row(scorer: Scorer) -> dict[str, str]:
    """A row to answer right after a load: a scorer's first one-row answer builds its lazy parts (the layout of
    the request's columns, ~10-40 ms of pandas validation; the neighbour search tree), so the loader pays for
    them instead of the first request it serves. A known row is a cheap one to score (nothing to search)."""
    keys = scorer.known.keys[:1] if scorer.known is not None else []
    codes = codes_of(keys)[0] if len(keys) else [0] * len(FEATURES)
    return {f: list(CODES[f])[int(c)] for f, c in zip(FEATURES, codes)}


class VersionLoads:
    """Verified scorers of the last few versions (the served one, its predecessor, a new candidate), each
    loaded once (from the saved scoring plan when it checks out, else the model file through the registry).

    A thread asking for a version another thread is loading waits for that load instead of starting its own;
    a load that fails is not kept, so the next ask tries again and meets the error itself.
    """

    def __init__(self, settings: Settings, registry: Registry, keep: int = 3):
        self.settings, self.registry, self.keep = settings, registry, keep
        self._lock = threading.Lock()
        self._ready: OrderedDict[tuple, Scorer] = OrderedDict()
        self._loading: dict[tuple, Future] = {}

    def _key(self, version: str) -> tuple | None:
        """The version with the identity of its immutable files: one replaced or touched since the load (or a
        version folder made again) is another key, so it is loaded and verified again."""
        folder = self.registry.models_dir / version
        try:
            stats = [os.stat(folder / name) for name in (RECORD, "model.skops", KNOWN)]
        except OSError:
            return None
        return (version, *((st.st_ino, st.st_mtime_ns, st.st_size) for st in stats))

    def get(self, version: str) -> Scorer:
        """The version's scorer: kept, loading in another thread (waited for), or loaded now.
        Raises RegistryError/OSError/ValueError when the version does not load."""
        version = version_name(parse_version(version))
        key = self._key(version)
        if key is None:  # a file missing (e.g. a home from before records): the registry's load says what to do
            return self._load(version)
        with self._lock:
            if key in self._ready:
                self._ready.move_to_end(key)
                return self._ready[key]
            pending = self._loading.get(key)
            mine = pending is None
            if mine:
                pending = self._loading[key] = Future()
        if not mine:
            return pending.result()  # the other thread's scorer, or its exception raised here too
        try:
            scorer = self._load(version)
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._loading[key]
            self._ready[key] = scorer
            while len(self._ready) > self.keep:
                self._ready.popitem(last=False)
        pending.set_result(scorer)
        return scorer

    def _load(self, version: str) -> Scorer:
        # the saved plan is verified against the record and starts without loading the model file
        scorer = plan_scorer(self.settings, version) or Scorer(self.registry.load(version))
        scorer.predict_one(_first_known_row(scorer))  # see _first_known_row
        return scorer

    def preload(self, version: str) -> None:
        """Load a version before anyone asks for it. One that does not load is left to its promotion (which
        verifies it and refuses it) or to the service's own load (which records why)."""
        try:
            self.get(version)
        except (RegistryError, OSError, ValueError) as exc:
            log.info("version %s not loaded ahead: %s", version, exc)


class ModelService:
    """Predict with the champion and swap models in place; feedback is handed to the FeedbackLoop."""

    def __init__(self, home: str | Path | None = None, *, settings: Settings | None = None, **overrides):
        self.settings = settings or get_settings(home, **overrides)
        self.registry = Registry(self.settings)
        upgrade_home(self.settings)  # a home from an earlier release: once, explicitly, before the first load
        self._scorer: Scorer | None = None
        self._stamp: tuple | None = None
        self._bad_stamp: tuple | None = None
        self._swap_lock = threading.Lock()
        self._loads = VersionLoads(self.settings, self.registry)
        self._watcher: threading.Thread | None = None
        self.last_error: str | None = None
        self.loop = FeedbackLoop(self.settings, lambda: self.scorer, lambda: self.model_version, self.refresh)
        self.store = self.loop.store
        self.feedback = FeedbackReview(self.loop)
        self.refresh()
        if self._scorer is not None:
            _freeze_startup_objects()

    # ------------------------------------------------------------------ model
    def refresh(self) -> bool:
        """Swap in the champion if champion.json changed since the last look. Returns True on a swap."""
        stamp = self.registry.champion_stamp()
        if stamp == self._stamp or stamp is None or stamp == self._bad_stamp:
            return False
        # a promotion is served from the next call on: a call that finds a load in flight (the watch thread's)
        # waits for it rather than answering with the model the pointer no longer names
        with self._swap_lock:
            return self._load_champion()

    def _load_champion(self) -> bool:
        """Caller holds the swap lock: load the champion named now, or record why it was refused."""
        stamp = self.registry.champion_stamp()
        if stamp == self._stamp:
            return False
        try:
            version = self.registry.champion()
            if version is None:  # the pointer vanished between the stat and the read
                return False
            if self._scorer is not None and version == self._scorer.version:
                self._stamp = stamp
                return False
            scorer = self._loads.get(version)  # at once when the watch thread loaded it ahead
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

    def watch(self, interval: float = 0.05) -> None:
        """Follow the home in a background thread, so that a server's requests do not pay for loads: a new
        version is loaded as soon as its folder appears (a retrain registers it, then verifies it, then
        promotes it), and a new champion is swapped in as soon as champion.json changes. A request that meets
        the pointer change first swaps itself: at once when the version is loaded, else after its load."""
        if self._watcher is not None:
            return
        self._stop = threading.Event()

        def run() -> None:
            seen = None
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                    seen = self._load_new_version(seen)
                except Exception:  # a refused pointer is recorded by refresh; nothing else may end the watch
                    log.exception("champion watch")

        self._watcher = threading.Thread(target=run, name="mushroom-champion-watch", daemon=True)
        self._watcher.start()

    def _load_new_version(self, seen: tuple | None) -> tuple | None:
        """When the models folder changed since ``seen``: load its newest version ahead if it is not the one
        served. Returns the folder's stamp."""
        try:
            st = os.stat(self.registry.models_dir)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != seen:
            versions = self.registry.versions()
            if versions and versions[-1] != self.serving_version:
                self._loads.preload(versions[-1])
        return stamp

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
    def serving_version(self) -> str | None:
        """The version held in memory now, without looking at champion.json (see ``watch``)."""
        return self._scorer.version if self._scorer else None

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
        from .data import identify
        from .data.dataset import load_dataset

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
    def contradictions(self, features: pd.DataFrame, labels) -> int:
        """Rows whose label contradicts the dataset's label for the identical feature row."""
        return self.loop.contradictions(features, labels)

    def rows_until_retrain(self) -> int:
        """Feedback rows (not excluded) still needed before the next retrain."""
        return self.loop.rows_until_retrain()

    def submit_feedback(self, rows, *, wait: bool = True, source: str = "api",
                        on_done: Callable[[Receipt], None] | None = None) -> Receipt:
        """Validate and append labelled rows; when K rows have gathered, the home's worker retrains.

        ``wait=True`` returns once that retrain's outcome is recorded (the new champion already swapped in);
        with ``wait=False`` the receipt comes back at once with ``retrain_pending`` set and ``future``
        resolving to the final receipt (``on_done`` is called too).
        """
        return self.loop.submit(rows, wait=wait, source=source, on_done=on_done)

    # ----------------------------------------------------------------- status
    def status(self) -> dict:
        """Champion, its holdout metrics and threshold, feedback counts, the last retrain and report."""
        version = self.model_version
        meta = self.registry.metadata(version) if version else {}
        loop = self.loop.status()
        return {
            "model_version": version,
            "metrics": meta.get("holdout_metrics", {}),
            "threshold": meta.get("threshold"),
            "created_utc": meta.get("created_utc"),
            **loop,
            "rows_until_retrain": loop["rows_until_retrain"] if version else None,
            "k": self.settings.k,
            "versions": len(self.registry.versions()),
            "home": str(self.settings.home),
            "load_error": self.last_error,
        }

    def close(self) -> None:
        """Stop the champion watch, if any (retrains run in the home's worker, not here)."""
        if self._watcher is not None:
            self._stop.set()
            self._watcher.join(timeout=5)
            self._watcher = None

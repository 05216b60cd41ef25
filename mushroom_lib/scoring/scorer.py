"""Scoring rows with one model version: the exact path (the fitted Pipeline's own predict_proba), the safety
rules (``model.rules.decide``, the one implementation) on every row, and the scored columns. Every caller
scores through ``Scorer``; its one-row path only lays the row out differently, then calls the same rules.

``Scorer`` scores each distinct row once (cached per version) and asks the accelerator (``accelerator.py``)
for p_poisonous when the model has one; the accelerator hands rows it cannot decide exactly back to
``exact_p_poisonous``. Built from a saved plan (``Scorer.from_plan``, see ``plan_cache``), it needs neither
pandas nor scikit-learn for ``score_codes`` and loads the model only when a row needs the Pipeline.
Entry points: ``score_codes(codes)`` (arrays in SCORED_COLUMNS order), ``score(frame)`` (a DataFrame),
``predict_one(rows)`` (the lean one-row path of ``ModelService.predict``), ``p_poisonous(frame)`` and
``pca(frame)``.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from ..core.vocab import norm_column
from ..data.schema import CODES, FEATURES, validate_frame
from ..model import pipeline as M
from ..model import rules
from ..model.known import keys_of as row_keys
from .accelerator import (
    CODE_INDEX,
    CODE_LIST,
    Accelerator,
    ScoringPlan,
    codes_to_frame,
    seen_mask,
)

SCORED_COLUMNS = ["prediction", "p_poisonous", "uncertain", "unseen_codes", "nearest_known", "reason",
                  "model_version"]
_CACHE_MAX = 1 << 18  # distinct rows remembered per model version (~30 MB at most)
_LOOKUPS = [CODE_INDEX[f] for f in FEATURES]

__all__ = ["CODE_LIST", "SCORED_COLUMNS", "Scorer", "codes_to_frame", "exact_p_poisonous", "feature_codes",
           "row_keys"]


def feature_codes(features) -> np.ndarray:
    """Code indices (n, 22) of a validated feature DataFrame (stripped one-letter codes, any index)."""
    import pandas as pd

    out = np.empty((len(features), len(FEATURES)), dtype=np.int16)
    for j, f in enumerate(FEATURES):
        idx, uniques = pd.factorize(features[f], use_na_sentinel=True)
        lookup = CODE_INDEX[f]
        table = np.array([lookup.get(u, -1) if isinstance(u, str) else -1 for u in uniques] + [-1], dtype=np.int16)
        col = table[idx]
        if (col < 0).any():
            bad = features[f].iloc[int(np.flatnonzero(col < 0)[0])]
            raise ValueError(f"column {f!r} holds {bad!r}, which is not a valid code; validate the frame first")
        out[:, j] = col
    return out


def exact_p_poisonous(pipeline, codes: np.ndarray) -> np.ndarray:
    """The exact path: the fitted Pipeline's own ``predict_proba`` for rows given as code indices."""
    return M.p_poisonous(pipeline, codes_to_frame(codes))


def _distinct(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(distinct rows, their keys, inverse: row -> distinct index, or None when every row is distinct)."""
    keys = row_keys(codes)
    if len(codes) < 2:
        return codes, keys, None
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(uniq) == len(keys):
        return codes, keys, None
    return codes[first], uniq, inverse.reshape(-1)


class Scorer:
    """Scores rows with one model version: p_poisonous exactly as its Pipeline gives it, then the known-set rules.

    ``Scorer(loaded)`` takes a loaded model (``fast=False``: no accelerator, the Pipeline scores every distinct
    row); ``Scorer.from_plan(plan, load)`` scores from a saved plan and calls ``load()`` (-> the loaded model)
    only if a row needs the Pipeline itself.
    """

    def __init__(self, loaded, *, fast: bool = True):
        self._setup(loaded.version, loaded.threshold, getattr(loaded, "known", None), loaded=loaded, load=None)
        self.accelerator = Accelerator.for_model(loaded) if fast else None
        plan = self.accelerator.plan if self.accelerator is not None else None
        self._seen_mask = plan.seen_mask if plan is not None else seen_mask(M.seen_codes(loaded.pipeline))
        self._seen = rules.seen_flat(self._seen_mask)

    @classmethod
    def from_plan(cls, plan: ScoringPlan, load) -> Scorer:
        """A scorer that needs no scikit-learn until ``load()`` (-> a loaded model) is needed for a fragile row."""
        self = cls.__new__(cls)
        self._setup(plan.version, plan.threshold, plan.known, loaded=None, load=load)
        self.accelerator = Accelerator(plan=plan)
        self._seen_mask = plan.seen_mask
        self._seen = rules.seen_flat(plan.seen_mask)
        return self

    def _setup(self, version: str, threshold: float, known, *, loaded, load) -> None:
        self.version, self.threshold, self.known = version, float(threshold), known
        self._loaded, self._load, self._load_lock = loaded, load, threading.Lock()
        self._cache: dict[int, float] = {}
        self.stats = {"rows": 0, "distinct": 0, "cached": 0, "pipeline": 0}

    # -------------------------------------------------------------- the model
    @property
    def loaded(self):
        """The loaded model (loaded on first use when this scorer was made from a plan)."""
        if self._loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    loaded = self._load()
                    if loaded.version != self.version:
                        raise RuntimeError(f"the plan of {self.version} met model {loaded.version}")
                    self._loaded = loaded
        return self._loaded

    @property
    def pipeline(self):
        return self.loaded.pipeline

    @property
    def model_loaded(self) -> bool:
        """False while a scorer made from a plan has not needed its model."""
        return self._loaded is not None

    @property
    def from_saved_plan(self) -> bool:
        """True when this scorer was made from a saved plan (``from_plan``)."""
        return self._load is not None

    @property
    def plan(self) -> ScoringPlan | None:
        """The accelerator's plan (KNN models), which ``plan_cache.remember_plan`` saves."""
        return self.accelerator.plan if self.accelerator is not None else None

    @property
    def fast(self) -> bool:
        """True when the accelerator answers (else the Pipeline scores every distinct row)."""
        return self.accelerator is not None

    @property
    def seen(self) -> dict[str, set[str]]:
        """Codes the encoder saw in training, per feature."""
        return {f: {c for c, s in zip(CODE_LIST[f], m) if s} for f, m in zip(FEATURES, self._seen_mask)}

    def clear_cache(self) -> None:
        """Forget the distinct rows scored so far (benchmarks of cold rows)."""
        self._cache.clear()

    def __getstate__(self) -> dict:
        """Picklable (dask processes, distributed workers): without the lock and the row cache.

        A scorer made from a plan pickles its loader, so give ``from_plan`` a picklable one.
        """
        return {**self.__dict__, "_cache": {}, "_load_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()

    def __dask_tokenize__(self):
        sha = self.plan.model_sha256 if self.plan is not None else None
        if sha is None and self._loaded is not None:
            sha = (getattr(self._loaded, "metadata", None) or {}).get("model_sha256")
        return ("mushroom-scorer", self.version, self.threshold, sha or id(self))

    # -------------------------------------------------------------- p_poisonous
    def _exact(self, codes: np.ndarray) -> np.ndarray:
        self.stats["pipeline"] += len(codes)
        return exact_p_poisonous(self.pipeline, codes)

    def _p_distinct(self, codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """p_poisonous of distinct rows: from the cache, else the accelerator, else the Pipeline."""
        cache = self._cache
        p = np.fromiter((cache.get(k, np.nan) for k in keys.tolist()), dtype=np.float64, count=len(keys))
        todo = np.flatnonzero(np.isnan(p))
        if len(todo):
            rows = codes[todo]
            p[todo] = self._exact(rows) if self.accelerator is None else \
                self.accelerator.p_poisonous(rows, self._exact)
            if len(cache) + len(todo) > _CACHE_MAX:
                cache.clear()
            cache.update(zip(keys[todo].tolist(), p[todo].tolist()))
        self.stats["distinct"] += len(keys)
        self.stats["cached"] += len(keys) - len(todo)
        return p

    def p_poisonous(self, features) -> np.ndarray:
        """The model's vote per row of a validated feature frame (no rules applied)."""
        codes = feature_codes(features)
        self.stats["rows"] += len(codes)
        distinct, keys, inverse = _distinct(codes)
        p = self._p_distinct(distinct, keys)
        return p if inverse is None else p[inverse]

    def pca(self, features) -> np.ndarray:
        """PCA coordinates per row of a validated feature frame."""
        if self.accelerator is None:
            return self.pipeline[:-1].transform(features[FEATURES])
        return self.accelerator.embedding.embed(feature_codes(features))

    # -------------------------------------------------------------- the scored columns
    def unseen_codes(self, codes: np.ndarray) -> np.ndarray:
        """'col=code;...' per row for valid codes never seen in training ('' for most rows)."""
        return rules.unseen_codes(codes, self._seen)

    def explain(self, codes: np.ndarray) -> tuple[np.ndarray, rules.Evidence, rules.Decision]:
        """(p_poisonous, the rules' evidence, their decision) for distinct rows of code indices (n, 22)."""
        keys = row_keys(codes)
        p = self._p_distinct(codes, keys)
        ev = rules.evidence(self.known, self._seen, codes)
        return p, ev, rules.decide(p, self.threshold, ev)

    def score_codes(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """The scored columns (SCORED_COLUMNS order) as arrays for rows given as code indices (n, 22).

        p_poisonous stays the model's vote; prediction, uncertain and reason are ``rules.decide``'s.
        """
        self.stats["rows"] += len(codes)
        distinct, keys, inverse = _distinct(codes)
        p = self._p_distinct(distinct, keys)
        ev = rules.evidence(self.known, self._seen, distinct)
        decision = rules.decide(p, self.threshold, ev)
        cols = {"prediction": M.label_words(decision.called), "p_poisonous": p, "uncertain": decision.uncertain,
                "unseen_codes": ev.unseen, "nearest_known": ev.nearest, "reason": decision.reason,
                "model_version": np.full(len(distinct), self.version, dtype=object)}
        return {c: cols[c] if inverse is None else cols[c][inverse] for c in SCORED_COLUMNS}

    def score(self, features):
        """A DataFrame of the scored columns (SCORED_COLUMNS) for a validated feature frame, on its index."""
        import pandas as pd

        return pd.DataFrame(self.score_codes(feature_codes(features)), index=features.index)

    # -------------------------------------------------------------- one row
    def predict_one(self, rows, *, as_record: bool = False):
        """The lean path of ``ModelService.predict`` for one mushroom (a dict or a one-row DataFrame).

        Returns exactly what the general path returns (input columns, then the scored columns), or None
        when the input is not a plain, valid one-row record of strings: the general path then validates
        it (and raises the usual SchemaError naming row, column, value and the valid codes). With
        ``as_record`` the row comes as one dict (column -> value) instead of a one-row DataFrame.
        """
        import pandas as pd

        record = _one_record(rows, pd)
        if record is None:
            return None
        names, values = record
        layout = _layout(names)
        if layout is False:
            return None
        positions, keep = layout
        code = _one_row_codes(values, positions)
        if code is None or any(type(values[i]) is not str for i in keep):
            return None  # not valid, or pandas would infer another dtype: the general path decides
        cols = self.score_codes(code)
        if as_record:  # the REST API's one-row answer: no DataFrame to build and take apart again
            out = {names[i]: values[i] for i in keep}
            out.update((name, col[0]) for name, col in cols.items())
            return out
        out = {names[i]: np.array([values[i]], dtype=object) for i in keep}
        out.update(cols)
        return pd.DataFrame(out, index=pd.RangeIndex(1), copy=False)


def _one_record(rows, pd) -> tuple[tuple, tuple] | None:
    """(column names, values) of a dict or a one-row all-object DataFrame; None for anything else."""
    if isinstance(rows, dict):
        return tuple(rows), tuple(rows.values())
    if isinstance(rows, pd.DataFrame) and len(rows) == 1 and len(rows.columns):
        if not all(dt == object for dt in rows.dtypes):
            return None  # other dtypes: the general path converts and validates them
        return tuple(rows.columns), tuple(rows.to_numpy()[0])
    return None


def _one_row_codes(values: tuple, positions: list[int]) -> np.ndarray | None:
    """Code indices (1, 22) of one record's feature values (padding stripped); None if any is not a valid code."""
    code = np.empty((1, len(FEATURES)), dtype=np.int16)
    for j, (pos, lookup) in enumerate(zip(positions, _LOOKUPS)):
        v = values[pos]
        if type(v) is not str:
            return None
        c = lookup.get(v)
        if c is None:
            c = lookup.get(v.strip())
            if c is None:
                return None
        code[0, j] = c
    return code


@functools.lru_cache(maxsize=256)
def _layout(names: tuple):
    """Where each feature sits in a record with these column names, and which columns the output keeps.

    Cached for the process (it depends on the names only), so a newly loaded version's first request
    does not pay schema's check again.

    False when the names are not acceptable as they stand (duplicates, missing features, non-string
    names, or anything ``validate_frame`` refuses): the general path handles those.
    """
    import pandas as pd

    if pd.get_option("future.infer_string") or not all(isinstance(n, str) for n in names):
        return False
    norm = [norm_column(n) for n in names]
    if len(set(norm)) != len(norm) or not set(FEATURES) <= set(norm):
        return False
    probe = {n: CODE_LIST[nn][0] if nn in CODES else "" for n, nn in zip(names, norm)}
    try:  # the column rules are schema's: ask it once per set of names
        validate_frame(pd.DataFrame([probe], columns=list(names)))
    except ValueError:
        return False
    positions = [norm.index(f) for f in FEATURES]
    keep = [i for i, n in enumerate(names) if n not in SCORED_COLUMNS]
    return positions, keep

"""Scoring a validated feature frame with a loaded model: p_poisonous, decisions, PCA coordinates.

Every caller (ModelService, CLI, dashboard, reports) scores through ``Scorer`` so preprocessing exists once:
the fitted Pipeline. ``Scorer`` answers exactly like that Pipeline, only faster:

* **Embedding as table look-ups.** After a per-feature encoder (target, one-hot or ordinal), StandardScaler
  and PCA are affine, so a row's PCA coordinates are ``bias + sum_f table_f[code_f]``: 22 look-ups. The
  tables are read off the fitted pipeline itself (it transforms a base row and every one-code variation of
  it), then checked against the pipeline on random rows; a pipeline that is not additive keeps the plain
  ``pipeline.transform`` path.
* **Distinct rows only.** Rows are turned into one int64 key each (mixed radix over the code indices);
  only distinct keys are scored, answers are scattered back, and scored keys are cached per model version.
* **The classifier is the fitted one.** KNN: the neighbours of the embedded points among the classifier's
  own training points (``_fit_X``, searched with scipy's KD-tree: the same Euclidean distances, and
  importable without scikit-learn) and scikit-learn's distance-weighted vote. Tree ensembles: the fitted
  ``predict_proba``. Where a rounding-level difference between the table embedding and
  ``pipeline.transform`` could matter (a point at ~zero distance from a training point, a tie at the k-th
  neighbour between classes, a coordinate within float32 rounding of a split threshold, p within 1e-9 of
  the threshold) that row is scored by the Pipeline itself. Any other classifier, or a front that is not
  additive, is scored by the Pipeline (on distinct rows).
* **A plan that can be saved.** For KNN models everything above is plain arrays (``ScoringPlan``), saved
  without pickle; ``Scorer.from_plan`` scores from it and loads the model only when a row needs the
  Pipeline (``predict_file`` keeps the champion's plan under ``artifacts/cache/``).
* **One row** (``predict_one``, used by ``ModelService.predict``): a lean path for one plain, valid record
  that returns exactly what the general path returns; anything else takes the general path.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd

from . import model as M
from .known import KnownSet, apply_rules, arrays_digest, reason_for
from .schema import CODES, FEATURES

#: Code lists per feature, in CODES order; a row's code index for feature f indexes CODE_LIST[f].
CODE_LIST: dict[str, list[str]] = {f: list(CODES[f]) for f in FEATURES}
CODE_INDEX: dict[str, dict[str, int]] = {f: {c: i for i, c in enumerate(CODES[f])} for f in FEATURES}
_CODE_ARRAYS = [np.array(CODE_LIST[f], dtype=object) for f in FEATURES]
_RADIX = np.array([len(CODES[f]) for f in FEATURES], dtype=np.int64)
#: place value of each feature in a row key (mixed radix); the product of radices fits in int64 (~2^51)
_PLACE = np.r_[np.cumprod(_RADIX[::-1])[::-1][1:], 1].astype(np.int64)
assert float(np.prod(_RADIX.astype(float))) < 2.0 ** 62

SCORED_COLUMNS = ["prediction", "p_poisonous", "uncertain", "unseen_codes", "nearest_known", "reason",
                  "model_version"]
_CACHE_MAX = 1 << 18  # distinct rows remembered per model version (~30 MB at most)
_ZERO_DISTANCE = 1e-6  # a neighbour this close is treated as a possible exact match: the Pipeline decides
_TIE = 1e-10           # relative distance gap under which two neighbours count as tied
_P_MARGIN = 1e-9       # p this close to the threshold is decided by the Pipeline


def feature_codes(features: pd.DataFrame) -> np.ndarray:
    """Code indices (n, 22) of validated features (stripped one-letter codes, any index)."""
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


def row_keys(codes: np.ndarray) -> np.ndarray:
    """One int64 per row that identifies its 22 codes."""
    return codes.astype(np.int64, copy=False) @ _PLACE if len(codes) else np.zeros(0, dtype=np.int64)


def codes_to_frame(codes: np.ndarray) -> pd.DataFrame:
    """Code indices back to a frame of one-letter codes (what the Pipeline takes)."""
    return pd.DataFrame({f: _CODE_ARRAYS[j][codes[:, j]] for j, f in enumerate(FEATURES)})


# ------------------------------------------------------------------ embedding
_LINEAR_STEPS = ("TargetEncoder", "OneHotEncoder", "OrdinalEncoder", "StandardScaler", "PCA")


class LinearEmbedding:
    """``pipeline[:-1].transform`` as ``bias + sum_f tables[f][code_f]`` (read off the fitted pipeline)."""

    def __init__(self, bias: np.ndarray, tables: list[np.ndarray]):
        self.bias, self.tables = bias, tables

    @classmethod
    def from_pipeline(cls, pipeline, *, check_rows: int = 256, seed: int = 0) -> "LinearEmbedding | None":
        """Tables for a pipeline whose steps before the classifier are a per-feature encoder and affine maps.

        Returns None when the steps are of another kind or the tables do not reproduce the pipeline on
        ``check_rows`` random rows (then callers use ``pipeline.transform``).
        """
        steps = pipeline.steps[:-1]
        if not steps or type(steps[0][1]).__name__ not in _LINEAR_STEPS[:3] or \
                any(type(s).__name__ not in _LINEAR_STEPS[3:] for _, s in steps[1:]):
            return None
        front = pipeline[:-1]
        base = np.zeros(len(FEATURES), dtype=np.int16)
        variants = [base]
        for j, f in enumerate(FEATURES):
            for c in range(len(CODES[f])):
                v = base.copy()
                v[j] = c
                variants.append(v)
        rng = np.random.default_rng(seed)
        checks = np.stack([rng.integers(0, r, check_rows) for r in _RADIX], axis=1).astype(np.int16)
        codes = np.vstack([np.stack(variants), checks])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. OneHotEncoder's note about codes unseen in training
            out = np.asarray(front.transform(codes_to_frame(codes)), dtype=np.float64)
        bias = out[0].copy()
        tables, i = [], 1
        for f in FEATURES:
            n = len(CODES[f])
            tables.append(np.ascontiguousarray(out[i:i + n] - bias))
            i += n
        emb = cls(bias, tables)
        want = out[i:]
        got = emb.embed(checks)
        scale = max(1.0, float(np.abs(want).max()))
        if not np.all(np.isfinite(got)) or float(np.abs(got - want).max()) > 1e-9 * scale:
            return None
        return emb

    def embed(self, codes: np.ndarray) -> np.ndarray:
        """PCA coordinates of rows given as code indices (the same order of additions for every row)."""
        out = np.tile(self.bias, (len(codes), 1))
        for j, table in enumerate(self.tables):
            out += table[codes[:, j]]
        return out


# ------------------------------------------------------------------ classifiers
class _KnnRule:
    """p_poisonous of a fitted KNeighborsClassifier, from its training points in PCA space, plus fragile rows.

    The neighbours come from scipy's KD-tree over the classifier's own ``_fit_X`` (the same points, the same
    Euclidean distances; cheaper to call than scikit-learn's and importable without it), the weighting and
    the vote are scikit-learn's. Rows whose answer could depend on how a tie or a zero distance is broken
    are marked fragile, and the Pipeline scores them.
    """

    def __init__(self, fit_X: np.ndarray, pos: np.ndarray, k: int, weights: str, threshold: float,
                 const_p: float | None = None):
        self.fit_X, self.pos = np.ascontiguousarray(fit_X, dtype=np.float64), np.asarray(pos, dtype=bool)
        self.k, self.n_fit, self.weights = int(k), len(self.fit_X), str(weights)
        self.threshold, self.const_p = float(threshold), const_p
        self._tree = None  # built on first use (scipy's import is a tenth of a second)

    @property
    def tree(self):
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.fit_X)
        return self._tree

    @staticmethod
    def usable(knn) -> bool:
        """A fitted KNeighborsClassifier this rule reproduces (Euclidean, uniform or distance weights)."""
        return (type(knn).__name__ == "KNeighborsClassifier" and knn.weights in ("distance", "uniform")
                and not getattr(knn, "outputs_2d_", False) and knn.metric in ("minkowski", "euclidean")
                and (knn.metric == "euclidean" or knn.p == 2) and knn.metric_params is None
                and hasattr(knn, "_y") and hasattr(knn, "_fit_X") and knn.n_neighbors <= knn.n_samples_fit_)

    def proba(self, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p, fragile) for embedded points; fragile rows must be scored by the Pipeline."""
        n, k = len(E), self.k
        if self.const_p is not None:  # one class seen in training: sklearn answers it for every row
            return np.full(n, self.const_p), np.zeros(n, dtype=bool)
        extra = min(self.n_fit - k, 4)
        dist, ind = self.tree.query(E, k=k + extra)
        dist, ind = dist.reshape(n, k + extra), ind.reshape(n, k + extra)
        d, pos = dist[:, :k], self.pos[ind[:, :k]]
        if self.weights == "distance":
            with np.errstate(divide="ignore"):
                w = 1.0 / d
            inf = np.isinf(w)
            zero_rows = inf.any(axis=1)
            w[zero_rows] = inf[zero_rows]
        else:
            w = np.ones_like(d)
        p_pos, p_neg = np.zeros(n), np.zeros(n)
        for i in range(k):  # the order sklearn adds the votes in
            p_pos += np.where(pos[:, i], w[:, i], 0.0)
            p_neg += np.where(pos[:, i], 0.0, w[:, i])
        norm = p_neg + p_pos
        norm[norm == 0.0] = 1.0
        p = p_pos / norm
        fragile = np.abs(p - self.threshold) <= _P_MARGIN
        if self.weights == "distance":
            fragile |= d[:, 0] <= _ZERO_DISTANCE
        if extra:
            edge = d[:, k - 1:k]
            tied = np.abs(dist - edge) <= _TIE * (1.0 + edge)  # the group tied with the k-th neighbour
            crosses = tied[:, k:].any(axis=1)
            if crosses.any():
                labels = self.pos[ind]
                mixed = (tied & labels).any(axis=1) & (tied & ~labels).any(axis=1)
                fragile |= crosses & (mixed | tied[:, -1])
        return p, fragile


class _ForestRule:
    """p_poisonous of a fitted tree ensemble, plus rows with a coordinate next to a split threshold."""

    def __init__(self, clf, threshold: float, n_dims: int):
        classes = list(clf.classes_)
        self.clf, self.col = clf, (classes.index(1) if 1 in classes else None)
        self.threshold = threshold
        cuts = [[] for _ in range(n_dims)]
        for est in clf.estimators_:
            t = est.tree_
            inner = t.children_left != -1
            for dim, thr in zip(t.feature[inner], t.threshold[inner]):
                cuts[dim].append(thr)
        self.cuts = [np.unique(np.asarray(c, dtype=np.float64)) for c in cuts]

    @staticmethod
    def usable(clf) -> bool:
        return (type(clf).__name__ in ("RandomForestClassifier", "ExtraTreesClassifier")
                and getattr(clf, "n_outputs_", 1) == 1)

    def proba(self, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.clf.predict_proba(E)[:, self.col] if self.col is not None else np.zeros(len(E))
        fragile = np.abs(p - self.threshold) <= _P_MARGIN
        for dim, cuts in enumerate(self.cuts):
            if not len(cuts):
                continue
            x = E[:, dim]
            i = np.searchsorted(cuts, x)
            below = np.abs(x - cuts[np.clip(i - 1, 0, len(cuts) - 1)])
            above = np.abs(cuts[np.clip(i, 0, len(cuts) - 1)] - x)
            # trees compare float32(x) with the threshold: stay well clear of float32 rounding
            fragile |= np.minimum(below, above) <= 1e-6 * np.maximum(1.0, np.abs(x))
        return p, fragile


# ------------------------------------------------------------------ scorer
PLAN_FORMAT = 2


class ScoringPlan:
    """What the fast path needs, as plain arrays: the embedding tables, the KNN's training points and labels,
    which codes training saw, the threshold, the version's known set. Read off a fitted pipeline
    (``from_pipeline``); saved and loaded without pickle (``save`` / ``load``), so a process that only scores
    rows needs neither scikit-learn nor the model file until a fragile row asks for the Pipeline.
    ``digest()`` is a sha256 over the content (not the file's bytes); the version record keeps it.
    """

    def __init__(self, version: str, threshold: float, model_sha256: str | None, embedding: LinearEmbedding,
                 knn: dict, seen_mask: list[np.ndarray], known: KnownSet | None = None):
        self.version, self.threshold, self.model_sha256 = version, float(threshold), model_sha256
        self.embedding, self.knn, self.seen_mask, self.known = embedding, knn, seen_mask, known

    @classmethod
    def from_pipeline(cls, loaded) -> "ScoringPlan | None":
        """The plan of a loaded model with a KNN classifier and an additive front; None otherwise."""
        pipeline = loaded.pipeline
        if not getattr(pipeline, "steps", None):
            return None
        knn = pipeline.steps[-1][1]
        if not _KnnRule.usable(knn):
            return None
        emb = LinearEmbedding.from_pipeline(pipeline)
        if emb is None:
            return None
        classes = list(knn.classes_)
        seen = M.seen_codes(pipeline)
        meta = getattr(loaded, "metadata", None) or {}
        return cls(loaded.version, loaded.threshold, meta.get("model_sha256"), emb,
                   {"fit_X": np.asarray(knn._fit_X, dtype=np.float64),
                    "pos": (np.asarray(knn._y) == classes.index(1)) if 1 in classes else np.zeros(len(knn._y), bool),
                    "k": int(knn.n_neighbors), "weights": str(knn.weights),
                    "const_p": (1.0 if classes == [1] else 0.0) if len(classes) == 1 else None},
                   [np.array([c in seen[f] for c in CODE_LIST[f]]) for f in FEATURES], getattr(loaded, "known", None))

    def rule(self) -> _KnnRule:
        k = self.knn
        return _KnnRule(k["fit_X"], k["pos"], k["k"], k["weights"], self.threshold, k["const_p"])

    def _arrays(self) -> dict[str, np.ndarray]:
        import json

        meta = {"format": PLAN_FORMAT, "version": self.version, "threshold": self.threshold,
                "model_sha256": self.model_sha256, "k": self.knn["k"], "weights": self.knn["weights"],
                "const_p": self.knn["const_p"], "features": FEATURES, "codes": CODE_LIST}
        arrays = {"meta": np.array(json.dumps(meta)), "bias": self.embedding.bias,
                  "fit_X": self.knn["fit_X"], "pos": self.knn["pos"]}
        for j in range(len(FEATURES)):
            arrays[f"table_{j:02d}"] = self.embedding.tables[j]
            arrays[f"seen_{j:02d}"] = self.seen_mask[j]
        if self.known is not None:
            arrays.update(self.known.arrays())
        return arrays

    def digest(self) -> str:
        """sha256 over the plan's content: equal for a plan rebuilt from the same model and known set."""
        return arrays_digest(self._arrays())

    def save(self, path) -> str:
        """Write the plan (numpy's npz, no pickle) atomically; returns its digest."""
        import io

        from .fileio import atomic_write_bytes

        arrays = self._arrays()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return arrays_digest(arrays)

    @classmethod
    def load(cls, path, *, model_sha256: str | None = None, digest: str | None = None) -> "ScoringPlan | None":
        """A saved plan, or None if it is missing, unreadable, of another format, of another model file or
        (when ``digest`` is given) not the plan the version record names."""
        import json

        try:
            with np.load(path, allow_pickle=False) as z:
                if digest is not None and arrays_digest({k: z[k] for k in z.files}) != digest:
                    return None
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != PLAN_FORMAT or meta.get("features") != FEATURES or \
                        meta.get("codes") != CODE_LIST or (model_sha256 and meta.get("model_sha256") != model_sha256):
                    return None
                n = len(FEATURES)
                emb = LinearEmbedding(z["bias"], [z[f"table_{j:02d}"] for j in range(n)])
                knn = {"fit_X": z["fit_X"], "pos": z["pos"].astype(bool), "k": int(meta["k"]),
                       "weights": meta["weights"], "const_p": meta["const_p"]}
                seen = [z[f"seen_{j:02d}"].astype(bool) for j in range(n)]
                known = KnownSet.from_arrays(z) if "known_keys" in z.files else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if any(len(t) != len(CODES[f]) or len(m) != len(CODES[f]) for t, m, f in zip(emb.tables, seen, FEATURES)):
            return None
        return cls(meta["version"], meta["threshold"], meta.get("model_sha256"), emb, knn, seen, known)


class Scorer:
    """Scores rows with one model version, exactly as its Pipeline does (see the module notes).

    ``Scorer(loaded)`` takes a loaded model; ``Scorer.from_plan(plan, load)`` scores from a saved plan and
    calls ``load()`` (which returns the loaded model) only if a row needs the Pipeline itself.
    """

    def __init__(self, loaded=None, *, fast: bool = True, plan: ScoringPlan | None = None, load=None):
        self._loaded, self._load = loaded, load
        self._load_lock = threading.Lock()
        if loaded is not None:
            self.version, self.threshold = loaded.version, loaded.threshold
            plan = ScoringPlan.from_pipeline(loaded) if fast else None
        elif plan is not None:
            self.version, self.threshold = plan.version, plan.threshold
        else:
            raise ValueError("Scorer needs a loaded model or a plan")
        self.plan = plan
        self.known = plan.known if plan is not None else getattr(loaded, "known", None)
        self.embedding = plan.embedding if plan is not None else None
        self._rule = plan.rule() if plan is not None else None
        if plan is not None:
            self._seen_mask = plan.seen_mask
        else:
            seen = M.seen_codes(self.pipeline)
            self._seen_mask = [np.array([c in seen[f] for c in CODE_LIST[f]]) for f in FEATURES]
        if fast and self._rule is None:
            self.embedding = LinearEmbedding.from_pipeline(self.pipeline)
            clf = self.pipeline.steps[-1][1]
            if self.embedding is not None and _ForestRule.usable(clf):
                self._rule = _ForestRule(clf, self.threshold, len(self.embedding.bias))
        self._cache: dict[int, float] = {}
        self._columns: dict[tuple, object] = {}
        self._memo = threading.local()
        self.stats = {"rows": 0, "distinct": 0, "cached": 0, "pipeline": 0}

    @classmethod
    def from_plan(cls, plan: ScoringPlan, load) -> "Scorer":
        """A scorer that needs no scikit-learn until ``load()`` (-> a loaded model) is needed for a fragile row."""
        return cls(plan=plan, load=load)

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
    def seen(self) -> dict[str, set[str]]:
        """Codes the encoder saw in training, per feature."""
        return {f: {c for c, s in zip(CODE_LIST[f], m) if s} for f, m in zip(FEATURES, self._seen_mask)}

    def __getstate__(self) -> dict:
        """Picklable (dask processes, distributed workers): without locks, the thread-local memo, the cache.

        A scorer made from a plan pickles its loader, so give ``from_plan`` a picklable one.
        """
        state = self.__dict__.copy()
        state.update(_memo=None, _cache={}, _load_lock=None, _rule=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._memo, self._load_lock = threading.local(), threading.Lock()
        if self.plan is not None:
            self._rule = self.plan.rule()
        elif self.embedding is not None:
            clf = self.pipeline.steps[-1][1]
            self._rule = _ForestRule(clf, self.threshold, len(self.embedding.bias)) if _ForestRule.usable(clf) \
                else None

    def __dask_tokenize__(self):
        sha = self.plan.model_sha256 if self.plan is not None else None
        if sha is None and self._loaded is not None:
            sha = (getattr(self._loaded, "metadata", None) or {}).get("model_sha256")
        return ("mushroom-scorer", self.version, self.threshold, sha or id(self))

    @property
    def fast(self) -> bool:
        """True when embedding and classifier both take the fast path (else the Pipeline scores)."""
        return self._rule is not None

    # -------------------------------------------------------------- codes
    def p_codes(self, codes: np.ndarray) -> np.ndarray:
        """p_poisonous for rows given as code indices (n, 22): distinct rows only, cached by row."""
        n = len(codes)
        if n == 0:
            return np.zeros(0)
        keys = row_keys(codes)
        if n == 1:
            uniq, first, inverse = keys, np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp)
        else:
            inverse, uniq = pd.factorize(keys)
            first = np.full(len(uniq), -1, dtype=np.intp)
            first[inverse[::-1]] = np.arange(n - 1, -1, -1)  # first row of each distinct key
        cache = self._cache
        known = np.fromiter((cache.get(k, np.nan) for k in uniq.tolist()), dtype=np.float64, count=len(uniq))
        todo = np.flatnonzero(np.isnan(known))
        if len(todo):
            known[todo] = self._score_distinct(codes[first[todo]])
            if len(cache) + len(todo) > _CACHE_MAX:
                cache.clear()
            cache.update(zip(uniq[todo].tolist(), known[todo].tolist()))
        st = self.stats
        st["rows"] += n
        st["distinct"] += len(uniq)
        st["cached"] += len(uniq) - len(todo)
        return known[inverse]

    def _score_distinct(self, codes: np.ndarray) -> np.ndarray:
        if self._rule is None:
            self.stats["pipeline"] += len(codes)
            return M.p_poisonous(self.pipeline, codes_to_frame(codes))
        p, fragile = self._rule.proba(self.embedding.embed(codes))
        if fragile.any():
            idx = np.flatnonzero(fragile)
            self.stats["pipeline"] += len(idx)
            p[idx] = M.p_poisonous(self.pipeline, codes_to_frame(codes[idx]))
        return p

    def pca_codes(self, codes: np.ndarray) -> np.ndarray:
        """PCA coordinates of rows given as code indices."""
        if self.embedding is not None:
            return self.embedding.embed(codes)
        return self.pipeline[:-1].transform(codes_to_frame(codes))

    def unseen_codes(self, codes: np.ndarray) -> np.ndarray:
        """'col=code;...' per row for valid codes never seen in training ('' for most rows)."""
        out = np.full(len(codes), "", dtype=object)
        masks = [~m[codes[:, j]] for j, m in enumerate(self._seen_mask)]
        rows = np.flatnonzero(np.logical_or.reduce(masks)) if masks else []
        for r in rows:
            out[r] = ";".join(f"{f}={CODE_LIST[f][codes[r, j]]}" for j, f in enumerate(FEATURES)
                              if masks[j][r])
        return out

    # -------------------------------------------------------------- frames
    def p_poisonous(self, features: pd.DataFrame) -> np.ndarray:
        """Probability of poisonous per row (features already validated)."""
        memo = self._memo.__dict__.pop("codes", None)  # set by score() for the same frame
        codes = memo[1] if memo is not None and memo[0] is features else feature_codes(features)
        return self.p_codes(codes)

    def pca(self, features: pd.DataFrame) -> np.ndarray:
        """PCA coordinates per row."""
        if self.embedding is None:
            return self.pipeline[:-1].transform(features[FEATURES])
        return self.pca_codes(feature_codes(features))

    def unseen(self, features: pd.DataFrame) -> pd.Series:
        """For each row, the features whose (valid) code never appeared in training, as 'col=code;...'."""
        return pd.Series(self.unseen_codes(feature_codes(features)), index=features.index, name="unseen_codes")

    def score_codes(self, codes: np.ndarray, p: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The scored columns (SCORED_COLUMNS) as arrays, with the known-set rules applied.

        p_poisonous stays the model's vote; prediction, uncertain and reason follow ``known.apply_rules``.
        """
        p = self.p_codes(codes) if p is None else p
        if len(codes) == 1 and self.known is not None:
            return self._score_one(codes, p)
        inverse = None
        if len(codes) > 4096:  # the rules over distinct rows only
            inverse, uniq = pd.factorize(row_keys(codes))
            first = np.full(len(uniq), -1, dtype=np.intp)
            first[inverse[::-1]] = np.arange(len(codes) - 1, -1, -1)
            codes = codes[first]
        pu = p if inverse is None else p[first]
        unseen = self.unseen_codes(codes)
        known = self.known
        if known is not None:
            nearest, conflict, cutoff = known.nearest(codes), known.conflicting(codes), known.cutoff
        else:  # a model without a known set (built by hand): -1 says "not known", only unseen codes rule
            nearest, conflict, cutoff = np.full(len(codes), -1, dtype=np.int64), np.zeros(len(codes), bool), 0
        called, unc, reason = apply_rules(M.decide(pu, self.threshold), M.uncertain(pu, self.threshold), pu,
                                          self.threshold, unseen, nearest, conflict, cutoff)
        cols = {"prediction": M.label_words(called), "uncertain": unc, "unseen_codes": unseen,
                "nearest_known": nearest, "reason": reason}
        if inverse is not None:
            cols = {k: v[inverse] for k, v in cols.items()}
        cols["p_poisonous"] = p
        cols["model_version"] = np.full(len(p), self.version, dtype=object)
        return {c: cols[c] for c in SCORED_COLUMNS}

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """prediction (edible|poisonous), p_poisonous, uncertain, unseen_codes, model_version."""
        codes = feature_codes(features)
        self._memo.codes = (features, codes)
        cols = self.score_codes(codes, self.p_poisonous(features))  # p_poisonous stays the one hook
        return pd.DataFrame(cols, index=features.index)

    def _score_one(self, codes: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
        """score_codes for one row in plain Python (the same rules as ``known.apply_rules``)."""
        unseen = self.unseen_codes(codes)
        near, conflict = self.known.one(codes[0].tolist())
        p0, t, cutoff = float(p[0]), self.threshold, self.known.cutoff
        far = near >= cutoff
        forced = bool(unseen[0]) or conflict or far
        band = t <= p0 < max(0.5, t)
        unc = forced or band
        word = M.LABELS_P if forced or p0 >= t else M.LABELS_E
        reason = reason_for(unseen[0], conflict, far, unc, p0, t, cutoff) if unc else ""
        return {"prediction": np.array([word], dtype=object), "p_poisonous": p, "uncertain": np.array([unc]),
                "unseen_codes": unseen, "nearest_known": np.array([near], dtype=np.int64),
                "reason": np.array([reason], dtype=object), "model_version": np.array([self.version], dtype=object)}

    # -------------------------------------------------------------- one row
    def predict_one(self, rows, *, as_record: bool = False) -> pd.DataFrame | dict | None:
        """The lean path of ``ModelService.predict`` for one mushroom (a dict or a one-row DataFrame).

        Returns exactly what the general path returns (input columns, then the scored columns), or None
        when the input is not a plain, valid one-row record of strings: the general path then validates
        it (and raises the usual SchemaError naming row, column, value and the valid codes). With
        ``as_record`` the row comes as one dict (column -> value) instead of a one-row DataFrame.
        """
        if isinstance(rows, dict):
            names = tuple(rows)
            values = tuple(rows.values())
        elif isinstance(rows, pd.DataFrame) and len(rows) == 1 and len(rows.columns):
            names = tuple(rows.columns)
            if not all(dt == object for dt in rows.dtypes):
                return None  # other dtypes: the general path converts and validates them
            values = tuple(rows.to_numpy()[0])
        else:
            return None
        layout = self._columns.get(names)
        if layout is None:
            if len(self._columns) > 256:
                self._columns.clear()
            layout = self._columns[names] = _layout(names)
        if layout is False:
            return None
        positions, keep = layout
        code = np.empty((1, len(FEATURES)), dtype=np.int16)
        for j, (pos, lookup) in enumerate(zip(positions, _LOOKUPS)):
            v = values[pos]
            if type(v) is not str:
                return None
            c = lookup.get(v)
            if c is None:
                c = lookup.get(v.strip())
                if c is None:
                    return None  # not valid: the general path raises the usual error
            code[0, j] = c
        for i in keep:
            if type(values[i]) is not str:
                return None  # pandas would infer another dtype: leave it to the general path
        cols = self.score_codes(code)
        if as_record:  # the REST API's one-row answer: no DataFrame to build and take apart again
            record = {names[i]: values[i] for i in keep}
            record.update((name, col[0]) for name, col in cols.items())
            return record
        out = {names[i]: np.array([values[i]], dtype=object) for i in keep}
        out.update(cols)
        return pd.DataFrame(out, index=pd.RangeIndex(1), copy=False)


_LOOKUPS = [CODE_INDEX[f] for f in FEATURES]


def _layout(names: tuple):
    """Where each feature sits in a record with these column names, and which columns the output keeps.

    False when the names are not acceptable as they stand (duplicates, missing features, non-string
    names, or anything ``validate_frame`` refuses): the general path handles those.
    """
    from . import schema

    if pd.get_option("future.infer_string") or not all(isinstance(n, str) for n in names):
        return False
    norm = [schema._norm_name(n) for n in names]
    if len(set(norm)) != len(norm) or not set(FEATURES) <= set(norm):
        return False
    probe = {n: CODE_LIST[nn][0] if nn in CODES else "" for n, nn in zip(names, norm)}
    try:  # the column rules are schema's: ask it once per set of names
        schema.validate_frame(pd.DataFrame([probe], columns=list(names)))
    except ValueError:
        return False
    positions = [norm.index(f) for f in FEATURES]
    keep = [i for i, n in enumerate(names) if n not in SCORED_COLUMNS]
    return positions, keep

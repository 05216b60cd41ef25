"""The accelerator: p_poisonous of rows given as code indices, equal to the fitted Pipeline's, from plain arrays.
Imports only numpy itself; rows it cannot decide exactly are handed back to the exact path (the Pipeline).

* **Embedding as look-up tables.** After a per-feature encoder (target, one-hot or ordinal), StandardScaler
  and PCA are affine, so a row's PCA coordinates are ``bias + sum_f table_f[code_f]``. The tables are read
  off the fitted pipeline (it transforms a base row and every one-code variation of it) and checked against
  it on random rows; a front that is not additive gets no accelerator.
* **The classifier is the fitted one.** KNN: the neighbours among the classifier's own training points
  (``knn_points``), searched with scipy's KD-tree, and scikit-learn's weighted vote. Tree ensembles: the
  fitted ``predict_proba``. A row near a tie, a zero distance, a split threshold or the decision threshold is
  *fragile*: the exact path (``scoring.exact_p_poisonous``, the Pipeline itself) scores it.
* **The plan.** For KNN models everything is plain arrays (``ScoringPlan``), saved without pickle, so a
  process that only scores needs neither scikit-learn nor the model file until a fragile row asks for it.

The one entry point is ``Accelerator.p_poisonous(codes, exact)``; ``tests/test_scoring.py`` checks it
against the exact path.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from typing import Callable

import numpy as np

from ..core.fileio import atomic_write_bytes
from ..data.schema import CODES, FEATURES
from ..model.known import KnownSet, arrays_digest

log = logging.getLogger("mushroom_lib")

#: Code lists per feature, in CODES order; a row's code index for feature f indexes CODE_LIST[f].
CODE_LIST: dict[str, list[str]] = {f: list(CODES[f]) for f in FEATURES}
CODE_INDEX: dict[str, dict[str, int]] = {f: {c: i for i, c in enumerate(CODES[f])} for f in FEATURES}
PLAN_FORMAT = 2
_LINEAR_STEPS = ("TargetEncoder", "OneHotEncoder", "OrdinalEncoder", "StandardScaler", "PCA")
_ZERO_DISTANCE = 1e-6  # a neighbour this close is treated as a possible exact match: the Pipeline decides
_TIE = 1e-10           # relative distance gap under which two neighbours count as tied
_P_MARGIN = 1e-9       # p this close to the threshold is decided by the Pipeline

#: The exact path for rows as code indices (the Pipeline's own predict_proba): codes (n, 22) -> p (n,)
ExactPath = Callable[[np.ndarray], np.ndarray]


def seen_mask(seen: dict[str, set[str]]) -> list[np.ndarray]:
    """Per feature, a bool per code (CODE_LIST order): did the encoder see it in training."""
    return [np.array([c in seen[f] for c in CODE_LIST[f]]) for f in FEATURES]


def codes_to_frame(codes: np.ndarray):
    """Code indices back to a DataFrame of one-letter codes (what the Pipeline takes; imports pandas)."""
    import pandas as pd

    return pd.DataFrame({f: np.array(CODE_LIST[f], dtype=object)[codes[:, j]] for j, f in enumerate(FEATURES)})


def random_codes(n: int, seed: int = 0) -> np.ndarray:
    """n rows of valid code indices drawn uniformly per feature (most never seen in any dataset)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, len(CODE_LIST[f]), n) for f in FEATURES], axis=1).astype(np.int16)


# ------------------------------------------------------------------ embedding
class LinearEmbedding:
    """``pipeline[:-1].transform`` as ``bias + sum_f tables[f][code_f]`` (read off the fitted pipeline)."""

    def __init__(self, bias: np.ndarray, tables: list[np.ndarray]):
        self.bias, self.tables = bias, tables

    @classmethod
    def from_pipeline(cls, pipeline, *, check_rows: int = 256) -> "LinearEmbedding | None":
        """Tables for a pipeline whose steps before the classifier are a per-feature encoder and affine maps.

        None when the steps are of another kind or the tables do not reproduce the pipeline on
        ``check_rows`` random rows.
        """
        steps = pipeline.steps[:-1]
        if not steps or type(steps[0][1]).__name__ not in _LINEAR_STEPS[:3] or \
                any(type(s).__name__ not in _LINEAR_STEPS[3:] for _, s in steps[1:]):
            return None
        variants = [np.zeros(len(FEATURES), dtype=np.int16)]
        for j, f in enumerate(FEATURES):
            for c in range(len(CODES[f])):
                v = variants[0].copy()
                v[j] = c
                variants.append(v)
        checks = random_codes(check_rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. OneHotEncoder's note about codes unseen in training
            out = np.asarray(pipeline[:-1].transform(codes_to_frame(np.vstack([np.stack(variants), checks]))),
                             dtype=np.float64)
        bias = out[0].copy()
        tables, i = [], 1
        for f in FEATURES:
            tables.append(np.ascontiguousarray(out[i:i + len(CODES[f])] - bias))
            i += len(CODES[f])
        emb = cls(bias, tables)
        want, got = out[i:], emb.embed(checks)
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
def knn_points(knn) -> tuple[np.ndarray, np.ndarray] | None:
    """The fitted KNeighborsClassifier's training points (PCA space) and their class indices (into classes_);
    None when scikit-learn no longer keeps them under these names (then the exact path scores every row).

    The one read of scikit-learn's private ``_fit_X`` and ``_y`` (pinned by tests/test_scoring.py): the points
    cannot be recomputed through public API, because the TargetEncoder is cross-fitted (each training row was
    encoded by a model fitted on the other folds), so ``pipeline[:-1].transform(X_train)`` is not what the
    KNN was fitted on.
    """
    fit_X, y = getattr(knn, "_fit_X", None), getattr(knn, "_y", None)
    if fit_X is None or y is None:
        return None
    return np.asarray(fit_X, dtype=np.float64), np.asarray(y)


def knn_usable(knn) -> bool:
    """A fitted KNeighborsClassifier ``KnnRule`` reproduces (Euclidean, uniform or distance weights)."""
    return (type(knn).__name__ == "KNeighborsClassifier" and knn.weights in ("distance", "uniform")
            and not getattr(knn, "outputs_2d_", False) and knn.metric in ("minkowski", "euclidean")
            and (knn.metric == "euclidean" or knn.p == 2) and knn.metric_params is None
            and knn.n_neighbors <= knn.n_samples_fit_)


class KnnRule:
    """p_poisonous of a fitted KNN from its training points in PCA space, plus the fragile rows.

    Neighbours from scipy's KD-tree over the same points (the same Euclidean distances; importable without
    scikit-learn), then scikit-learn's weighting and vote, added in its order.
    """

    def __init__(self, fit_X: np.ndarray, pos: np.ndarray, k: int, weights: str, threshold: float,
                 const_p: float | None = None):
        self.fit_X, self.pos = np.ascontiguousarray(fit_X, dtype=np.float64), np.asarray(pos, dtype=bool)
        self.k, self.n_fit, self.weights = int(k), len(self.fit_X), str(weights)
        self.threshold, self.const_p = float(threshold), const_p
        self._tree = None  # built on first use (scipy's import is a tenth of a second)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tree": None}  # rebuilt where it is unpickled

    def _neighbours(self, E: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.fit_X)
        dist, ind = self._tree.query(E, k=m)
        return dist.reshape(len(E), m), ind.reshape(len(E), m)

    def proba(self, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p, fragile) for embedded points; fragile rows must be scored by the exact path."""
        n, k = len(E), self.k
        if self.const_p is not None:  # one class seen in training: sklearn answers it for every row
            return np.full(n, self.const_p), np.zeros(n, dtype=bool)
        extra = min(self.n_fit - k, 4)
        dist, ind = self._neighbours(E, k + extra)
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


class ForestRule:
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


# ------------------------------------------------------------------ the entry point
class Accelerator:
    """The fast answer for one model version: the embedding tables and a rule (KNN vote or fitted forest).

    ``Accelerator.for_model(loaded)`` (None when the model is not additive or its classifier is of another
    kind) or ``Accelerator(plan=...)`` from a saved plan; ``plan`` is None for forests (they need the model).
    """

    def __init__(self, embedding: LinearEmbedding | None = None, rule=None, *, plan: "ScoringPlan | None" = None):
        if plan is not None:
            embedding, rule = plan.embedding, plan.rule()
        self.embedding, self.rule, self.plan = embedding, rule, plan

    @classmethod
    def for_model(cls, loaded) -> "Accelerator | None":
        plan = ScoringPlan.from_pipeline(loaded)
        if plan is not None:
            return cls(plan=plan)
        pipeline = loaded.pipeline
        clf = pipeline.steps[-1][1] if getattr(pipeline, "steps", None) else None
        if clf is None or not ForestRule.usable(clf):
            return None
        embedding = LinearEmbedding.from_pipeline(pipeline)
        if embedding is None:
            return None
        return cls(embedding, ForestRule(clf, loaded.threshold, len(embedding.bias)))

    def p_poisonous(self, codes: np.ndarray, exact: ExactPath) -> np.ndarray:
        """p_poisonous of rows given as code indices; ``exact`` scores the fragile ones."""
        p, fragile = self.rule.proba(self.embedding.embed(codes))
        if fragile.any():
            idx = np.flatnonzero(fragile)
            p[idx] = exact(codes[idx])
        return p


# ------------------------------------------------------------------ the plan
class ScoringPlan:
    """What the KNN accelerator needs, as plain arrays: the embedding tables, the KNN's training points and
    labels, which codes training saw, the threshold, the version's known set. ``from_pipeline`` reads it off a
    loaded model; ``save``/``load`` without pickle; ``digest()`` is a sha256 over the content (the version
    record keeps it, and a plan is trusted only when they agree).
    """

    def __init__(self, version: str, threshold: float, model_sha256: str | None, embedding: LinearEmbedding,
                 knn: dict, seen_mask: list[np.ndarray], known: KnownSet | None = None):
        self.version, self.threshold, self.model_sha256 = version, float(threshold), model_sha256
        self.embedding, self.knn, self.seen_mask, self.known = embedding, knn, seen_mask, known

    @classmethod
    def from_pipeline(cls, loaded) -> "ScoringPlan | None":
        """The plan of a loaded model with a KNN classifier and an additive front; None otherwise."""
        from ..model import pipeline as M

        pipeline = loaded.pipeline
        if not getattr(pipeline, "steps", None):
            return None
        knn = pipeline.steps[-1][1]
        points = knn_points(knn) if knn_usable(knn) else None
        emb = LinearEmbedding.from_pipeline(pipeline) if points is not None else None
        if emb is None:
            return None
        classes = list(knn.classes_)
        fit_X, y = points
        meta = getattr(loaded, "metadata", None) or {}
        return cls(loaded.version, loaded.threshold, meta.get("model_sha256"), emb,
                   {"fit_X": fit_X, "pos": (y == classes.index(1)) if 1 in classes else np.zeros(len(y), bool),
                    "k": int(knn.n_neighbors), "weights": str(knn.weights),
                    "const_p": (1.0 if classes == [1] else 0.0) if len(classes) == 1 else None},
                   seen_mask(M.seen_codes(pipeline)), getattr(loaded, "known", None))

    def rule(self) -> KnnRule:
        k = self.knn
        return KnnRule(k["fit_X"], k["pos"], k["k"], k["weights"], self.threshold, k["const_p"])

    def _arrays(self) -> dict[str, np.ndarray]:
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
        arrays = self._arrays()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return arrays_digest(arrays)

    @classmethod
    def load(cls, path, *, model_sha256: str | None = None, digest: str | None = None) -> "ScoringPlan | None":
        """A saved plan, or None if it is missing, unreadable, of another format, of another model file or
        (when ``digest`` is given) not the plan the version record names."""
        import zipfile  # np.load imports it anyway

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
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("scoring plan %s is damaged (%s); the model file is loaded instead", path, exc)
            return None
        if any(len(t) != len(CODES[f]) or len(m) != len(CODES[f]) for t, m, f in zip(emb.tables, seen, FEATURES)):
            return None
        return cls(meta["version"], meta["threshold"], meta.get("model_sha256"), emb, knn, seen, known)

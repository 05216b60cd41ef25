"""The training pipeline (encoder -> StandardScaler -> PCA -> classifier), its safety threshold, metrics.

scikit-learn is imported by the functions that build, fit or measure: scoring from a saved plan (`mushroom
predict`, a dashboard kernel) imports this module and must not load it (~0.5 s, ~60 MiB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..core.vocab import CODE_TO_WORD, EDIBLE, POISONOUS
from ..data.schema import FEATURES
from . import threshold as T
from .known import PURE_MIN_COUNT

if TYPE_CHECKING:  # scikit-learn and pandas are imported where used: scoring from a saved plan does without them
    import pandas as pd
    from sklearn.pipeline import Pipeline

POSITIVE = POISONOUS  #: poisonous is the positive class everywhere
UNCERTAIN_NOTE = "uncertain - treat as poisonous"
#: What p_poisonous is, said on every surface that shows it (it is not recalibrated; see the version record)
P_MEANING = ("p_poisonous is the model's neighbour vote (the distance-weighted share of poisonous mushrooms among "
             "its nearest training mushrooms in PCA space), not a calibrated probability")


@dataclass
class ModelConfig:
    """Everything that decides a trained model; stored in metadata.json as ``params``."""

    n_components: int = 3
    seed: int = 42
    encoder: str = "target"          #: target | onehot | ordinal
    smooth: float = 100.0            #: TargetEncoder smoothing (shrinks rare codes toward the prior)
    classifier: str = "knn"          #: knn | extra_trees | random_forest
    n_neighbors: int = 10            #: knn
    n_estimators: int = 300          #: tree ensembles
    max_threshold: float = 0.5       #: never less safe than the plain majority vote
    pure_min_count: int = PURE_MIN_COUNT  #: known rows a code needs, all poisonous, to be a pure-poisonous code
    cv_folds: int = 5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> ModelConfig:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _encoder(cfg: ModelConfig):
    # lazy (scikit-learn): see the module docstring
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, TargetEncoder

    if cfg.encoder == "target":
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=cfg.seed)  # the cross-fitting inside fit
        return TargetEncoder(target_type="binary", smooth=cfg.smooth, cv=folds)
    if cfg.encoder == "onehot":
        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    if cfg.encoder == "ordinal":
        return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    raise ValueError(f"unknown encoder {cfg.encoder!r}; choose target, onehot or ordinal")


def _classifier(cfg: ModelConfig):
    if cfg.classifier == "knn":
        from sklearn.neighbors import (
            KNeighborsClassifier,  # lazy: see the module docstring
        )
        return KNeighborsClassifier(n_neighbors=cfg.n_neighbors, weights="distance")
    if cfg.classifier == "extra_trees":
        from sklearn.ensemble import (
            ExtraTreesClassifier,  # lazy: see the module docstring
        )
        return ExtraTreesClassifier(n_estimators=cfg.n_estimators, random_state=cfg.seed, n_jobs=-1)
    if cfg.classifier == "random_forest":
        from sklearn.ensemble import (
            RandomForestClassifier,  # lazy: see the module docstring
        )
        return RandomForestClassifier(n_estimators=cfg.n_estimators, random_state=cfg.seed, n_jobs=-1)
    raise ValueError(f"unknown classifier {cfg.classifier!r}; choose knn, extra_trees or random_forest")


def build_pipeline(cfg: ModelConfig) -> Pipeline:
    """One Pipeline, fitted as a whole: encoder -> StandardScaler -> PCA(n_components) -> classifier."""
    # lazy (scikit-learn): see the module docstring
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([
        ("encode", _encoder(cfg)),
        ("scale", StandardScaler()),
        ("pca", PCA(n_components=cfg.n_components, random_state=cfg.seed)),
        ("classify", _classifier(cfg)),
    ])


def to_binary(labels) -> np.ndarray:
    """e/p labels -> 0/1 (1 = poisonous)."""
    return (np.asarray(labels, dtype=object) == POSITIVE).astype(np.int8)


def p_poisonous(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Probability of poisonous for each row."""
    proba = pipeline.predict_proba(X[FEATURES])
    classes = list(pipeline.classes_)
    return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(X))


def decide(p: np.ndarray, threshold: float) -> np.ndarray:
    """1 (poisonous) where p >= threshold, else 0."""
    return (np.asarray(p) >= threshold).astype(np.int8)


def out_of_fold(cfg: ModelConfig, X: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, list]:
    """Out-of-fold p_poisonous on the training rows, and per fold (its rows, the rules' evidence on them from
    the fold's own known set and seen codes): what the threshold is chosen on."""
    from sklearn.model_selection import (
        StratifiedKFold,  # lazy: see the module docstring
    )

    folds = StratifiedKFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)
    codes = T.frame_codes(X)
    p, parts = np.zeros(len(y)), []
    for train, test in folds.split(codes, y):
        pipe = build_pipeline(cfg).fit(X.iloc[train][FEATURES], y[train])
        p[test] = p_poisonous(pipe, X.iloc[test])
        parts.append((test, T.fold_evidence(codes, y, train, test, T.seen_table(seen_codes(pipe)),
                                            cfg.pure_min_count)))
    return p, parts


@dataclass
class Trained:
    """A fitted pipeline with its operating threshold."""

    pipeline: Pipeline
    threshold: float
    config: ModelConfig
    oof_metrics: dict = field(default_factory=dict)
    p_oof: np.ndarray | None = None
    y: np.ndarray | None = None
    operating_point: dict = field(default_factory=dict)


def fit(X: pd.DataFrame, labels, cfg: ModelConfig) -> Trained:
    """Choose the threshold on out-of-fold votes after the rules, then fit the whole pipeline on all rows."""
    y = to_binary(labels)
    p_oof, parts = out_of_fold(cfg, X, y)
    ruled = T.ruled_rows(p_oof, parts)
    threshold = T.choose_threshold(p_oof, y, ruled, cfg.max_threshold)
    called = (ruled | (p_oof >= threshold)).astype(np.int8)
    oof = metrics(p_oof, y, threshold, pred=called)
    point = {"rule": T.OPERATING_RULE, "threshold": threshold, "out_of_fold_false_edible": oof["false_edible"],
             "out_of_fold_accuracy": oof["accuracy"], "out_of_fold_rows": len(y),
             "out_of_fold_rows_ruled": int(ruled.sum()), "rules_out_of_fold": T.fold_rule_counts(p_oof, threshold,
                                                                                                  parts)}
    pipe = build_pipeline(cfg).fit(X[FEATURES], y)
    return Trained(pipe, threshold, cfg, oof, p_oof, y, point)


def reliability(p: np.ndarray, y, bins: int = 10) -> list[dict]:
    """Per bin of p_poisonous: its range, rows, mean p and the observed poisonous share (a reliability curve)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y)
    if y.dtype == object:
        y = to_binary(y)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append({"from": float(edges[b]), "to": float(edges[b + 1]), "rows": int(m.sum()),
                        "mean_p": float(p[m].mean()), "poisonous_share": float(y[m].mean())})
    return out


def brier(p: np.ndarray, y) -> float:
    """Mean squared difference between p_poisonous and the 0/1 truth."""
    y = np.asarray(y)
    if y.dtype == object:
        y = to_binary(y)
    return float(np.mean((np.asarray(p, dtype=float) - y) ** 2)) if len(y) else 0.0


def calibration_facts(p_oof: np.ndarray, y_oof, p_holdout: np.ndarray, y_holdout) -> dict:
    """What p_poisonous is and how well it matches observed shares (for the version record)."""
    return {"meaning": P_MEANING, "recalibrated": False,
            "brier_out_of_fold": brier(p_oof, y_oof), "brier_holdout": brier(p_holdout, y_holdout),
            "reliability_out_of_fold": reliability(p_oof, y_oof)}


def metrics(p: np.ndarray, y, threshold: float, pred: np.ndarray | None = None) -> dict:
    """accuracy, precision, recall, f1 (poisonous = positive), confusion matrix and false_edible.

    ``pred`` (0/1) are the calls when they are not simply ``p >= threshold`` (the known-set rules).
    """
    # lazy (scikit-learn): see the module docstring
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
    )

    y = np.asarray(y)
    if y.dtype == object:
        y = to_binary(y)
    pred = decide(p, threshold) if pred is None else np.asarray(pred)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "false_edible": int(fn),
        "false_poisonous": int(fp),
        "confusion_matrix": {"labels": ["edible", "poisonous"], "rows_true_cols_pred": [[int(tn), int(fp)],
                                                                                        [int(fn), int(tp)]]},
        "n": len(y),
        "threshold": float(threshold),
    }


def seen_codes(pipeline: Pipeline) -> dict[str, set[str]]:
    """Codes the encoder saw in training, per feature."""
    enc = pipeline.named_steps["encode"]
    return {f: set(map(str, cats)) for f, cats in zip(FEATURES, enc.categories_)}


LABELS_P, LABELS_E = CODE_TO_WORD[POISONOUS], CODE_TO_WORD[EDIBLE]  # "poisonous", "edible"


def label_words(binary: np.ndarray) -> np.ndarray:
    """0/1 -> 'edible'/'poisonous'."""
    return np.where(np.asarray(binary) == 1, LABELS_P, LABELS_E).astype(object)

"""Training runs: assemble the training rows, fit, evaluate on the holdout, gate, register, promote.

The holdout never enters training; a candidate replaces the champion only when false_edible does not rise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.fileio import atomic_write_bytes
from ..core.settings import Settings
from ..core.vocab import CODE_TO_WORD
from ..data.dataset import frame_sha256, load_dataset, load_split
from ..data.schema import FEATURES, TARGET, normalize_labels
from ..feedback.store import FeedbackStore
from ..model import pipeline as M
from ..model.known import PURE_MIN_COUNT, KnownSet, codes_of, keys_of
from ..registry.versions import LoadedModel, Registry, RegistryError
from ..scoring.accelerator import ScoringPlan
from ..scoring.scorer import CODE_LIST, Scorer, feature_codes
from .evaluate import (
    GateInput,
    contradicting_feedback,
    evaluate,
    gate,
    rescore_champion,
    score_holdout,
)

__all__ = ["TrainResult", "distinct_rows", "fit_distinct", "gate", "known_set", "rebuild_known", "score_holdout",
           "train", "training_rows", "write_reference"]


@dataclass
class TrainResult:
    """What one training run did."""

    version: str
    metrics: dict
    threshold: float
    promoted: bool
    reason: str | None
    seconds: float
    training_rows: int
    feedback_rows: int
    previous: str | None = None
    previous_metrics: dict | None = None
    oof_metrics: dict = field(default_factory=dict)

    def delta(self) -> dict:
        """Holdout metric changes against the previous champion."""
        if not self.previous_metrics:
            return {}
        keys = ("accuracy", "precision", "recall", "f1", "false_edible")
        return {k: self.metrics[k] - self.previous_metrics.get(k, 0) for k in keys}


def training_rows(settings: Settings, feedback: pd.DataFrame | None = None,
                  split: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> tuple[pd.DataFrame, int]:
    """The training split plus the feedback rows (never the holdout); returns (frame, feedback count).

    A feedback row whose 22 features equal a holdout row's is left out of training (it stays in
    prod_data.csv for monitoring): otherwise the holdout would enter training through the feedback
    door and stop measuring anything. ``frame.attrs['holdout_feedback_excluded']`` counts them.
    """
    train, holdout = split if split is not None else load_split(settings)
    if feedback is None:
        feedback = FeedbackStore(settings).read()
    excluded = 0
    if len(feedback):
        fb = feedback[FEATURES].copy()
        fb.insert(0, TARGET, normalize_labels(feedback["target"], column="target").to_numpy())
        held = set(map(tuple, holdout[FEATURES].to_numpy()))
        keep = np.array([tuple(r) not in held for r in fb[FEATURES].to_numpy()], dtype=bool)
        excluded = int((~keep).sum())
        train = pd.concat([train, fb[keep]], ignore_index=True)
    train.attrs["holdout_feedback_excluded"] = excluded
    return train, len(feedback)


def distinct_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(the distinct feature rows with one label, first occurrence order; keys of rows reported with both labels).

    A conflicting row is kept out entirely: a wrong label can neither teach "edible" nor jam the gate.
    """
    codes = feature_codes(rows[FEATURES])
    keys = keys_of(codes)
    y = M.to_binary(rows[TARGET])
    frame = pd.DataFrame({"k": keys, "y": y})
    per_key = frame.groupby("k", sort=False)["y"].agg(["min", "max"])
    conflicts = per_key.index[per_key["min"] != per_key["max"]].to_numpy(dtype=np.int64)
    first = ~pd.Series(keys).duplicated().to_numpy()
    keep = first & ~np.isin(keys, conflicts)
    out = rows.loc[keep, [TARGET, *FEATURES]].reset_index(drop=True)
    out.attrs.update(rows.attrs)
    return out, conflicts


def known_set(distinct: pd.DataFrame, conflicts: np.ndarray, train_split: pd.DataFrame,
              pure_min_count: int = PURE_MIN_COUNT) -> KnownSet:
    """The version's known set; its cutoff comes from the training split's rows (feedback excluded)."""
    return KnownSet.build(feature_codes(distinct[FEATURES]), M.to_binary(distinct[TARGET]), conflicts,
                          feature_codes(train_split[FEATURES]), pure_min_count)


def fit_distinct(rows: pd.DataFrame, train_split: pd.DataFrame, cfg: M.ModelConfig):
    """Fit on the distinct, non-conflicting rows; returns (Trained, KnownSet, distinct rows, conflict keys)."""
    distinct, conflicts = distinct_rows(rows)
    known = known_set(distinct, conflicts, train_split, cfg.pure_min_count)
    return M.fit(distinct[FEATURES], distinct[TARGET], cfg), known, distinct, conflicts


def rebuild_known(settings: Settings, meta: dict) -> tuple[KnownSet, str]:
    """The known set of a version made before records: its training rows rebuilt and checked against the
    training_sha256 it stored; when they no longer match, the training split alone (said in the record)."""
    split = load_split(settings)
    fb = FeedbackStore(settings).read()
    rows, _ = training_rows(settings, fb.head(int(meta.get("feedback_rows", 0) or 0)), split)
    how = "rebuilt from the training rows (training_sha256 checked)"
    if frame_sha256(rows) != meta.get("training_sha256"):
        rows, how = split[0], "the training split (the version's training rows could not be rebuilt exactly)"
    distinct, conflicts = distinct_rows(rows)
    return known_set(distinct, conflicts, split[0]), how


def pca_coordinates(pipeline, X: pd.DataFrame) -> np.ndarray:
    """The PCA embedding of rows under a fitted pipeline (everything but the classifier)."""
    return pipeline[:-1].transform(X[FEATURES])


def write_reference(settings: Settings, loaded) -> int:
    """Write data/ref_data.csv: the dataset's 22 features, target, the served prediction, pca_1..n."""
    df = load_dataset(settings)
    scored = Scorer(loaded).score(df[FEATURES])
    p = scored["p_poisonous"].to_numpy()
    coords = pca_coordinates(loaded.pipeline, df)
    out = df[FEATURES].copy()
    out["target"] = df[TARGET].map(CODE_TO_WORD).to_numpy()
    out["prediction"] = scored["prediction"].to_numpy()
    out["p_poisonous"] = p
    for i in range(coords.shape[1]):
        out[f"pca_{i + 1}"] = coords[:, i]
    atomic_write_bytes(settings.ref_path, out.to_csv(index=False, lineterminator="\n").encode())
    return len(out)


def train(settings: Settings, cfg: M.ModelConfig | None = None, *, trigger: str = "manual",
          promote: bool = True, force: bool = False, feedback: pd.DataFrame | None = None,
          write_ref: bool = True, record_extra: dict | None = None, accept_lower: bool = False) -> TrainResult:
    """Fit the whole pipeline on the distinct rows of train split + feedback, evaluate on the holdout (with the
    rules), register, gate, promote.

    The first model is always promoted. Later ones are promoted only when they pass the gate against the
    champion re-scored on the holdout now (``evaluate.gate``: false_edible does not rise; an accuracy fall that
    comes from confirmed contradicting feedback rows needs ``accept_lower``, any other by at most the margin),
    unless ``force``. ``record_extra`` is merged into the new version's immutable record.
    """
    start = time.perf_counter()
    registry = Registry(settings)
    previous = registry.champion()
    prev_meta = registry.metadata(previous) if previous else None
    if cfg is None:
        cfg = (M.ModelConfig.from_dict(prev_meta["params"]) if prev_meta
               else M.ModelConfig(seed=settings.seed, n_components=settings.n_components))
    split = load_split(settings)
    holdout = split[1]
    rows, n_feedback = training_rows(settings, feedback, split)
    trained, known, distinct, conflicts = fit_distinct(rows, split[0], cfg)
    metrics, rules_holdout = evaluate(LoadedModel("candidate", trained.pipeline, trained.threshold, {}, known),
                                      holdout)
    champion = rescore_champion(registry, previous, holdout)
    check = _gate_input(settings, cfg, rows, split, metrics, champion, accept_lower)
    reason = gate(check)
    if previous is None:
        trigger = "initial"
    will_promote = promote and (reason is None or force)
    calib = M.calibration_facts(trained.p_oof, trained.y, M.p_poisonous(trained.pipeline, holdout),
                                holdout[TARGET].to_numpy())
    extra = {**_record_extra(settings, rows, n_feedback, split, trained, known, distinct, conflicts),
             "rules_holdout": rules_holdout, "calibration": calib,
             "champion_rescored": ({"version": previous, "holdout_metrics": champion.metrics} if champion.metrics
                                   else {"version": previous, "note": champion.note} if previous else None),
             "gate": {"passed": reason is None, "reason": reason, "forced": bool(force and reason),
                      "accept_lower": bool(accept_lower), "confirmed_contradicting_rows": check.contradicting,
                      "accuracy_without_contradicting_rows": check.accuracy_without},
             **(record_extra or {})}
    version = registry.register(
        trained.pipeline, threshold=trained.threshold, trigger=trigger, params=cfg.to_dict(),
        metrics=metrics, training_rows=len(rows), training_sha256=frame_sha256(rows), parent=previous,
        status="candidate" if will_promote else ("rejected" if reason else "candidate"), extra=extra,
        known=known, reason=reason if not will_promote else None, plan_for=ScoringPlan.from_pipeline)
    promoted = False
    if will_promote:
        try:
            registry.promote(version, reason=trigger)
            promoted = True
        except RegistryError as exc:  # the new file does not load: keep the old champion
            reason = f"the new model could not be loaded back: {exc}"
            registry.set_status(version, "rejected", reason=reason)
    if promoted and write_ref:
        # the pipeline in memory is the one promote() just verified loads back from model.skops
        write_reference(settings, LoadedModel(version, trained.pipeline, trained.threshold, {}, known))
    return TrainResult(version, metrics, trained.threshold, promoted, reason, time.perf_counter() - start,
                       len(rows), n_feedback, previous, champion.metrics, trained.oof_metrics)


def _record_extra(settings: Settings, rows: pd.DataFrame, n_feedback: int, split, trained, known: KnownSet,
                  distinct: pd.DataFrame, conflicts: np.ndarray) -> dict:
    """The record's facts about the training rows, the operating point and the pure codes."""
    return {"feedback_rows": n_feedback,
            "feedback_rows_excluded_as_holdout": rows.attrs.get("holdout_feedback_excluded", 0),
            "distinct_training_rows": len(distinct), "duplicate_rows_dropped": len(rows) - len(distinct)
            - int(np.isin(keys_of(_codes(rows)), conflicts).sum()),
            "conflicting_rows": [_code_string(k) for k in conflicts[:1000]],
            "conflicting_rows_total": len(conflicts),
            "oof_metrics": trained.oof_metrics, "operating_point": trained.operating_point,
            "pure_codes": known.pure_codes(),
            "split": {"seed": settings.seed, "test_size": settings.test_size, "holdout_rows": len(split[1])}}


def _gate_input(settings: Settings, cfg: M.ModelConfig, rows: pd.DataFrame, split, metrics: dict, champion,
                accept_lower: bool) -> GateInput:
    """The gate's view: the confirmed contradicting feedback rows in training and, only when the candidate's
    accuracy falls with some of them present, its holdout accuracy refitted without them."""
    check = GateInput(metrics, champion, settings.accuracy_margin, accept_lower=accept_lower)
    if not champion.metrics or not len(rows) > len(split[0]):
        return check
    feedback = rows.iloc[len(split[0]):]  # training_rows appends the feedback rows after the split
    held = contradicting_feedback(feedback, load_dataset(settings), champion.known)
    check.contradicting = int((held != "").sum())
    if check.contradicting and metrics["accuracy"] < champion.metrics["accuracy"]:
        keep = np.r_[np.ones(len(split[0]), dtype=bool), held == ""]
        without = rows[keep].reset_index(drop=True)
        without.attrs.update(rows.attrs)
        trained, known, _, _ = fit_distinct(without, split[0], cfg)
        check.accuracy_without = score_holdout(
            LoadedModel("without", trained.pipeline, trained.threshold, {}, known), split[1])["accuracy"]
    return check


def _codes(rows: pd.DataFrame) -> np.ndarray:
    return feature_codes(rows[FEATURES])


def _code_string(key) -> str:
    """A feature row as its 22 one-letter codes joined by commas (dataset column order)."""
    return ",".join(CODE_LIST[f][c] for f, c in zip(FEATURES, codes_of(np.array([key]))[0]))

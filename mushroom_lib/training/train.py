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
from ..model.known import KnownSet, codes_of, keys_of
from ..registry.versions import LoadedModel, Registry, RegistryError
from ..scoring.accelerator import ScoringPlan
from ..scoring.scorer import CODE_LIST, Scorer, feature_codes


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


def known_set(distinct: pd.DataFrame, conflicts: np.ndarray, train_split: pd.DataFrame) -> KnownSet:
    """The version's known set; its cutoff comes from the training split's rows (feedback excluded)."""
    return KnownSet.build(feature_codes(distinct[FEATURES]), M.to_binary(distinct[TARGET]), conflicts,
                          feature_codes(train_split[FEATURES]))


def fit_distinct(rows: pd.DataFrame, train_split: pd.DataFrame, cfg: M.ModelConfig):
    """Fit on the distinct, non-conflicting rows; returns (Trained, KnownSet, distinct rows, conflict keys)."""
    distinct, conflicts = distinct_rows(rows)
    known = known_set(distinct, conflicts, train_split)
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


def score_holdout(loaded: LoadedModel, holdout: pd.DataFrame) -> dict:
    """Holdout metrics of the calls a user gets (model + known-set rules), with uncertain share and Brier."""
    scored = Scorer(loaded).score(holdout[FEATURES])
    p = scored["p_poisonous"].to_numpy()
    called = (scored["prediction"].to_numpy() == M.LABELS_P).astype(np.int8)
    out = M.metrics(p, holdout[TARGET].to_numpy(), loaded.threshold, pred=called)
    out["uncertain_share"] = float(scored["uncertain"].mean()) if len(scored) else 0.0
    out["brier"] = M.brier(p, holdout[TARGET].to_numpy())
    return out


def rescore_champion(registry: Registry, version: str | None, holdout: pd.DataFrame) -> tuple[dict | None, str]:
    """The champion's holdout metrics, scored now (never read from a stored file); (None, why) if it won't load."""
    if version is None:
        return None, ""
    try:
        return score_holdout(registry.load(version), holdout), ""
    except RegistryError as exc:
        return None, f"the champion {version} was not compared: it does not load ({exc})"


def gate(candidate: dict, champion: dict | None, margin: float) -> str | None:
    """None if the candidate may replace the champion, else the reason it may not."""
    if not champion:
        return None
    if candidate["false_edible"] > champion["false_edible"]:
        return (f"false_edible would rise from {champion['false_edible']} to {candidate['false_edible']} "
                "on the holdout")
    drop = champion["accuracy"] - candidate["accuracy"]
    if drop > margin + 1e-12:
        return (f"holdout accuracy would fall by {drop * 100:.2f} points "
                f"({champion['accuracy']:.4f} -> {candidate['accuracy']:.4f}), more than the "
                f"{margin * 100:.2f}-point margin")
    return None


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
          write_ref: bool = True, record_extra: dict | None = None) -> TrainResult:
    """Fit the whole pipeline on the distinct rows of train split + feedback, evaluate on the holdout (with the
    known-set rules), register, gate, promote.

    The first model is always promoted. Later ones are promoted only when they pass the gate against the
    champion re-scored on the holdout now (false_edible does not rise, accuracy drops by at most the margin),
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
    metrics = score_holdout(LoadedModel("candidate", trained.pipeline, trained.threshold, {}, known), holdout)
    prev_metrics, not_compared = rescore_champion(registry, previous, holdout)
    reason = gate(metrics, prev_metrics, settings.accuracy_margin)
    if previous is None:
        trigger = "initial"
    will_promote = promote and (reason is None or force)
    calib = M.calibration_facts(trained.p_oof, trained.y, M.p_poisonous(trained.pipeline, holdout),
                                holdout[TARGET].to_numpy())
    extra = {"feedback_rows": n_feedback,
             "feedback_rows_excluded_as_holdout": rows.attrs.get("holdout_feedback_excluded", 0),
             "distinct_training_rows": len(distinct), "duplicate_rows_dropped": len(rows) - len(distinct)
             - int(np.isin(keys_of(_codes(rows)), conflicts).sum()),
             "conflicting_rows": [_code_string(k) for k in conflicts[:1000]],
             "conflicting_rows_total": int(len(conflicts)),
             "oof_metrics": trained.oof_metrics, "calibration": calib,
             "champion_rescored": ({"version": previous, "holdout_metrics": prev_metrics} if prev_metrics
                                   else {"version": previous, "note": not_compared} if previous else None),
             "gate": {"passed": reason is None, "reason": reason, "forced": bool(force and reason)},
             "split": {"seed": settings.seed, "test_size": settings.test_size, "holdout_rows": len(holdout)},
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
                       len(rows), n_feedback, previous, prev_metrics, trained.oof_metrics)


def _codes(rows: pd.DataFrame) -> np.ndarray:
    return feature_codes(rows[FEATURES])


def _code_string(key) -> str:
    """A feature row as its 22 one-letter codes joined by commas (dataset column order)."""
    return ",".join(CODE_LIST[f][c] for f, c in zip(FEATURES, codes_of(np.array([key]))[0]))

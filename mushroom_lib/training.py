"""Training runs: assemble the training rows, fit, evaluate on the holdout, gate, register, promote."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import model as M
from .data import frame_sha256, load_dataset, load_split
from .feedback import FeedbackStore
from .fileio import atomic_write_bytes
from .registry import LoadedModel, Registry, RegistryError
from .schema import FEATURES, LABELS, TARGET, normalize_labels
from .settings import Settings


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
    """Write data/ref_data.csv: the dataset's 22 features, target, the model's prediction, pca_1..n."""
    df = load_dataset(settings)
    p = M.p_poisonous(loaded.pipeline, df)
    coords = pca_coordinates(loaded.pipeline, df)
    out = df[FEATURES].copy()
    out["target"] = df[TARGET].map(LABELS).to_numpy()
    out["prediction"] = M.label_words(M.decide(p, loaded.threshold))
    out["p_poisonous"] = p
    for i in range(coords.shape[1]):
        out[f"pca_{i + 1}"] = coords[:, i]
    atomic_write_bytes(settings.ref_path, out.to_csv(index=False, lineterminator="\n").encode())
    return len(out)


def train(settings: Settings, cfg: M.ModelConfig | None = None, *, trigger: str = "manual",
          promote: bool = True, force: bool = False, feedback: pd.DataFrame | None = None,
          write_ref: bool = True, record_extra: dict | None = None) -> TrainResult:
    """Fit the whole pipeline on train split + feedback, evaluate on the holdout, register, gate, promote.

    The first model is always promoted. Later ones are promoted only when they pass the gate
    (false_edible does not rise, accuracy drops by at most the margin), unless ``force``.
    ``record_extra`` is merged into the new version's record (e.g. ``{"feedback_excluded": 3}``).
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
    trained = M.fit(rows[FEATURES], rows[TARGET], cfg)
    p_hold = M.p_poisonous(trained.pipeline, holdout)
    metrics = M.metrics(p_hold, holdout[TARGET].to_numpy(), trained.threshold)
    prev_metrics = prev_meta.get("holdout_metrics") if prev_meta else None
    reason = gate(metrics, prev_metrics, settings.accuracy_margin)
    if previous is None:
        trigger = "initial"
    will_promote = promote and (reason is None or force)
    version = registry.register(
        trained.pipeline, threshold=trained.threshold, trigger=trigger, params=cfg.to_dict(),
        metrics=metrics, training_rows=len(rows), training_sha256=frame_sha256(rows), parent=previous,
        status="candidate" if will_promote else ("rejected" if reason else "candidate"),
        extra={"feedback_rows": n_feedback,
               "feedback_rows_excluded_as_holdout": rows.attrs.get("holdout_feedback_excluded", 0),
               "oof_metrics": trained.oof_metrics,
               "gate": {"passed": reason is None, "reason": reason, "forced": bool(force and reason)},
               "split": {"seed": settings.seed, "test_size": settings.test_size, "holdout_rows": len(holdout)},
               **(record_extra or {})})
    promoted = False
    if will_promote:
        try:
            registry.promote(version, reason=trigger)
            promoted = True
        except RegistryError as exc:  # the new file does not load: keep the old champion
            reason = f"the new model could not be loaded back: {exc}"
            registry.set_status(version, "rejected", reason=reason)
    elif reason:
        registry.set_status(version, "rejected", reason=reason)
    if promoted and write_ref:
        # the pipeline in memory is the one promote() just verified loads back from model.skops
        write_reference(settings, LoadedModel(version, trained.pipeline, trained.threshold, {}))
    return TrainResult(version, metrics, trained.threshold, promoted, reason, time.perf_counter() - start,
                       len(rows), n_feedback, previous, prev_metrics, trained.oof_metrics)

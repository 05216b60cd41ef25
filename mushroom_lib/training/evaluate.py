"""Evaluating a candidate: its holdout metrics with the rules, the champion re-scored now, and the gate.

The gate never lets false_edible rise; an accuracy fall that comes from confirmed feedback rows contradicting the
dataset or the safety rules is refused unless a reviewer accepts it (``accept_lower``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.schema import FEATURES, TARGET
from ..model import pipeline as M
from ..model import rules
from ..model.known import KnownSet, LabelTable
from ..registry.versions import LoadedModel, Registry, RegistryError
from ..scoring.scorer import Scorer, feature_codes


def evaluate(loaded: LoadedModel, holdout: pd.DataFrame) -> tuple[dict, dict]:
    """(holdout metrics of the calls a user gets, with uncertain share and Brier; how often each rule applied,
    decided and changed a call on the holdout: ``rules.rule_counts``)."""
    p, ev, decision = Scorer(loaded).explain(feature_codes(holdout[FEATURES]))
    y = holdout[TARGET].to_numpy()
    out = M.metrics(p, y, loaded.threshold, pred=decision.called)
    out["uncertain_share"] = float(decision.uncertain.mean()) if len(p) else 0.0
    out["brier"] = M.brier(p, y)
    return out, rules.rule_counts(decision, ev, p, loaded.threshold)


def score_holdout(loaded: LoadedModel, holdout: pd.DataFrame) -> dict:
    """Holdout metrics of the calls a user gets (model + rules), with uncertain share and Brier."""
    return evaluate(loaded, holdout)[0]


@dataclass
class Champion:
    """The champion as the gate sees it: its holdout metrics scored now, or why it could not be compared."""

    version: str | None
    metrics: dict | None = None
    note: str = ""
    known: KnownSet | None = None


def rescore_champion(registry: Registry, version: str | None, holdout: pd.DataFrame) -> Champion:
    """The champion's holdout metrics, scored now (never read from a stored file); a note when it won't load."""
    if version is None:
        return Champion(None)
    try:
        loaded = registry.load(version)
    except RegistryError as exc:
        return Champion(version, note=f"the champion {version} was not compared: it does not load ({exc})")
    return Champion(version, score_holdout(loaded, holdout), known=loaded.known)


def contradicting_feedback(feedback: pd.DataFrame, dataset: pd.DataFrame, known: KnownSet | None) -> np.ndarray:
    """Per feedback row in training: '' or its ``rules.held_reasons`` sentence. A held row reaches training only
    once a reviewer confirmed it, so every non-empty entry is a confirmed contradicting row."""
    if not len(feedback):
        return np.zeros(0, dtype=object)
    table = LabelTable(feature_codes(dataset[FEATURES]), M.to_binary(dataset[TARGET]))
    return rules.held_reasons(feature_codes(feedback[FEATURES]), M.to_binary(feedback[TARGET]), table, known)


@dataclass
class GateInput:
    """What the gate weighs: candidate and champion holdout metrics, the confirmed contradicting rows in the
    candidate's training, the candidate's holdout accuracy without them (None when not measured)."""

    candidate: dict
    champion: Champion
    margin: float
    contradicting: int = 0
    accuracy_without: float | None = None
    accept_lower: bool = False


def gate(g: GateInput) -> str | None:
    """None if the candidate may replace the champion, else the reason it may not.

    false_edible never rises (and a candidate that cannot be compared with a champion that does not load must
    have none). An accuracy fall is refused when the candidate's accuracy without its confirmed contradicting
    rows is higher (the fall comes from them), else when it exceeds the margin; ``accept_lower`` (a reviewer's
    `mushroom train --accept-lower`) accepts either fall, never more false_edible.
    """
    cand, champ = g.candidate, g.champion.metrics
    if not champ:
        if g.champion.version is not None and cand["false_edible"] > 0:
            return (f"{g.champion.note}; a candidate that cannot be compared must call no holdout poisonous "
                    f"mushroom edible (it calls {cand['false_edible']})")
        return None
    if cand["false_edible"] > champ["false_edible"]:
        return f"false_edible would rise from {champ['false_edible']} to {cand['false_edible']} on the holdout"
    drop = champ["accuracy"] - cand["accuracy"]
    if g.accept_lower or drop <= 1e-12:
        return None
    if g.contradicting and g.accuracy_without is not None and g.accuracy_without > cand["accuracy"] + 1e-12:
        return (f"holdout accuracy would fall from {champ['accuracy']:.4f} to {cand['accuracy']:.4f} because of "
                f"{g.contradicting} confirmed feedback row(s) that contradict the dataset or the safety rules "
                f"(without them: {g.accuracy_without:.4f}); to accept it, a reviewer runs "
                "`mushroom train --accept-lower`")
    if drop > g.margin + 1e-12:
        return (f"holdout accuracy would fall by {drop * 100:.2f} points "
                f"({champ['accuracy']:.4f} -> {cand['accuracy']:.4f}), more than the "
                f"{g.margin * 100:.2f}-point margin")
    return None

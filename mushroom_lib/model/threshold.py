"""The operating point: the threshold on p_poisonous, chosen on out-of-fold votes after the safety rules.

Each fold's model votes on the rows it did not see, and each fold's own known set rules on them (``rules``);
the threshold only decides the rows no rule calls poisonous. Chosen on training rows only, never the holdout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..data.schema import CODES, FEATURES
from . import rules
from .known import KnownSet

if TYPE_CHECKING:  # pandas is imported by the caller's frame
    import pandas as pd

OPERATING_RULE = ("the highest out-of-fold accuracy with 0 out-of-fold false_edible after the rules (else the "
                  "fewest), its lowest threshold, at most max_threshold")


def frame_codes(X: pd.DataFrame) -> np.ndarray:
    """Code indices (n, 22) of a validated feature frame (training's; scoring has its own fast reader)."""
    import pandas as pd  # lazy: see the module docstring of pipeline

    out = np.empty((len(X), len(FEATURES)), dtype=np.int16)
    for j, f in enumerate(FEATURES):
        col = pd.Categorical(X[f].to_numpy(), categories=list(CODES[f])).codes
        if (col < 0).any():
            raise ValueError(f"column {f!r} holds a code outside the schema; validate the frame first")
        out[:, j] = col
    return out


def seen_table(seen: dict[str, set[str]]) -> np.ndarray:
    """The codes a fitted encoder saw, as the flat table ``rules.evidence`` takes."""
    return rules.seen_flat([np.array([c in seen[f] for c in CODES[f]], dtype=bool) for f in FEATURES])


def fold_evidence(codes: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seen: np.ndarray,
                  pure_min_count: int) -> rules.Evidence:
    """The rules' look-ups for a fold's unseen rows, against the fold's own known set (its rows, its cutoff)."""
    known = KnownSet.build(codes[train], y[train], np.zeros(0, np.int64), codes[train], pure_min_count)
    return rules.evidence(known, seen, codes[test])


def ruled_rows(p_oof: np.ndarray, evidence: list[tuple[np.ndarray, rules.Evidence]]) -> np.ndarray:
    """True for the out-of-fold rows the rules call poisonous at any threshold (the threshold cannot change them)."""
    ruled = np.zeros(len(p_oof), dtype=bool)
    for test, ev in evidence:
        # with a vote of 0 and a threshold of 1 only the rules can call a row poisonous
        ruled[test] = rules.decide(np.zeros(len(test)), 1.0, ev).called == 1
    return ruled


def choose_threshold(p_oof: np.ndarray, y: np.ndarray, ruled: np.ndarray, max_threshold: float = 0.5) -> float:
    """The lowest threshold in (0, max_threshold] with the fewest out-of-fold false_edible (0 when reachable),
    then the highest out-of-fold accuracy, counting only rows no rule calls poisonous (the rest are poisonous
    at every threshold). Candidates sit just above the vote of each such edible row (and at max_threshold): the
    chosen one leaves that row edible and calls every higher vote poisonous."""
    p_oof, y = np.asarray(p_oof, dtype=np.float64), np.asarray(y)
    free = ~np.asarray(ruled, dtype=bool)
    pf, yf = p_oof[free], y[free]
    edible = np.unique(pf[(yf == 0) & (pf < max_threshold)])
    cands = np.unique(np.minimum(np.r_[np.nextafter(edible, 1.0), max_threshold], max_threshold))
    pos, neg = np.sort(pf[yf == 1]), np.sort(pf[yf == 0])
    false_edible = np.searchsorted(pos, cands, side="left")  # poisonous with p < t
    false_poisonous = len(neg) - np.searchsorted(neg, cands, side="left")  # edible with p >= t
    best = np.lexsort((cands, false_edible + false_poisonous, false_edible))[0]
    return float(cands[best])


def fold_rule_counts(p_oof: np.ndarray, threshold: float, parts: list[tuple[np.ndarray, rules.Evidence]]) -> dict:
    """``rules.rule_counts`` over the folds' rows at the chosen threshold (summed)."""
    total: dict = {}
    for test, ev in parts:
        counts = rules.rule_counts(rules.decide(p_oof[test], threshold, ev), ev, p_oof[test], threshold)
        for key, value in counts.items():
            if isinstance(value, dict):
                into = total.setdefault(key, {})
                for name, n in value.items():
                    into[name] = into.get(name, 0) + n
            else:
                total[key] = total.get(key, 0) + value
    return total

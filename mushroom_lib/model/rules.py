"""The safety rules: the one implementation of every rule that calls a row poisonous whatever the model votes.

Every path (one row, batch, byte reader, dask, the API, the dashboard, identify's model line, the threshold's
out-of-fold choice, held feedback) decides through ``decide``; it never makes a row less poisonous than the
model's vote at the threshold, and p_poisonous always stays the model's own vote.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.schema import CODES, FEATURES
from .known import NO_NEAR, OFFSET, KnownSet, LabelTable, code_name

#: The rule that decided each row (``Decision.rule``), in order of precedence; 0 = the model's own call.
RULES = ("model", "unseen_code", "conflicting_reports", "far_from_known", "pure_poisonous_code",
         "nearest_known_poisonous", "uncertain_band")
UNSEEN, CONFLICT, FAR, PURE, NEAR, BAND = range(1, 7)

REASON_UNSEEN = "code never seen in training: {codes}"
REASON_CONFLICT = "conflicting reports: this feature row was reported both edible and poisonous"
REASON_FAR = "unlike every known mushroom: the closest differs in {cutoff} or more features"
REASON_PURE = "every one of the {n} known mushrooms with {feature}={code} ({word}) is poisonous"
REASON_SELF = "this very mushroom is a known one, and it is poisonous"
REASON_NEAR = "the closest known mushroom ({d} feature{s} away: {features}) is poisonous"
REASON_BAND = "uncertain band: p_poisonous {p:.2f} >= threshold {t:.2f}"
HELD_DATASET = "held: the dataset calls this mushroom {known}; this row says {given}"
HELD_RULES = "held: labelled edible, but {reason}"
_NAMES = [[f"{f}={c}" for c in CODES[f]] for f in FEATURES]  #: 'feature=code' per feature and code index


@dataclass(frozen=True)
class Evidence:
    """What the version knows about each row (exact look-ups, no model): unseen codes ('' or 'feature=code;…'),
    conflicting reports, distance to the known set (capped at the cutoff; -1 without a known set), the
    differing-feature bit mask of a poisonous known row at that distance (NO_NEAR: none), and the first
    pure-poisonous code (its flat index, -1: none) with its known rows."""

    unseen: np.ndarray
    conflict: np.ndarray
    nearest: np.ndarray
    near_poisonous: np.ndarray
    pure: np.ndarray
    pure_rows: np.ndarray
    cutoff: int


@dataclass(frozen=True)
class Decision:
    """The calls after the rules: poisonous (0/1), uncertain, the reason ('' for the model's own confident
    call) and the rule that decided (an index into RULES)."""

    called: np.ndarray
    uncertain: np.ndarray
    reason: np.ndarray
    rule: np.ndarray


def seen_flat(seen: list[np.ndarray]) -> np.ndarray:
    """Per-feature seen masks (one bool per valid code) as one flat table (see ``known.OFFSET``)."""
    return np.concatenate([np.asarray(m, dtype=bool) for m in seen])


def _blank(n: int) -> np.ndarray:
    """n empty strings (an object array; np.empty + fill is several times cheaper than np.full for one row)."""
    out = np.empty(n, dtype=object)
    out[:] = ""
    return out


def unseen_codes(codes: np.ndarray, seen: np.ndarray, flat: np.ndarray | None = None) -> np.ndarray:
    """'feature=code;…' per row for valid codes outside the flat ``seen`` table ('' for most rows); ``flat``:
    the rows' indices into flat tables (codes + OFFSET) when the caller has them."""
    out = _blank(len(codes))
    if not len(codes):
        return out
    missing = ~seen[codes.astype(np.int64) + OFFSET if flat is None else flat]
    if np.count_nonzero(missing):
        for r in np.nonzero(missing.any(axis=1))[0].tolist():
            out[r] = ";".join(_NAMES[j][codes[r, j]] for j in np.nonzero(missing[r])[0].tolist())
    return out


def evidence(known: KnownSet | None, seen: np.ndarray, codes: np.ndarray) -> Evidence:
    """The look-ups every rule needs for rows of code indices (n, 22); ``seen``: the version's flat seen table."""
    n = len(codes)
    flat = codes.astype(np.int64) + OFFSET
    unseen = unseen_codes(codes, seen, flat)
    none = np.full(n, -1, dtype=np.int64)
    if known is None:  # a model built by hand: only unseen codes rule
        return Evidence(unseen, np.zeros(n, dtype=bool), none, none.copy(), none.copy(), np.zeros(n, np.int64), 0)
    nearest, near = known.lookup(codes)
    counts = known.pure[flat]
    pure, pure_rows = none, np.zeros(n, dtype=np.int64)
    if np.count_nonzero(counts):  # the first pure-poisonous code of each row, in feature order
        has = counts > 0
        first = np.argmax(has, axis=1)
        found = has[np.arange(n), first]
        pure = np.where(found, flat[np.arange(n), first], -1)
        pure_rows = np.where(found, counts[np.arange(n), first], 0)
    return Evidence(unseen, known.conflicting(codes), nearest, near, pure, pure_rows, known.cutoff)


def decide(p: np.ndarray, threshold: float, ev: Evidence, *, skip: frozenset[str] = frozenset()) -> Decision:
    """The calls for the model's votes ``p`` at ``threshold`` under the rules (``skip``: names from RULES left
    out, for measuring what each rule catches; never in serving).

    An unseen code, conflicting reports or a distance at/beyond the cutoff call a row poisonous and uncertain.
    A pure-poisonous code, or a poisonous known mushroom among the nearest ones, calls it poisonous too, and
    uncertain unless the model itself votes poisonous by a majority (p >= 0.5 and >= threshold): then model
    and facts agree. A row called poisonous only because p >= threshold is in the uncertain band.
    """
    p = np.asarray(p, dtype=np.float64)
    off = np.zeros(len(p), dtype=bool)
    unseen = off if "unseen_code" in skip else ev.unseen.astype(bool)  # '' is False
    conflict = off if "conflicting_reports" in skip else ev.conflict
    far = off if "far_from_known" in skip or ev.cutoff <= 0 else ev.nearest >= ev.cutoff
    pure = off if "pure_poisonous_code" in skip else ev.pure >= 0
    near = off if "nearest_known_poisonous" in skip else ev.near_poisonous != NO_NEAR
    voted = p >= threshold
    confident = voted & (p >= 0.5)
    forced = unseen | conflict | far
    veto = (pure | near) & ~(forced | confident)
    band = off if "uncertain_band" in skip else voted & ~(confident | forced | veto)
    rule = np.zeros(len(p), dtype=np.int8)
    if np.count_nonzero(forced | veto | band):  # assigned in reverse precedence: the first rule that applies wins
        for mask, code in ((band, BAND), (veto & near, NEAR), (veto & pure, PURE), (far, FAR),
                           (conflict, CONFLICT), (unseen, UNSEEN)):
            rule[mask] = code
    return Decision((voted | forced | veto).astype(np.int8), rule > 0, _reasons(rule, ev, p, threshold), rule)


def _reasons(rule: np.ndarray, ev: Evidence, p: np.ndarray, threshold: float) -> np.ndarray:
    """The sentence per row ('' where the model's own call stands), each distinct sentence formatted once."""
    reason = _blank(len(rule))
    if not np.count_nonzero(rule):
        return reason
    for code, detail in ((UNSEEN, ev.unseen), (CONFLICT, None), (FAR, None), (PURE, ev.pure),
                         (NEAR, ev.near_poisonous), (BAND, p)):
        rows = np.nonzero(rule == code)[0]
        if not len(rows):
            continue
        if detail is None:
            reason[rows] = reason_of(code, ev, int(rows[0]), 0.0, threshold)
            continue
        _, first, inverse = np.unique(detail[rows], return_index=True, return_inverse=True)
        texts = np.array([reason_of(code, ev, int(rows[i]), float(p[rows[i]]), threshold) for i in first],
                         dtype=object)
        reason[rows] = texts[inverse.ravel()]
    return reason


def reason_of(rule: int, ev: Evidence, i: int, p: float, threshold: float) -> str:
    """The sentence for row ``i`` decided by ``rule``."""
    if rule == UNSEEN:
        return REASON_UNSEEN.format(codes=ev.unseen[i].replace(";", ", "))
    if rule == CONFLICT:
        return REASON_CONFLICT
    if rule == FAR:
        return REASON_FAR.format(cutoff=ev.cutoff)
    if rule == PURE:
        feature, code = code_name(int(ev.pure[i]))
        return REASON_PURE.format(n=int(ev.pure_rows[i]), feature=feature, code=code, word=CODES[feature][code])
    if rule == NEAR:
        mask = int(ev.near_poisonous[i])
        if mask == 0:
            return REASON_SELF
        names = [f for j, f in enumerate(FEATURES) if mask >> j & 1]
        return REASON_NEAR.format(d=len(names), s="" if len(names) == 1 else "s", features=", ".join(names))
    if rule == BAND:
        return REASON_BAND.format(p=p, t=threshold)
    return ""


def rule_counts(decision: Decision, ev: Evidence, p: np.ndarray, threshold: float) -> dict:
    """How often each rule applied to the rows (``matched``, whatever the model says), decided them
    (``decided``: the reason shown) and turned the model's edible call into poisonous (``changed_call``)."""
    p = np.asarray(p, dtype=np.float64)
    edible_vote = p < threshold
    matched = {"unseen_code": ev.unseen.astype(bool), "conflicting_reports": np.asarray(ev.conflict, bool),
               "far_from_known": (ev.nearest >= ev.cutoff) & (ev.cutoff > 0), "pure_poisonous_code": ev.pure >= 0,
               "nearest_known_poisonous": ev.near_poisonous != NO_NEAR,
               "uncertain_band": (p >= threshold) & (p < 0.5)}
    counts = np.bincount(decision.rule.astype(np.int64), minlength=len(RULES))
    changed = np.bincount(decision.rule[edible_vote & (decision.called == 1)].astype(np.int64), minlength=len(RULES))
    return {"rows": len(p),
            "matched": {k: int(v.sum()) for k, v in matched.items()},
            "decided": {name: int(counts[i]) for i, name in enumerate(RULES) if i},
            "changed_call": {name: int(changed[i]) for i, name in enumerate(RULES) if i and i != BAND}}


def held_reasons(codes: np.ndarray, labels: np.ndarray, dataset: LabelTable, known: KnownSet | None) -> np.ndarray:
    """'' or 'held: …' per labelled feedback row (codes (n, 22), labels 0 edible / 1 poisonous): a label that
    contradicts the dataset's label for the same feature row, or an edible label on a row the rules call
    poisonous whatever the model votes (unseen code, conflicting reports, far from every known mushroom, a
    pure-poisonous code, a poisonous known mushroom among the nearest). A held row waits for a reviewer."""
    labels = np.asarray(labels, dtype=np.int8)
    out = np.full(len(labels), "", dtype=object)
    words = {0: "edible", 1: "poisonous", 2: "both edible and poisonous"}
    given = dataset.label_of(codes)
    for i in np.flatnonzero((given >= 0) & (given != labels)).tolist():
        out[i] = HELD_DATASET.format(known=words[int(given[i])], given=words[int(labels[i])])
    if known is not None:
        ev = evidence(known, known.present, codes)
        ruled = decide(np.zeros(len(labels)), 0.5, ev, skip=frozenset({"uncertain_band"}))
        for i in np.flatnonzero((out == "") & (labels == 0) & (ruled.called == 1)).tolist():
            out[i] = HELD_RULES.format(reason=ruled.reason[i])
    return out

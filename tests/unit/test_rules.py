"""The safety rules on synthetic rows: the exact look-ups against a plain search, the decision, held labels, the
operating point. No trained home, no dataset."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mushroom_lib.data.schema import CODES, FEATURES
from mushroom_lib.model import rules
from mushroom_lib.model.known import (
    NO_NEAR,
    OFFSET,
    KnownSet,
    LabelTable,
    codes_of,
    hamming_nearest,
    keys_of,
)
from mushroom_lib.model.threshold import choose_threshold

RADIX = [len(CODES[f]) for f in FEATURES]
J = {f: j for j, f in enumerate(FEATURES)}


def code(feature: str, letter: str) -> int:
    return list(CODES[feature]).index(letter)


def random_rows(rng: np.random.Generator, n: int, spread: int = 3) -> np.ndarray:
    """Rows drawn from the first ``spread`` codes of each feature: close to each other, so distances 0-3 occur."""
    return np.stack([rng.integers(0, min(spread, r), n) for r in RADIX], axis=1).astype(np.int16)


def known_set(rng, n=60, cutoff=None, pure_min_count=3) -> KnownSet:
    codes = np.unique(random_rows(rng, n), axis=0)
    labels = rng.integers(0, 2, len(codes)).astype(np.int8)
    if cutoff is None:
        return KnownSet.build(codes, labels, np.zeros(0, np.int64), codes, pure_min_count)
    return KnownSet(keys_of(codes), labels, np.zeros(0, np.int64), cutoff, pure_min_count)


def plain_answer(known: KnownSet, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """nearest and 'a poisonous known row at that distance' by brute force over every known row."""
    d, near = hamming_nearest(rows, codes_of(known.keys), known.labels)
    d = np.minimum(d, known.cutoff)
    return d, np.where(d >= known.cutoff, NO_NEAR, near)


# ---------------------------------------------------------------- look-ups
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cutoff=st.sampled_from([None, 1, 2, 3, 5]))
def test_lookups_equal_a_plain_search_in_batch_and_one_row(seed, cutoff):
    rng = np.random.default_rng(seed)
    known = known_set(rng, cutoff=cutoff)
    rows = random_rows(rng, 80)
    want_d, want_near = plain_answer(known, rows)
    d, near = known.lookup(rows)
    assert (d == want_d).all()
    assert ((near != NO_NEAR) == (want_near != NO_NEAR)).all()
    kc = codes_of(known.keys)
    bits = 1 << np.arange(len(FEATURES))
    for i in np.flatnonzero(near != NO_NEAR):  # the mask names the features a poisonous known row differs in
        diff = (kc != rows[i]).astype(np.int64) @ bits
        assert ((diff == near[i]) & (known.labels == 1)).any()
    for i in range(len(rows)):  # the one-row look-up: the same distance and the same named features
        assert known.one(rows[i].tolist()) == (int(d[i]), int(near[i]))


def test_pure_codes_need_the_minimum_count_and_every_row_poisonous():
    base = np.zeros((6, len(FEATURES)), dtype=np.int16)
    base[:, J["cap-shape"]] = [1, 1, 1, 2, 2, 0]
    base[:, J["habitat"]] = np.arange(6)  # distinct rows
    labels = np.array([1, 1, 1, 1, 0, 0], dtype=np.int8)
    known = KnownSet(keys_of(base), labels, np.zeros(0, np.int64), 2, pure_min_count=3)
    table = known.pure.reshape(-1)
    assert table[OFFSET[J["cap-shape"]] + 1] == 3  # three rows, all poisonous
    assert table[OFFSET[J["cap-shape"]] + 2] == 0  # mixed
    assert KnownSet(keys_of(base), labels, np.zeros(0, np.int64), 2, pure_min_count=4).pure[
        OFFSET[J["cap-shape"]] + 1] == 0  # too few for a minimum of 4
    stored = KnownSet.from_arrays(known.arrays())
    assert stored.digest() == known.digest() and stored.pure_min_count == 3


def test_a_set_stored_before_pure_codes_keeps_its_digest_and_derives_the_table():
    rng = np.random.default_rng(3)
    known = known_set(rng)
    old = {k: v for k, v in known.arrays().items() if not k.startswith("known_pure")}
    legacy = KnownSet.from_arrays(old)
    assert legacy.arrays().keys() == old.keys()  # the digest an old record holds still matches
    assert np.array_equal(legacy.pure, known.pure)


# ---------------------------------------------------------------- the decision
def evidence(n=1, *, unseen="", conflict=False, nearest=1, near=NO_NEAR, pure=-1, pure_rows=0, cutoff=2):
    return rules.Evidence(np.array([unseen] * n, dtype=object), np.array([conflict] * n), np.array([nearest] * n),
                          np.array([near] * n), np.array([pure] * n), np.array([pure_rows] * n), cutoff)


GREEN = int(OFFSET[J["spore-print-color"]] + code("spore-print-color", "r"))


@pytest.mark.parametrize(("ev", "p", "called", "uncertain", "reason"), [
    (evidence(), 0.0, 0, False, ""),
    (evidence(), 0.9, 1, False, ""),
    (evidence(), 0.3, 1, True, "uncertain band: p_poisonous 0.30 >= threshold 0.20"),
    (evidence(unseen="veil-type=u"), 0.0, 1, True, "code never seen in training: veil-type=u"),
    (evidence(unseen="veil-type=u"), 1.0, 1, True, "code never seen in training: veil-type=u"),
    (evidence(conflict=True), 0.0, 1, True, rules.REASON_CONFLICT),
    (evidence(nearest=2), 0.0, 1, True, "unlike every known mushroom: the closest differs in 2 or more features"),
    (evidence(pure=GREEN, pure_rows=72), 0.0, 1, True,
     "every one of the 72 known mushrooms with spore-print-color=r (green) is poisonous"),
    (evidence(pure=GREEN, pure_rows=72), 0.3, 1, True,  # the fact outranks the band
     "every one of the 72 known mushrooms with spore-print-color=r (green) is poisonous"),
    (evidence(pure=GREEN, pure_rows=72), 0.9, 1, False, ""),  # model and facts agree: not uncertain
    (evidence(near=1 << J["spore-print-color"]), 0.0, 1, True,
     "the closest known mushroom (1 feature away: spore-print-color) is poisonous"),
    (evidence(nearest=0, near=0), 0.1, 1, True, rules.REASON_SELF),
    (evidence(nearest=2, near=(1 << J["odor"]) | (1 << J["habitat"]), cutoff=3), 0.0, 1, True,
     "the closest known mushroom (2 features away: odor, habitat) is poisonous"),
    (evidence(unseen="odor=m", pure=GREEN, pure_rows=5, nearest=2), 0.0, 1, True, "code never seen in training: odor=m"),
])
def test_decide(ev, p, called, uncertain, reason):
    d = rules.decide(np.array([p]), 0.2, ev)
    assert (int(d.called[0]), bool(d.uncertain[0]), d.reason[0]) == (called, uncertain, reason)


def test_decide_never_calls_edible_what_the_model_calls_poisonous_and_skips_only_what_it_is_told():
    rng = np.random.default_rng(0)
    n = 500
    ev = rules.Evidence(np.where(rng.random(n) < 0.1, "odor=m", "").astype(object), rng.random(n) < 0.05,
                        rng.integers(0, 3, n), np.where(rng.random(n) < 0.3, 1, NO_NEAR),
                        np.where(rng.random(n) < 0.2, GREEN, -1), np.full(n, 9), 2)
    p = rng.random(n)
    full = rules.decide(p, 0.4, ev)
    assert (full.called >= (p >= 0.4)).all()
    assert (full.uncertain == (full.reason != "")).all()
    for name in rules.RULES[1:]:
        less = rules.decide(p, 0.4, ev, skip=frozenset({name}))
        assert (less.called <= full.called).all()
        assert not (less.rule == rules.RULES.index(name)).any()
    batch = [rules.decide(p[i:i + 1], 0.4, rules.Evidence(*(a[i:i + 1] for a in (
        ev.unseen, ev.conflict, ev.nearest, ev.near_poisonous, ev.pure, ev.pure_rows)), ev.cutoff)) for i in range(50)]
    assert [b.reason[0] for b in batch] == list(full.reason[:50])  # one row at a time: the same answers


def test_rule_counts_say_what_applied_decided_and_changed():
    ev = evidence(3, pure=GREEN, pure_rows=72)
    p = np.array([0.0, 0.3, 0.9])
    counts = rules.rule_counts(rules.decide(p, 0.2, ev), ev, p, 0.2)
    assert counts["matched"]["pure_poisonous_code"] == 3
    assert counts["decided"]["pure_poisonous_code"] == 2
    assert counts["changed_call"]["pure_poisonous_code"] == 1


# ---------------------------------------------------------------- held labels
def test_held_reasons_hold_contradictions_and_edible_labels_the_rules_overrule():
    rng = np.random.default_rng(5)
    known = known_set(rng, n=200)
    kc = codes_of(known.keys)
    table = LabelTable(kc, known.labels)
    flipped = 1 - known.labels[:4]
    out = rules.held_reasons(kc[:4], flipped, table, known)
    assert all(r.startswith("held: the dataset calls this mushroom ") for r in out)
    assert not rules.held_reasons(kc[:20], known.labels[:20], table, known).any()  # agreeing labels are not held
    far = np.full((1, len(FEATURES)), 0, dtype=np.int16)
    far[0] = [r - 1 for r in RADIX]  # the last code of every feature: far from rows drawn from the first three
    out = rules.held_reasons(np.repeat(far, 2, axis=0), np.array([0, 1]), table, known)
    assert out[0].startswith("held: labelled edible, but ") and out[1] == ""  # poisonous is never held for this


def test_label_table_marks_rows_reported_both_ways():
    rows = np.zeros((3, len(FEATURES)), dtype=np.int16)
    rows[2, 0] = 1
    table = LabelTable(rows, np.array([0, 1, 1]))
    assert list(table.label_of(rows)) == [2, 2, 1]
    other = np.ones((1, len(FEATURES)), dtype=np.int16)
    assert list(table.label_of(other)) == [-1]


# ---------------------------------------------------------------- the operating point
def test_threshold_is_the_lowest_with_the_best_accuracy_and_no_false_edible():
    p = np.array([0.0, 0.1, 0.2, 0.45, 0.6, 0.9, 0.05])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    ruled = np.array([False] * 6 + [True])  # the rules call the last row poisonous: its vote does not count
    t = choose_threshold(p, y, ruled, 0.5)
    assert 0.2 < t <= 0.45 and t == np.nextafter(0.2, 1)
    # an edible vote above the lowest poisonous one: 0 false_edible wins over accuracy
    t = choose_threshold(np.array([0.1, 0.3, 0.2]), np.array([0, 0, 1]), np.zeros(3, bool), 0.5)
    assert t <= 0.2
    # no edible vote below the cap: the cap
    assert choose_threshold(np.array([0.7, 0.8]), np.array([1, 1]), np.zeros(2, bool), 0.5) == 0.5
    # a poisonous vote of 0: no threshold in (0, 0.5] reaches 0 false_edible; the fewest, then the best accuracy
    t = choose_threshold(np.array([0.0, 0.0, 0.3]), np.array([1, 0, 0]), np.zeros(3, bool), 0.5)
    assert t == np.nextafter(0.3, 1)

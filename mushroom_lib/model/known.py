"""The known set of a model version: the distinct feature rows it was trained on, and its exact look-ups.

Which known rows are at distance 0 and 1 from a row (23 sorted-key look-ups, the poisonous ones among them),
its distance capped at the version's cutoff, rows reported with both labels, and the per-version table of
pure-poisonous codes. The rules built on these look-ups live in ``rules.py``; this module never decides a call.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np

from ..core.fileio import atomic_write_bytes
from ..data.schema import CODES, FEATURES

_RADIX = np.array([len(CODES[f]) for f in FEATURES], dtype=np.int64)
_PLACE = np.r_[np.cumprod(_RADIX[::-1])[::-1][1:], 1].astype(np.int64)
_NF = len(FEATURES)
_PLACE_LIST = [int(v) for v in _PLACE]
_SLOT = 32  #: masked keys carry the masked feature's number: masked_key * 32 + j (fits in int64)
OFFSET = np.r_[0, np.cumsum(_RADIX)[:-1]].astype(np.int64)  #: where feature j's codes start in a flat table
N_CODES = int(_RADIX.sum())  #: length of a flat per-code table (every valid code of every feature)
_OFFSET_LIST = [int(v) for v in OFFSET]
#: The fewest known rows a code needs, all poisonous, to count as a pure-poisonous code (chosen on evidence:
#: docs/safety.md). Stored per version (known.npz and the record); changing it here changes new versions only.
PURE_MIN_COUNT = 3
NO_NEAR = -1  #: ``near_poisonous``: no known poisonous row at the row's nearest distance


def keys_of(codes: np.ndarray) -> np.ndarray:
    """One int64 per row of code indices (n, 22), mixed radix (``scoring.row_keys`` is this function)."""
    return codes.astype(np.int64, copy=False) @ _PLACE if len(codes) else np.zeros(0, dtype=np.int64)


def codes_of(keys: np.ndarray) -> np.ndarray:
    """Row keys back to code indices (n, 22)."""
    keys = np.asarray(keys, dtype=np.int64)
    return ((keys[:, None] // _PLACE[None, :]) % _RADIX[None, :]).astype(np.int16)


def _masked(codes: np.ndarray) -> np.ndarray:
    """(n, 22) masked keys: the row's key with feature j set to code 0, tagged with j."""
    keys = keys_of(codes)
    return (keys[:, None] - codes.astype(np.int64) * _PLACE[None, :]) * _SLOT + np.arange(_NF)[None, :]


def _isin_sorted(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    if not len(table):
        return np.zeros(values.shape, dtype=bool)
    i = np.searchsorted(table, values)
    return table[np.minimum(i, len(table) - 1)] == values


def hamming_nearest(codes: np.ndarray, known: np.ndarray, labels: np.ndarray | None = None, *,
                    exclude_self: bool = False, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(smallest number of differing features to the known rows, the differing-feature bit mask of a poisonous
    known row at that distance or NO_NEAR) per row: a plain search, for the few rows the look-ups leave."""
    out = np.full(len(codes), _NF, dtype=np.int64)
    near = np.full(len(codes), NO_NEAR, dtype=np.int64)
    if not known.shape[0]:
        return out, near
    bits = (1 << np.arange(_NF, dtype=np.int64))
    for s in range(0, len(codes), chunk):
        diff = codes[s:s + chunk, None, :] != known[None, :, :]
        d = diff.sum(axis=2)
        if exclude_self:
            d[d == 0] = _NF + 1
        best = d.min(axis=1)
        out[s:s + chunk] = best
        if labels is not None:
            hit = (d == best[:, None]) & (np.asarray(labels)[None, :] == 1)
            for r in np.flatnonzero(hit.any(axis=1)).tolist():
                near[s + r] = int(diff[r, int(np.argmax(hit[r]))] @ bits)
    return out, near


def hamming_min(codes: np.ndarray, known: np.ndarray, *, exclude_self: bool = False, chunk: int = 256) -> np.ndarray:
    """Smallest number of differing features from each row to the known rows (a plain search; for few rows)."""
    return hamming_nearest(codes, known, exclude_self=exclude_self, chunk=chunk)[0]


def loo_cutoff(codes: np.ndarray) -> int:
    """1 + the largest leave-one-out nearest distance among distinct rows (distance 1 by masked-key counts)."""
    codes = np.unique(np.asarray(codes, dtype=np.int16), axis=0)
    if len(codes) < 2:
        return 1
    masked = _masked(codes)
    uniq, counts = np.unique(masked, return_counts=True)
    shared = counts[np.searchsorted(uniq, masked)] >= 2  # another row agrees on the other 21 features
    lonely = np.flatnonzero(~shared.any(axis=1))
    worst = 1
    if len(lonely):
        worst = int(hamming_min(codes[lonely], codes, exclude_self=True).max())
    return 1 + worst


def pure_table(codes: np.ndarray, labels: np.ndarray, min_count: int) -> np.ndarray:
    """Flat per-code table (N_CODES): the number of known rows with the code when every one of them is poisonous
    and there are at least ``min_count``, else 0."""
    flat = (np.asarray(codes, dtype=np.int64) + OFFSET[None, :]).ravel()
    n = np.bincount(flat, minlength=N_CODES)
    pois = np.bincount(flat, weights=np.repeat(np.asarray(labels, dtype=np.int64), _NF), minlength=N_CODES)
    return np.where((n >= max(int(min_count), 1)) & (pois == n), n, 0).astype(np.int64)


def code_name(flat: int) -> tuple[str, str]:
    """(feature, code) of an index into a flat per-code table."""
    j = int(np.searchsorted(OFFSET, flat, side="right")) - 1
    return FEATURES[j], list(CODES[FEATURES[j]])[flat - _OFFSET_LIST[j]]


class KnownSet:
    """Distinct training rows (sorted keys, label 1 = poisonous), conflicting rows, the cutoff, pure codes."""

    def __init__(self, keys: np.ndarray, labels: np.ndarray, conflicts: np.ndarray, cutoff: int,
                 pure_min_count: int = PURE_MIN_COUNT, pure: np.ndarray | None = None, *, stores_pure: bool = True):
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        self.labels = np.asarray(labels, dtype=np.int8)[order]
        self.conflicts = np.sort(np.asarray(conflicts, dtype=np.int64))
        self.cutoff = int(cutoff)
        self.pure_min_count = int(pure_min_count)
        codes = codes_of(self.keys)
        masked = _masked(codes) if len(self.keys) else np.zeros((0, _NF), np.int64)
        # one sorted table answers both "a known row 1 feature away?" and "a poisonous one?": each masked key
        # doubled, + 0 for a poisonous row, + 1 for an edible one, so a poisonous entry sorts first
        self.masked = np.sort((masked * 2 + (1 - self.labels.astype(np.int64))[:, None]).ravel())
        # a stored table is the one the version's digest covers; a set stored before pure codes derives its own
        self.pure = (np.asarray(pure, dtype=np.int64) if pure is not None
                     else pure_table(codes, self.labels, self.pure_min_count))
        self._stores_pure = stores_pure  # False: a set stored before pure codes (its digest covers 4 arrays)
        self._present: np.ndarray | None = None

    @property
    def present(self) -> np.ndarray:
        """Flat table of the codes some known row carries (= the codes training saw)."""
        if self._present is None:
            flat = (codes_of(self.keys).astype(np.int64) + OFFSET[None, :]).ravel()
            self._present = np.bincount(flat, minlength=N_CODES) > 0
        return self._present

    @classmethod
    def build(cls, codes: np.ndarray, y: np.ndarray, conflicts: np.ndarray, cutoff_codes: np.ndarray,
              pure_min_count: int = PURE_MIN_COUNT) -> KnownSet:
        """From distinct training rows (codes, 0/1 labels), conflicting keys and the rows the cutoff comes from."""
        return cls(keys_of(codes), y, conflicts, loo_cutoff(cutoff_codes), pure_min_count)

    # ------------------------------------------------------------ look-ups
    def nearest(self, codes: np.ndarray) -> np.ndarray:
        """Differing features to the closest known row, exact up to the cutoff, capped at it."""
        return self.lookup(codes)[0]

    def lookup(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nearest, near_poisonous) per row: the distance to the closest known rows (exact up to the cutoff,
        capped at it) and, when one of the known rows at that distance is poisonous, the bit mask of the
        features in which it differs (0 for the row itself), else NO_NEAR.

        Distance 0 and 1 cost 23 sorted-key look-ups per row (and 22 more in the poisonous rows' table for a
        row at distance 1); below the cutoff, distances of 2 or more are searched exactly (cutoff above 2 only).
        """
        n = len(codes)
        if n == 1:
            d, near = self.one(codes[0].tolist())
            return np.array([d], dtype=np.int64), np.array([near], dtype=np.int64)
        keys = keys_of(codes)
        out = np.full(n, 2, dtype=np.int64)
        near = np.full(n, NO_NEAR, dtype=np.int64)
        if not len(self.keys) or not n:
            return np.minimum(out, self.cutoff), near
        i = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        exact = self.keys[i] == keys
        out[exact] = 0
        near[exact & (self.labels[i] == 1)] = 0
        rest = np.flatnonzero(~exact)
        if len(rest):
            found, poisonous = self._one_away(_masked(codes[rest]))
            one = found.any(axis=1)
            out[rest[one]] = 1
            hit = poisonous.any(axis=1)
            near[rest[hit]] = 1 << np.argmax(poisonous[hit], axis=1).astype(np.int64)
        far = np.flatnonzero(out >= 2)
        if self.cutoff > 2 and len(far):
            out[far], near[far] = hamming_nearest(codes[far], codes_of(self.keys), self.labels)
        near[out >= self.cutoff] = NO_NEAR  # at or beyond the cutoff the far rule speaks
        return np.minimum(out, self.cutoff), near

    def _one_away(self, masked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a known row agrees on the other 21 features, a poisonous one does) per masked key (any shape)."""
        if not len(self.masked):
            return np.zeros(masked.shape, dtype=bool), np.zeros(masked.shape, dtype=bool)
        want = masked * 2
        at = self.masked[np.minimum(np.searchsorted(self.masked, want), len(self.masked) - 1)]
        return (at >> 1) == masked, at == want

    def one(self, row: list[int]) -> tuple[int, int]:
        """``lookup`` of one row of code indices, on Python ints (the one-row path; the same answers).

        Binary searches in the sorted arrays, no Python sets: building sets of ~125k ints when a version loads
        held the GIL for ~25 ms, a stall every request thread of a serving process met during a hot swap.
        """
        key = sum(c * pl for c, pl in zip(row, _PLACE_LIST))
        if not len(self.keys):
            return min(2, self.cutoff), NO_NEAR
        i = int(np.searchsorted(self.keys, key))
        if i < len(self.keys) and int(self.keys[i]) == key:
            return 0, (0 if self.labels[i] == 1 else NO_NEAR)
        masked = np.array([(key - c * pl) * _SLOT + j for j, (c, pl) in enumerate(zip(row, _PLACE_LIST))],
                          dtype=np.int64)
        found, poisonous = self._one_away(masked)
        if np.count_nonzero(found):
            return min(1, self.cutoff), (1 << int(np.argmax(poisonous)) if np.count_nonzero(poisonous)
                                         and self.cutoff > 1 else NO_NEAR)
        if self.cutoff > 2:
            d, near = hamming_nearest(np.array([row], dtype=np.int16), codes_of(self.keys), self.labels)
            return int(min(d[0], self.cutoff)), (int(near[0]) if d[0] < self.cutoff else NO_NEAR)
        return min(2, self.cutoff), NO_NEAR

    def conflicting(self, codes: np.ndarray) -> np.ndarray:
        """True for rows reported with both labels."""
        if not len(self.conflicts):
            return np.zeros(len(codes), dtype=bool)
        return _isin_sorted(keys_of(codes), self.conflicts)

    def pure_codes(self) -> list[dict]:
        """The version's pure-poisonous codes (for its record): feature, code, known rows, most rows first."""
        out = [{"feature": f, "code": c, "word": CODES[f][c], "known_rows": int(self.pure[i])}
               for i in np.flatnonzero(self.pure).tolist() for f, c in [code_name(i)]]
        return sorted(out, key=lambda r: (-r["known_rows"], r["feature"], r["code"]))

    # ------------------------------------------------------------ storage
    def arrays(self) -> dict[str, np.ndarray]:
        out = {"known_keys": self.keys, "known_labels": self.labels, "known_conflicts": self.conflicts,
               "known_cutoff": np.array(self.cutoff, dtype=np.int64)}
        if self._stores_pure:
            out.update(known_pure_min_count=np.array(self.pure_min_count, dtype=np.int64), known_pure=self.pure)
        return out

    @classmethod
    def from_arrays(cls, z) -> KnownSet:
        """From stored arrays; a set stored before pure codes existed gets the table of PURE_MIN_COUNT (derived
        from its verified rows: safer, never less safe)."""
        names = set(getattr(z, "files", z))
        pure = np.asarray(z["known_pure"]) if "known_pure" in names else None
        minimum = int(z["known_pure_min_count"]) if "known_pure_min_count" in names else PURE_MIN_COUNT
        return cls(np.asarray(z["known_keys"]), np.asarray(z["known_labels"]), np.asarray(z["known_conflicts"]),
                   int(z["known_cutoff"]), minimum, pure, stores_pure=pure is not None)

    def digest(self) -> str:
        """sha256 over the stored arrays (independent of the file's bytes)."""
        return arrays_digest(self.arrays())

    def save(self, path) -> str:
        """Write known.npz atomically (no pickle); returns its digest."""
        buf = io.BytesIO()
        np.savez(buf, **self.arrays())
        atomic_write_bytes(path, buf.getvalue())
        return self.digest()

    @classmethod
    def load(cls, path) -> KnownSet:
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays(z)


class LabelTable:
    """Labels of feature rows (a dataset's): 0 edible, 1 poisonous, 2 reported both ways; -1 for a row not in it."""

    def __init__(self, codes: np.ndarray, labels: np.ndarray):
        keys = keys_of(np.asarray(codes))
        labels = np.asarray(labels, dtype=np.int8)
        uniq, inverse = np.unique(keys, return_inverse=True)
        lo = np.full(len(uniq), 1, dtype=np.int8)
        hi = np.zeros(len(uniq), dtype=np.int8)
        np.minimum.at(lo, inverse.ravel(), labels)
        np.maximum.at(hi, inverse.ravel(), labels)
        self.keys, self.labels = uniq, np.where(lo == hi, lo, 2).astype(np.int8)

    def label_of(self, codes: np.ndarray) -> np.ndarray:
        keys = keys_of(np.asarray(codes))
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int8)
        i = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[i] == keys, self.labels[i], -1).astype(np.int8)


def load_verified(path, digest: str, cutoff: int, pure_min_count: int | None) -> dict[str, np.ndarray]:
    """The arrays of a stored known set when they are exactly the ones a record names (their sha256, the cutoff,
    the pure-code minimum when the record has one); ValueError for anything else (truncated, unreadable, changed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} cannot be read ({type(exc).__name__})") from None
    same = arrays_digest(arrays) == digest and int(arrays.get("known_cutoff", -1)) == cutoff
    if not same or (pure_min_count is not None and int(arrays.get("known_pure_min_count", -1)) != pure_min_count):
        raise ValueError(f"{path} is not the known set its record names")
    return arrays


def arrays_digest(arrays: dict) -> str:
    """sha256 over named arrays (name, dtype, shape, bytes), in name order: the same for the same content."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()

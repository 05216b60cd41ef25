"""The known set of a model version: the distinct feature rows it was trained on, and the rules built on it.

Unknown means poisonous: a row with a code training never saw, a row reported with both labels, or a row at
the version's cutoff distance or beyond from every known row is called poisonous whatever the model votes.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

from ..core.fileio import atomic_write_bytes
from ..data.schema import CODES, FEATURES

_RADIX = np.array([len(CODES[f]) for f in FEATURES], dtype=np.int64)
_PLACE = np.r_[np.cumprod(_RADIX[::-1])[::-1][1:], 1].astype(np.int64)
_NF = len(FEATURES)
_PLACE_LIST = [int(v) for v in _PLACE]
_SLOT = 32  #: masked keys carry the masked feature's number: masked_key * 32 + j (fits in int64)

REASON_UNSEEN = "code never seen in training: {codes}"
REASON_CONFLICT = "conflicting reports: this feature row was reported both edible and poisonous"
REASON_FAR = "unlike every known mushroom: the closest differs in {cutoff} or more features"
REASON_BAND = "uncertain band: p_poisonous {p:.2f} >= threshold {t:.2f}"


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


def hamming_min(codes: np.ndarray, known: np.ndarray, *, exclude_self: bool = False, chunk: int = 256) -> np.ndarray:
    """Smallest number of differing features from each row to the known rows (a plain search; for few rows)."""
    out = np.full(len(codes), _NF, dtype=np.int64)
    for s in range(0, len(codes), chunk):
        d = (codes[s:s + chunk, None, :] != known[None, :, :]).sum(axis=2)
        if exclude_self:
            d[d == 0] = _NF + 1
        out[s:s + chunk] = d.min(axis=1) if known.shape[0] else _NF
    return out


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


class KnownSet:
    """Distinct training rows (sorted keys, label 1 = poisonous), conflicting rows, the cutoff."""

    def __init__(self, keys: np.ndarray, labels: np.ndarray, conflicts: np.ndarray, cutoff: int):
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        self.labels = np.asarray(labels, dtype=np.int8)[order]
        self.conflicts = np.sort(np.asarray(conflicts, dtype=np.int64))
        self.cutoff = int(cutoff)
        self.masked = np.sort(_masked(codes_of(self.keys)).ravel()) if len(self.keys) else np.zeros(0, np.int64)

    @classmethod
    def build(cls, codes: np.ndarray, y: np.ndarray, conflicts: np.ndarray, cutoff_codes: np.ndarray) -> "KnownSet":
        """From distinct training rows (codes, 0/1 labels), conflicting keys and the rows the cutoff comes from."""
        return cls(keys_of(codes), y, conflicts, loo_cutoff(cutoff_codes))

    # ------------------------------------------------------------ look-ups
    def nearest(self, codes: np.ndarray) -> np.ndarray:
        """Differing features to the closest known row, exact up to the cutoff, capped at it.

        Distance 0 and 1 cost 23 hash look-ups per row; a plain search runs only when the cutoff is above 2.
        """
        n = len(codes)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if n == 1:
            return np.array([self.one(codes[0].tolist())[0]], dtype=np.int64)
        exact = _isin_sorted(keys_of(codes), self.keys)
        near = _isin_sorted(_masked(codes), self.masked).any(axis=1)
        out = np.where(exact, 0, np.where(near, 1, 2)).astype(np.int64)
        far = np.flatnonzero(out >= 2)
        if self.cutoff > 2 and len(far):
            out[far] = hamming_min(codes[far], codes_of(self.keys))
        return np.minimum(out, self.cutoff)

    def one(self, row: list[int]) -> tuple[int, bool]:
        """(nearest_known, conflicting) of one row of code indices (the one-row path).

        Binary searches in the sorted arrays, no Python sets: building sets of ~125k ints when a version loads
        held the GIL for ~25 ms, a stall every request thread of a serving process met during a hot swap.
        """
        key = sum(c * pl for c, pl in zip(row, _PLACE_LIST))
        conflict = bool(_isin_sorted(np.array([key], dtype=np.int64), self.conflicts)[0])
        if _isin_sorted(np.array([key], dtype=np.int64), self.keys)[0]:
            return 0, conflict
        masked = np.array([(key - c * pl) * _SLOT + j for j, (c, pl) in enumerate(zip(row, _PLACE_LIST))],
                          dtype=np.int64)
        if _isin_sorted(masked, self.masked).any():
            return min(1, self.cutoff), conflict
        if self.cutoff > 2:
            return int(min(hamming_min(np.array([row], dtype=np.int16), codes_of(self.keys))[0], self.cutoff)), conflict
        return min(2, self.cutoff), conflict

    def conflicting(self, codes: np.ndarray) -> np.ndarray:
        """True for rows reported with both labels."""
        if not len(self.conflicts):
            return np.zeros(len(codes), dtype=bool)
        return _isin_sorted(keys_of(codes), self.conflicts)

    # ------------------------------------------------------------ storage
    def arrays(self) -> dict[str, np.ndarray]:
        return {"known_keys": self.keys, "known_labels": self.labels, "known_conflicts": self.conflicts,
                "known_cutoff": np.array(self.cutoff, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, z) -> "KnownSet":
        return cls(np.asarray(z["known_keys"]), np.asarray(z["known_labels"]), np.asarray(z["known_conflicts"]),
                   int(z["known_cutoff"]))

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
    def load(cls, path) -> "KnownSet":
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays(z)


def arrays_digest(arrays: dict) -> str:
    """sha256 over named arrays (name, dtype, shape, bytes), in name order: the same for the same content."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def reason_for(unseen: str, conflict: bool, far: bool, band: bool, p: float, threshold: float, cutoff: int) -> str:
    """The one reason shown for a row: unseen code, then conflicting reports, then far, then the uncertain band."""
    if unseen:
        return REASON_UNSEEN.format(codes=unseen.replace(";", ", "))
    if conflict:
        return REASON_CONFLICT
    if far:
        return REASON_FAR.format(cutoff=cutoff)
    return REASON_BAND.format(p=p, t=threshold) if band else ""


def apply_rules(pred: np.ndarray, uncertain: np.ndarray, p: np.ndarray, threshold: float, unseen: np.ndarray,
                nearest: np.ndarray, conflict: np.ndarray, cutoff: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(called poisonous 0/1, uncertain, reason) after the rules; p stays the model's vote.

    A row with an unseen code, reported with both labels, or at/beyond the cutoff is called poisonous and
    marked uncertain (``reason_for`` words why).
    """
    n = len(pred)
    has_unseen = np.asarray(unseen, dtype=object).astype(bool)  # '' is False
    conflict = np.asarray(conflict, dtype=bool)
    far = np.asarray(nearest) >= cutoff if cutoff > 0 else np.zeros(n, dtype=bool)
    forced = has_unseen | conflict | far
    unc = np.asarray(uncertain, dtype=bool) | forced
    reason = np.full(n, "", dtype=object)
    for i in np.flatnonzero(unc).tolist():
        reason[i] = reason_for(unseen[i], conflict[i], far[i], True, float(p[i]), threshold, cutoff)
    called = np.where(forced, 1, pred).astype(np.int8) if forced.any() else np.asarray(pred)
    return called, unc, reason

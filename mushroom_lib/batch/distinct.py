"""Numbering the distinct rows of a batch file: each row is one non-negative integer key, and ``RowIds`` gives
every key a number (0, 1, ... as keys are first met, chunk by chunk; the same key keeps its number across
chunks) without sorting the chunk.

Scoring and rendering then happen once per number. Used by both readers of ``mushroom predict``.
"""

from __future__ import annotations

import numpy as np

_EMPTY = -1
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the key times 2**64 / golden ratio, top bits


class RowIds:
    """Numbers integer row keys. A hash table (open, one slot per hash, no probing) holds the keys seen so
    far; a key whose slot another key took is numbered through a small dict instead."""

    def __init__(self, bits: int = 18):
        self.bits = int(bits)
        self.slot_key = np.full(1 << self.bits, _EMPTY, dtype=np.int64)
        self.slot_id = np.full(1 << self.bits, -1, dtype=np.int64)
        self.overflow: dict[int, int] = {}
        self.count = 0

    @classmethod
    def for_rows(cls, n: int) -> "RowIds":
        """A table about four times the rows of one chunk (at most 2**18 slots)."""
        return cls(min(18, max(8, int(n).bit_length() + 2)))

    def _slots(self, key: np.ndarray) -> np.ndarray:
        return ((key.view(np.uint64) * _MULTIPLIER) >> np.uint64(64 - self.bits)).astype(np.intp)

    def number(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the number of each row's key, the position of one row of each key numbered by this call).

        ``key`` holds non-negative int64 keys; the positions come in the order of the new numbers.
        """
        key = np.ascontiguousarray(key, dtype=np.int64)
        slot = self._slots(key)
        ids = self.slot_id[slot]
        miss = np.flatnonzero(self.slot_key[slot] != key)
        if not len(miss):
            return ids, np.empty(0, dtype=np.intp)
        free = miss[self.slot_key[slot[miss]] == _EMPTY]
        self.slot_key[slot[free]] = key[free]  # one of the keys sharing a free slot takes it
        placed = free[self.slot_key[slot[free]] == key[free]]
        where = np.full(len(self.slot_key), -1, dtype=np.intp)
        where[slot[placed]] = placed  # one row per newly taken slot
        first = placed[where[slot[placed]] == placed]
        self.slot_id[slot[first]] = self.count + np.arange(len(first))
        self.count += len(first)
        ids[placed] = self.slot_id[slot[placed]]
        rest = np.setdiff1d(miss, placed, assume_unique=True)
        return ids, np.concatenate([first, self._number_rest(key, rest, ids)])

    def _number_rest(self, key: np.ndarray, rest: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Number the rows whose slot holds another key (through ``overflow``); returns their new first rows."""
        if not len(rest):
            return np.empty(0, dtype=np.intp)
        uniq, pos, inverse = np.unique(key[rest], return_index=True, return_inverse=True)
        new = []
        numbers = np.empty(len(uniq), dtype=np.int64)
        for i, k in enumerate(uniq.tolist()):
            if k not in self.overflow:
                self.overflow[k] = self.count
                self.count += 1
                new.append(rest[pos[i]])
            numbers[i] = self.overflow[k]
        ids[rest] = numbers[inverse.reshape(-1)]
        return np.array(new, dtype=np.intp)

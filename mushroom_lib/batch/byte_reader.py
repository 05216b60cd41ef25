"""The byte-level reader of ``mushroom predict`` for files in the usual layout (numpy only, no CSV parser).

It accepts a file only when every row is 22 or 23 one-byte codes separated by commas, ending in a newline
(the dataset's header, or none), and every code is valid: then the bytes are the cells. Anything else
(quotes, spaces, blank or ragged lines, CRLF, a BOM, other columns, an unknown code) raises ``NotUsual``
and the general reader (``batch_reader``, schema's rules) reads the file; this module never words a refusal.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.schema import CODES, COLUMNS, FEATURES, TARGET, code_table
from .threads import prefetch

CHUNK_ROWS = 1 << 18          #: rows read, keyed and scored together
LABEL_CHARS = "ep"            #: class values taken as they are (any other value: the general reader)
_BAD = np.int64(1) << 56      #: added to a key for a cell that is not a valid code (23 * 2**56 < 2**63)
_HEAD_BYTES = 1 << 16


class NotUsual(Exception):
    """The file is not in the usual layout (or holds a cell the fast path does not take): use the general reader."""


@dataclass
class UsualLayout:
    """A file in the usual layout: its columns and where the rows start."""

    path: Path
    names: list[str]          #: the input's columns (the header, or the UCI / features-only names)
    headerless: bool
    start: int                #: bytes before the first row
    rows: int
    padded: bool              #: the last row lacks its newline
    tables: np.ndarray        #: int64 [columns, 65536]: (code byte, following byte) -> code * stride, else _BAD
    spans: np.ndarray         #: valid values per column
    strides: np.ndarray
    chars: list[list[str]]    #: per column, value index -> the cell's text

    @property
    def width(self) -> int:
        return 2 * len(self.names)

    def decode(self, keys: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(codes int8 [n, 22] in FEATURES order, the input's cells per column) of row keys."""
        index = (keys[:, None] // self.strides[None, :]) % self.spans[None, :]
        raw = [np.array(self.chars[j], dtype=object)[index[:, j]] for j in range(len(self.names))]
        feats = [self.names.index(f) for f in FEATURES]
        return index[:, feats].astype(np.int8), raw


def _column_values(name: str) -> list[str]:
    return list(LABEL_CHARS) if name == TARGET else list(CODES[name])


def _names_of(line: bytes) -> tuple[list[str], bool] | None:
    """(column names, headerless) when the first line is the dataset's header or a row of one-byte cells."""
    cells = line.split(b",")
    if all(len(c) == 1 for c in cells) and len(cells) in (len(COLUMNS), len(FEATURES)):
        return (list(COLUMNS) if len(cells) == len(COLUMNS) else list(FEATURES)), True
    try:
        names = [c.decode("ascii") for c in cells]
    except UnicodeDecodeError:
        return None
    wanted = set(FEATURES) | ({TARGET} if TARGET in names else set())
    if len(names) == len(set(names)) == len(wanted) and set(names) == wanted:
        return names, False
    return None


def _tables(names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
    """Per column a 65536-entry table over (cell byte, next byte): a valid cell followed by its comma (the
    newline after the last column) maps to value * stride, anything else to _BAD."""
    spans = np.array([len(_column_values(n)) for n in names], dtype=np.int64)
    strides = np.ones(len(names), dtype=np.int64)
    strides[1:] = np.cumprod(spans[:-1])
    tables = np.full((len(names), 65536), _BAD, dtype=np.int64)
    for j, name in enumerate(names):
        after = ord("\n") if j == len(names) - 1 else ord(",")
        if name == TARGET:
            table = np.full(256, -1, dtype=np.int16)
            table[[ord(c) for c in LABEL_CHARS]] = np.arange(len(LABEL_CHARS))
        else:
            table = code_table(name)
        valid = np.flatnonzero(table >= 0)
        tables[j, valid | (after << 8)] = table[valid].astype(np.int64) * strides[j]
    return tables, spans, strides, [_column_values(n) for n in names]


def open_usual(path: str | Path) -> UsualLayout:
    """The usual layout of a file, or NotUsual (nothing is read beyond the first line)."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    end = head.find(b"\n")
    found = _names_of(head[:end]) if end > 0 else None
    if found is None:
        raise NotUsual("first line")
    names, headerless = found
    start = 0 if headerless else end + 1
    width = 2 * len(names)
    body = size - start
    padded = body % width == width - 1  # the last line without its newline
    if body <= 0 or (body % width and not padded):
        raise NotUsual("rows of another width")
    tables, spans, strides, chars = _tables(names)
    return UsualLayout(p, names, headerless, start, -(-body // width), padded, tables, spans, strides, chars)


def iter_keys(layout: UsualLayout, chunk_rows: int = CHUNK_ROWS, stage=None) -> Iterator[np.ndarray]:
    """One int64 key per row (the row's codes, mixed radix), a chunk of rows at a time, worked out a chunk
    ahead in a background thread; NotUsual on any cell, separator or line end that is not the usual one.
    ``stage(name)``, if given, times the steps."""
    return prefetch(_keys(layout, chunk_rows, stage or (lambda name: contextlib.nullcontext())))


def _keys(layout: UsualLayout, chunk_rows: int, stage) -> Iterator[np.ndarray]:
    width, n = layout.width, len(layout.names)
    with open(layout.path, "rb") as fh:
        fh.seek(layout.start)
        for first in range(0, layout.rows, chunk_rows):
            k = min(chunk_rows, layout.rows - first)
            with stage("read+parse"):
                data = fh.read(k * width)
                if layout.padded and first + k == layout.rows:
                    data += b"\n"
                if len(data) != k * width:
                    raise NotUsual("the file changed while it was read")
                pairs = np.frombuffer(data, dtype="<u2").reshape(k, n)  # (cell byte, next byte) per column
            with stage("validate"):
                key = layout.tables[0].take(pairs[:, 0])
                for j in range(1, n):
                    key += layout.tables[j].take(pairs[:, j])
                if key.max() >= _BAD:
                    raise NotUsual("a cell that is not a valid code")
            yield key

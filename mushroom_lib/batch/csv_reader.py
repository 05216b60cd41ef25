"""The general reader of ``mushroom predict``: any CSV file ``schema`` accepts, as validated chunks.

``read_layout`` checks the head and the columns through ``schema`` (its messages, its warning for extra
columns); ``iter_blocks`` streams the body with pyarrow's CSV reader in a background thread, in chunks of
``CHUNK_ROWS`` rows held as distinct strings plus one index per row; ``validate_block`` checks every feature
cell. Every refusal is worded by ``schema``: a bad cell by ``validate_frame`` (row counted from the start
of the file), a ragged row, bad UTF-8 or an over-long value by ``explain_file``. No copy of its messages.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..data.schema import (
    CODES,
    FEATURES,
    SchemaError,
    _norm_name,
    check_value_sizes,
    explain_file,
    not_csv,
    read_csv_bytes,
    read_csv_file,
    validate_frame,
)
from ..scoring.scorer import SCORED_COLUMNS
from .threads import prefetch
from .writer import header_line

if TYPE_CHECKING:
    import pandas as pd

HEAD_BYTES = 64 * 1024
BLOCK_BYTES = 1 << 20     #: pyarrow's read block; it reads up to 32 of them ahead
CHUNK_ROWS = 1 << 18      #: rows validated, scored and written together
_LOOKUPS = {f: {c: i for i, c in enumerate(CODES[f])} for f in FEATURES}


# ---------------------------------------------------------------- the layout (from the head)
@dataclass
class Layout:
    """What the head of a CSV file says: its columns, where the 22 features sit, what the output keeps."""

    source: str
    path: Path
    names: list[str]            #: column names (the raw header, or the UCI / features-only names)
    headerless: bool
    skip_lines: int             #: physical lines before the first data row (blank lines and the header)
    features: list[int]         #: position of each of the 22 features in ``names``
    keep: list[int]             #: input columns kept in the output (all but those named like an output column)
    warnings: list[str] = field(default_factory=list)

    @property
    def out_names(self) -> list[str]:
        return [self.names[i] for i in self.keep] + SCORED_COLUMNS

    def header_text(self) -> str:
        """The output's header line, written exactly as ``DataFrame.to_csv`` writes it."""
        return header_line(self.out_names)


def read_layout(path: str | Path, *, size_cap: int | None = None) -> Layout:
    """Check a CSV file's head and columns (schema's checks and messages); raise SchemaError on a problem."""
    import pandas as pd

    p = Path(path)
    if not p.exists() or p.is_dir() or (size_cap is not None and p.stat().st_size > size_cap):
        read_csv_file(p, size_cap=size_cap)  # raises the schema's message (no such file, folder, size cap)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        if len(head) < size:
            while b"\n" not in head[-HEAD_BYTES:] and len(head) < size:  # a very long first line
                more = fh.read(HEAD_BYTES)
                if not more:
                    break
                head += more
            if len(head) < size and b"\n" in head:
                head = head[: head.rindex(b"\n") + 1]
    frame = read_csv_bytes(head, source=str(p))
    headerless = frame.attrs.get("layout") == "uci"
    names = [str(c) for c in frame.columns]
    skip = 0
    if not headerless:
        reader = csv.reader(io.StringIO(head.decode("utf-8-sig"), newline=""))
        for row in reader:
            if row and any(cell.strip() for cell in row):
                skip = reader.line_num
                break
    norm = [_norm_name(n) for n in names]
    probe = pd.DataFrame([[next(iter(CODES[k])) if k in CODES else "" for k in norm]], columns=frame.columns)
    checked = validate_frame(probe)  # missing / misspelled / duplicated columns, and the extra-column warning
    features = [norm.index(f) for f in FEATURES]
    keep = [i for i, n in enumerate(names) if n not in SCORED_COLUMNS]
    return Layout(str(p), p, names, headerless, skip, features, keep, list(checked.warnings))



# ---------------------------------------------------------------- blocks
@dataclass
class Block:
    """Rows of a CSV block, column by column: distinct strings plus one index per row."""

    values: list[np.ndarray]    #: per column, an object array of distinct strings
    index: list[np.ndarray]     #: per column, an integer array (one per row) into ``values``
    n: int

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Block":
        """A block from a frame of strings (a dask partition, a test frame)."""
        import pandas as pd

        values, index = [], []
        for j in range(frame.shape[1]):
            idx, uniq = pd.factorize(frame.iloc[:, j].astype(object).fillna(""), use_na_sentinel=False)
            values.append(np.asarray(uniq, dtype=object))
            index.append(idx)
        return cls(values, index, len(frame))

    def to_frame(self, names: list[str]) -> pd.DataFrame:
        """The block as a frame of strings (for ``validate_frame``'s error messages)."""
        import pandas as pd

        frame = pd.DataFrame({j: v[i] for j, (v, i) in enumerate(zip(self.values, self.index))})
        frame.columns = names
        return frame

    def take(self, rows: np.ndarray) -> "Block":
        return Block(self.values, [i[rows] for i in self.index], len(rows))


def _arrow_column(arr) -> tuple[np.ndarray, np.ndarray]:
    """A pyarrow string array as (distinct strings, index per row); one-byte columns without hashing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(arr)
    if pa.types.is_string(arr.type) and n and arr.null_count == 0:
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
        if offsets[-1] - offsets[0] == n and not (np.diff(offsets) != 1).any():  # every value is one byte
            data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
            seen = np.zeros(256, dtype=bool)
            seen[data] = True
            present = np.flatnonzero(seen)
            lut = np.zeros(256, dtype=np.uint8)
            lut[present] = np.arange(len(present), dtype=np.uint8)
            return np.array([chr(b) for b in present], dtype=object), np.take(lut, data)
    enc = pc.dictionary_encode(arr)
    return (np.asarray(enc.dictionary.to_pylist(), dtype=object),
            enc.indices.to_numpy(zero_copy_only=False))


def is_blank_text(text: str | None) -> bool:
    """A CSV line whose every cell is blank (readers drop it, as the in-memory reader does)."""
    return not (text or "").replace(",", "").replace('"', "").strip()


def iter_blocks(layout: Layout, *, block_size: int = BLOCK_BYTES, chunk_rows: int = CHUNK_ROWS,
                progress=None) -> Iterator[Block]:
    """Stream the body of a CSV file as Blocks of about ``chunk_rows`` rows (pyarrow's reader, in a thread).

    A ragged row, bad UTF-8 or any other problem pyarrow finds is worded by ``schema.explain_file``, which
    reads the file as the in-memory reader does and names the line.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = [f"c{i}" for i in range(len(layout.names))]
    ragged = threading.Event()

    def on_invalid(row) -> str:
        if not is_blank_text(row.text):  # blank lines are dropped, as the in-memory reader drops them
            ragged.set()
        return "skip"

    read = pacsv.ReadOptions(column_names=cols, skip_rows=layout.skip_lines, block_size=block_size,
                             use_threads=False)  # parsing runs in our reader thread, next to the scoring
    parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid)
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in cols}, strings_can_be_null=False,
                                   quoted_strings_can_be_null=False)
    with pa.OSFile(str(layout.path)) as fh:
        try:
            reader = pacsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
            seen = 0
            with contextlib.closing(_prefetch(reader, chunk_rows)) as chunks:  # stop the thread on any exit
                for table in chunks:
                    if ragged.is_set():
                        _refuse(layout)
                    if progress is not None:
                        pos = fh.tell()
                        progress.update(pos - seen)
                        seen = pos
                    pairs = [_arrow_column(table.column(j).chunk(0)) for j in range(table.num_columns)]
                    check_value_sizes([v for v, _ in pairs], layout.path, layout.source)  # schema's cap
                    yield Block([v for v, _ in pairs], [i for _, i in pairs], table.num_rows)
        except pa.ArrowInvalid:
            _refuse(layout)
        if ragged.is_set():
            _refuse(layout)


def _refuse(layout: Layout) -> None:
    """Raise the schema's sentence for the first problem of a file a reader refused (it names the line)."""
    explain_file(layout.path, layout.source)
    raise not_csv(layout.source) from None


def _prefetch(reader, chunk_rows: int):
    """Tables of about ``chunk_rows`` rows (one chunk per column), read and parsed in a background thread.

    pyarrow frees the GIL while it parses, so reading overlaps with the scoring in the calling thread.
    """
    return prefetch(_gathered(reader, chunk_rows))


def _gathered(reader, chunk_rows: int):
    import pyarrow as pa

    batches, rows = [], 0
    for batch in reader:
        if batch.num_rows:
            batches.append(batch)
            rows += batch.num_rows
        if rows >= chunk_rows:
            yield pa.Table.from_batches(batches).combine_chunks()
            batches, rows = [], 0
    if batches:
        yield pa.Table.from_batches(batches).combine_chunks()


# ---------------------------------------------------------------- validating a block
def _feature_codes(feature: str, values: np.ndarray) -> np.ndarray:
    """Code index of each distinct string of a feature column (-1 where not a valid code)."""
    lookup = _LOOKUPS[feature]
    out = np.empty(len(values), dtype=np.int16)
    for k, v in enumerate(values):
        c = lookup.get(v)
        if c is None:
            c = lookup.get(v.strip(), -1) if isinstance(v, str) else -1
        out[k] = c
    return out


def block_keys(block: Block) -> np.ndarray:
    """One integer key per row of a block (its column indices, mixed radix; compressed before an overflow)."""
    key = np.zeros(block.n, dtype=np.int64)
    span = 1
    for values, idx in zip(block.values, block.index):
        m = max(len(values), 1)
        if span * m >= 2 ** 62:
            uniq, key = np.unique(key, return_inverse=True)
            key, span = key.reshape(-1).astype(np.int64), max(len(uniq), 1)
        key = key * m + idx
        span *= m
    return key


def validate_block(layout: Layout, block: Block, first_row: int) -> tuple[Block, list[np.ndarray]]:
    """Check every feature cell of a block (rows numbered from ``first_row``); drop all-blank rows.

    Returns (the block without blank rows, the code index of each distinct string per feature). Raises
    SchemaError exactly as ``validate_frame`` does (it is the one that words the error).
    """
    codes = [_feature_codes(f, block.values[pos]) for f, pos in zip(FEATURES, layout.features)]
    if any((c < 0).any() for c in codes):
        blank = np.ones(block.n, dtype=bool)  # rows whose every cell is blank are dropped, as before
        for values, idx in zip(block.values, block.index):
            blank &= np.array([not str(v).strip() for v in values], dtype=bool)[idx] if len(values) else True
        if blank.any():
            block = block.take(np.flatnonzero(~blank))
        bad = np.zeros(block.n, dtype=bool)
        for c, pos in zip(codes, layout.features):
            bad |= (c < 0)[block.index[pos]]
        if bad.any():
            validate_frame(block.to_frame(layout.names), first_row=first_row)  # raises the usual sentence
            row = first_row + int(np.flatnonzero(bad)[0])  # (not reached unless validate_frame is more lenient)
            raise SchemaError(f"row {row}: a value is not a valid code", row=row)
    return block, codes

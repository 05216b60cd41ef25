"""Scoring a whole CSV file with the champion (the ``mushroom predict`` path).

The file is streamed, so memory stays flat whatever its size (~0.5 GB peak RSS at 1M or 6M rows):

1. **The head** (the first 64 KiB, cut at a line end) goes through ``schema.read_csv_bytes``: the same checks
   and messages as the in-memory reader for an empty, binary, JSON, UTF-16 or non-UTF-8 file, a wrong
   delimiter, a ragged row in the first lines, and the layout (header, or headerless UCI / features only).
   The column names go through ``schema.validate_frame`` (missing, misspelled, duplicated columns; the
   warning naming extra columns).
2. **The body** is parsed by pyarrow's streaming CSV reader in a background thread, in blocks of
   ``BLOCK_BYTES`` (1 MiB; pyarrow reads up to 32 blocks ahead, so this bounds the read-ahead), gathered
   into chunks of ``CHUNK_ROWS`` rows (262,144). Each column of a chunk becomes a small array of distinct
   strings plus one index per row, so validating a chunk is a look-up of each distinct string (stripped,
   as ``validate_frame`` does). A chunk with any bad cell is handed to
   ``validate_frame(chunk, first_row=...)``, which raises the usual sentence with the row counted from the
   start of the file. A ragged row or bad UTF-8 later in the file is found by a streaming re-scan and
   named by its line, as the in-memory reader does. When a file holds several problems, the first chunk
   with one decides which is named (the in-memory reader named parse problems before code problems).
3. **Scoring follows distinct rows**: a chunk's rows are keyed by their column indices, only distinct rows
   are scored (``Scorer.score_codes``) and rendered (``DataFrame.to_csv``, so every value is written exactly
   as the in-memory path writes it), and the rendered lines are gathered back in input order. A background
   thread writes.
4. **Nothing is written on bad input.** With ``-o OUT`` the output goes to a temporary file next to OUT,
   renamed over OUT only after the whole file validated and scored. Without ``-o`` the output is staged in
   an anonymous temporary file and copied to stdout only after the whole file validated and scored: a
   failure never leaves half a CSV on stdout and memory stays flat (the price: one local copy on disk).
5. **The champion's scoring plan** (``accelerator.ScoringPlan``: embedding tables, the KNN's points, the known
   set) is written under ``artifacts/cache/`` when the version is registered (and again after a clean run if
   it went missing) and used only when its content matches the sha256 in the version's record and it
   belongs to the very model file the registry names: scoring then starts without importing scikit-learn
   or loading the model (both come in only if a row needs the Pipeline itself).

``engine="dask"`` (``pip install '.[dask]'``) runs the same chunk scoring over ``dask.dataframe``
partitions of a file, a glob or a folder of CSV files; see ``predict_dask``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import glob as globmod
import io
import os
import shutil
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .fileio import atomic_writer
from .plan_cache import RegistryLoader, champion_scorer, plan_path, plan_scorer, remember_plan  # noqa: F401 (moved)
from .schema import (CODES, FEATURES, SchemaError, check_value_sizes, explain_file, read_csv_bytes, read_csv_file,
                     validate_frame)
from .scoring import SCORED_COLUMNS, Scorer
from .settings import Settings

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
        return pd.DataFrame(columns=self.out_names).to_csv(index=False, lineterminator="\n")


def read_layout(path: str | Path, *, size_cap: int | None = None) -> Layout:
    """Check a CSV file's head and columns (schema's checks and messages); raise SchemaError on a problem."""
    from .schema import _norm_name  # the schema's own column-name normalisation

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
        values, index = [], []
        for j in range(frame.shape[1]):
            idx, uniq = pd.factorize(frame.iloc[:, j].astype(object).fillna(""), use_na_sentinel=False)
            values.append(np.asarray(uniq, dtype=object))
            index.append(idx)
        return cls(values, index, len(frame))

    def to_frame(self, names: list[str]) -> pd.DataFrame:
        """The block as a frame of strings (for ``validate_frame``'s error messages)."""
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


def _is_blank_text(text: str | None) -> bool:
    return not (text or "").replace(",", "").replace('"', "").strip()


def _explain_ragged(layout: Layout) -> SchemaError:
    """Find the first ragged row by re-reading the file (streaming) and name its line, like the schema does."""
    width = len(layout.names)
    with open(layout.path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        first, i = True, 0
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if first:
                first = False
                if not layout.headerless:
                    continue
            i += 1
            if len(row) != width:
                expected = f"the first line has {width}" if layout.headerless else f"the header has {width}"
                return SchemaError(f"{layout.source}: line {reader.line_num} has {len(row)} fields, {expected} "
                                   "(a ragged row)", row=i)
    return SchemaError(f"{layout.source}: a row does not have {width} fields (a ragged row)")


def _explain_utf8(layout: Layout) -> SchemaError:
    """Find the first byte that is not UTF-8 (streaming) and name its line, like the schema does."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with open(layout.path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                data = exc.object  # bytes held over from the last block (never a line end) + this block
                lines += data[:exc.start].count(b"\n")
                return SchemaError(f"{layout.source}: line {lines} is not UTF-8 text (byte {data[exc.start]:#04x}); "
                                   "save the file as UTF-8")
            if not block:
                break
            lines += block.count(b"\n")
    return SchemaError(f"{layout.source}: the file is not UTF-8 text; save the file as UTF-8")


def iter_blocks(layout: Layout, *, block_size: int = BLOCK_BYTES, chunk_rows: int = CHUNK_ROWS,
                progress=None) -> Iterator[Block]:
    """Stream the body of a CSV file as Blocks of about ``chunk_rows`` rows (pyarrow's reader, in a thread).

    Ragged rows and bad UTF-8 raise SchemaError naming the line, as the in-memory reader does.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = [f"c{i}" for i in range(len(layout.names))]
    ragged = threading.Event()

    def on_invalid(row) -> str:
        if not _is_blank_text(row.text):  # blank lines are dropped, as the in-memory reader drops them
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
                        raise _explain_ragged(layout)
                    if progress is not None:
                        pos = fh.tell()
                        progress.update(pos - seen)
                        seen = pos
                    pairs = [_arrow_column(table.column(j).chunk(0)) for j in range(table.num_columns)]
                    check_value_sizes([v for v, _ in pairs], layout.path, layout.source)  # schema's cap
                    yield Block([v for v, _ in pairs], [i for _, i in pairs], table.num_rows)
        except pa.ArrowInvalid as exc:
            text = str(exc)
            if "UTF8" in text or "UTF-8" in text:
                raise _explain_utf8(layout) from None
            if ragged.is_set() or "columns" in text:
                raise _explain_ragged(layout) from None
            explain_file(layout.path, layout.source)  # the schema's sentence for an over-long value
            raise SchemaError(f"{layout.source} could not be read as CSV (a row longer than 1 MiB?)") from None
        if ragged.is_set():
            raise _explain_ragged(layout)


def _prefetch(reader, chunk_rows: int, depth: int = 1):
    """Tables of about ``chunk_rows`` rows (one chunk per column), read and parsed in a background thread.

    pyarrow frees the GIL while it parses, so reading overlaps with the scoring in the calling thread.
    """
    import queue

    import pyarrow as pa

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            batches, rows = [], 0
            for batch in reader:
                if batch.num_rows:
                    batches.append(batch)
                    rows += batch.num_rows
                if rows >= chunk_rows:
                    if not put(pa.Table.from_batches(batches).combine_chunks()):
                        return
                    batches, rows = [], 0
            if batches and not put(pa.Table.from_batches(batches).combine_chunks()):
                return
            put(done)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    t = threading.Thread(target=work, name="mushroom-csv-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


# ---------------------------------------------------------------- scoring a block
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


def _distinct(block: Block) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, first): the distinct row each row is, and one row number per distinct row."""
    key = np.zeros(block.n, dtype=np.int64)
    span = 1
    for values, idx in zip(block.values, block.index):
        m = max(len(values), 1)
        if span * m >= 2 ** 62:  # compress before the key would overflow
            key, uniq = pd.factorize(key)
            span = max(len(uniq), 1)
        key = key * m + idx
        span *= m
    inverse, uniq = pd.factorize(key)
    first = np.empty(len(uniq), dtype=np.intp)
    first[inverse[::-1]] = np.arange(block.n - 1, -1, -1)
    return inverse, first


def _to_csv_lines(columns: list[str], arrays: list[np.ndarray]) -> str:
    frame = pd.DataFrame(dict(enumerate(arrays)), copy=False)
    frame.columns = columns
    return frame.to_csv(index=False, header=False, lineterminator="\n")


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


def score_block(scorer: Scorer, layout: Layout, block: Block, first_row: int) -> tuple[str, int]:
    """Validate one block (rows numbered from ``first_row``), score its distinct rows, render it as CSV.

    Returns (CSV text without a header, rows written). Raises SchemaError exactly as ``validate_frame`` does.
    """
    block, codes = validate_block(layout, block, first_row)
    if block.n == 0:
        return "", 0
    inverse, first = _distinct(block)
    code_rows = np.stack([c[block.index[pos][first]] for c, pos in zip(codes, layout.features)], axis=1)
    scored = scorer.score_codes(code_rows)
    raw = [block.values[i][block.index[i][first]] for i in layout.keep]
    arrays = raw + [scored[c] for c in SCORED_COLUMNS]
    if any(any(("\n" in v or "\r" in v) for v in block.values[i] if isinstance(v, str)) for i in layout.keep):
        # a value with a line break: render every row (to_csv quotes it), no splitting on line ends
        return _to_csv_lines(layout.out_names, [a[inverse] for a in arrays]), block.n
    lines = np.array(_to_csv_lines(layout.out_names, arrays).split("\n")[:-1], dtype=object)
    return "\n".join(lines[inverse].tolist()) + "\n", block.n


# ---------------------------------------------------------------- output
@contextlib.contextmanager
def staged_output(output: str | Path | None):
    """A binary file handle whose content reaches OUT (atomic rename) or stdout only if the block exits cleanly."""
    if output:
        with atomic_writer(output, buffering=1 << 20) as fh:
            yield fh
    else:
        with tempfile.TemporaryFile(prefix="mushroom-predict-") as fh:
            yield fh
            fh.flush()
            fh.seek(0)
            shutil.copyfileobj(fh, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled, file=sys.stderr,
                leave=False)


@contextlib.contextmanager
def _background_writes(out, depth: int = 2):
    """A ``write(text)`` that encodes and writes in a background thread (the write system call frees the GIL)."""
    import queue

    q: queue.Queue = queue.Queue(maxsize=depth)
    failed: list[BaseException] = []
    done = object()

    def work():
        while True:
            item = q.get()
            if item is done:
                return
            if not failed:
                try:
                    out.write(item.encode("utf-8"))
                except BaseException as exc:  # raised in the caller's thread at its next write or at the end
                    failed.append(exc)

    def write(text: str) -> None:
        if failed:
            raise failed[0]
        q.put(text)

    t = threading.Thread(target=work, name="mushroom-csv-writer", daemon=True)
    t.start()
    try:
        yield write
    finally:
        q.put(done)
        t.join()
    if failed:
        raise failed[0]


def score_stream(scorer: Scorer, layout: Layout, out, *, block_size: int = BLOCK_BYTES,
                 chunk_rows: int = CHUNK_ROWS, progress: bool = False) -> int:
    """Stream one CSV file through ``score_block`` into the binary handle ``out``; returns rows scored."""
    rows = 0
    total = layout.path.stat().st_size
    with _progress_bar(total, progress, f"scoring {layout.path.name}") as bar, _background_writes(out) as write:
        write(layout.header_text())
        for block in iter_blocks(layout, block_size=block_size, chunk_rows=chunk_rows, progress=bar):
            text, n = score_block(scorer, layout, block, rows + 1)
            write(text)
            rows += n
        bar.update(max(0, total - bar.n))
    if rows == 0:
        validate_frame(pd.DataFrame(columns=layout.names))  # "the input has a header but no rows"
        raise SchemaError(f"{layout.source} has no rows")
    return rows


def predict_file(settings: Settings, input_path: str | Path, output: str | Path | None = None, *,
                 size_cap: int | None = None, engine: str = "local", progress: bool = False,
                 block_size: int = BLOCK_BYTES, chunk_rows: int = CHUNK_ROWS) -> int:
    """Validate and score a whole CSV file, then write OUT (atomically) or stdout. Returns rows scored.

    ``engine="dask"`` scores a file, a glob or a folder of CSV files over dask partitions (``predict_dask``).
    """
    if engine == "dask":
        return predict_dask(settings, input_path, output, size_cap=size_cap, progress=progress)
    if engine != "local":
        raise ValueError(f"unknown engine {engine!r}; choose local or dask")
    scorer = champion_scorer(settings)  # fail early (before reading a large file) without a model
    layout = read_layout(input_path, size_cap=size_cap)
    for note in layout.warnings:
        warnings.warn(note, stacklevel=2)
    with staged_output(output) as out:
        rows = score_stream(scorer, layout, out, block_size=block_size, chunk_rows=chunk_rows, progress=progress)
    remember_plan(settings, scorer)  # after a clean run only: a refused input changes nothing in the home
    return rows


# ---------------------------------------------------------------- dask
from .errors import MissingExtra  # noqa: E402,F401 (defined in errors.py; kept importable here)


def _import_dask():
    try:
        import dask
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingExtra("--engine dask needs the optional dask extra: pip install 'mushroom-workbench[dask]' "
                           "(or `pip install -e '.[dask]'` in a checkout)") from None
    return dask, dd


def expand_inputs(input_path: str | Path) -> list[Path]:
    """A file, a glob (``data/*.csv``) or a folder (its ``*.csv`` files), sorted by name."""
    text = str(input_path)
    p = Path(text)
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.is_file() and x.suffix.lower() == ".csv")
        if not files:
            raise SchemaError(f"{p} is a folder without .csv files")
        return files
    if any(ch in text for ch in "*?[") and not p.exists():
        files = sorted(Path(x) for x in globmod.glob(text) if Path(x).is_file())
        if not files:
            raise SchemaError(f"{text}: no file matches")
        return files
    return [p]


class PartitionError(Exception):
    """A dask partition could not be read or validated; the driver names the row (see ``predict_dask``)."""

    def __init__(self, number: int, kind: str, detail: str = ""):
        super().__init__(number, kind, detail)
        self.number, self.kind, self.detail = number, kind, detail


def _parse_block(data: bytes, layout: Layout, first: bool, number: int) -> pd.DataFrame:
    """One byte block of a CSV file (cut at line ends by dask) as a frame of strings, as strict as iter_blocks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = [f"c{i}" for i in range(len(layout.names))]
    ragged = []

    def on_invalid(row) -> str:
        if not _is_blank_text(row.text):
            ragged.append(row.text)
        return "skip"

    if first and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=cols, skip_rows=layout.skip_lines if first else 0,
                                           use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in cols},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        kind = "utf8" if ("UTF8" in str(exc) or "UTF-8" in str(exc)) else "ragged"
        raise PartitionError(number, kind, str(exc)) from None
    if ragged:
        raise PartitionError(number, "ragged", ragged[0][:80])
    return pd.DataFrame({c: table.column(c).to_numpy(zero_copy_only=False).astype(object) for c in cols}, columns=cols)


def read_csv_dask(layouts: list[Layout], *, blocksize: str | int = "32MiB"):
    """The files as one ``dask.dataframe`` of strings (columns c0..cN), cut in blocks at line ends.

    Parsed by the same strict rules as the local engine (pyarrow, ragged rows refused, blank lines dropped).
    Returns (ddf, where): ``where[i]`` is (layout, block number within its file) of partition i.
    """
    dask, dd = _import_dask()
    from dask.bytes import read_bytes

    parts, where = [], []
    for lay in layouts:
        _, blocks = read_bytes(str(lay.path), delimiter=b"\n", blocksize=blocksize, sample=False)
        for k, block in enumerate(blocks[0]):
            parts.append(dask.delayed(_parse_block, pure=True)(block, lay, k == 0, len(parts)))
            where.append((lay, k))
    width = len(layouts[0].names)
    meta = pd.DataFrame({f"c{i}": pd.Series(dtype=object) for i in range(width)})
    return dd.from_delayed(parts, meta=meta, verify_meta=False), where


def _score_partition(frame: pd.DataFrame, scorer: Scorer, layout: Layout, partition_info=None) -> pd.Series:
    """One dask partition through the same ``score_block`` as the local engine: (CSV text, rows) in a Series."""
    number = (partition_info or {}).get("number", -1)
    try:
        text, n = score_block(scorer, layout, Block.from_frame(frame), 1)
    except SchemaError as exc:
        raise PartitionError(number, "schema", str(exc)) from None
    return pd.Series([(text, n)], dtype=object)


def score_dask(ddf, scorer: Scorer, layout: Layout):
    """Map the block scorer over a dask frame of strings (columns in ``layout.names`` order).

    Returns a dask Series with one (CSV text without header, rows) pair per partition, in order.
    """
    return ddf.map_partitions(_score_partition, scorer, layout, meta=pd.Series(dtype=object),
                              align_dataframes=False)


def predict_dask(settings: Settings, input_path: str | Path, output: str | Path | None = None, *,
                 size_cap: int | None = None, blocksize: str | int = "32MiB", scheduler=None,
                 progress: bool = False, window: int | None = None) -> int:
    """Score a file, a glob or a folder of CSV files over ``dask.dataframe`` partitions; returns rows scored.

    Every partition goes through the same ``score_block`` as the local engine, so the output holds the same
    bytes (one header, rows in file order, files in name order). Partitions are computed a window at a
    time and their text written in order to OUT (temporary file, renamed at the end) or stdout (staged),
    so nothing is written unless every partition validated and scored. ``scheduler`` goes to
    ``dask.compute`` ("threads", "processes", "sync"); when a ``dask.distributed.Client`` exists (e.g.
    ``Client("tcp://scheduler:8786")`` before the call, or ``DASK_SCHEDULER_ADDRESS`` set for the CLI) the
    partitions run on that cluster. Each worker needs this package and read access to the input paths.
    ``size_cap`` applies to each file.
    """
    dask, dd = _import_dask()
    _connect_cluster_from_env()
    scorer = champion_scorer(settings)
    files = expand_inputs(input_path)
    layouts = [read_layout(f, size_cap=size_cap) for f in files]
    header = layouts[0].header_text()
    for lay in layouts[1:]:
        if lay.header_text() != header or lay.features != layouts[0].features:
            raise SchemaError(f"{lay.source} does not have the columns of {layouts[0].source}; "
                              "score files with different columns separately")
    notes: list[str] = []
    for lay in layouts:
        notes += [n for n in lay.warnings if n not in notes]
    for note in notes:
        warnings.warn(note, stacklevel=2)
    ddf, where = read_csv_dask(layouts, blocksize=blocksize)
    texts = score_dask(ddf, scorer, layouts[0]).to_delayed()
    window = window or max(2, os.cpu_count() or 2)
    rows = 0
    total = sum(lay.path.stat().st_size for lay in layouts)
    with staged_output(output) as out, _progress_bar(total, progress, "scoring (dask)") as bar:
        out.write(header.encode("utf-8"))
        for start in range(0, len(texts), window):
            try:
                results = dask.compute(*texts[start:start + window], scheduler=scheduler)
            except PartitionError as exc:
                raise _explain_partition(exc, ddf, where, start) from None
            for series in results:
                text, n = series.iloc[0]
                out.write(text.encode("utf-8"))
                rows += n
            bar.update(total * min(start + window, len(texts)) // len(texts) - bar.n)
        if rows == 0:
            validate_frame(pd.DataFrame(columns=layouts[0].names))
            raise SchemaError(f"{layouts[0].source} has no rows")
    remember_plan(settings, scorer)
    return rows


def _connect_cluster_from_env() -> None:
    """Use the cluster named by DASK_SCHEDULER_ADDRESS (dask config ``scheduler-address``), if any."""
    import dask

    address = dask.config.get("scheduler-address", None)
    if not address:
        return
    try:
        from distributed import Client, default_client
    except ImportError:
        raise MissingExtra("DASK_SCHEDULER_ADDRESS is set but dask.distributed is not installed: "
                           "pip install 'dask[distributed]'") from None
    try:
        default_client()
    except ValueError:
        Client(address)


def _explain_partition(exc: PartitionError, ddf, where, start: int) -> SchemaError:
    """The first failing partition from ``start`` on, its error with rows counted from the start of its file.

    Partitions fail concurrently, so the one dask reports may not be the first: walk them in order.
    """
    offsets: dict[Path, int] = {}
    first = start - where[start][1]  # the first block of the file that holds partition `start`
    for i in range(first, exc.number + 1):
        lay, k = where[i]
        try:
            frame = ddf.partitions[i].compute(scheduler="sync")
        except PartitionError as err:
            if i < start:
                continue
            return _explain_utf8(lay) if err.kind == "utf8" else _explain_ragged(lay)
        offset = offsets.get(lay.path, 0)
        if i >= start:
            try:
                validate_block(lay, Block.from_frame(frame), offset + 1)
            except SchemaError as err:
                return err
        offsets[lay.path] = offset + len(frame) - _blank_rows(frame)
    return SchemaError(exc.detail or str(exc))


def _blank_rows(frame: pd.DataFrame) -> int:
    """Rows whose every cell is blank (dropped by the readers, so not counted in row numbers)."""
    if frame.empty:
        return 0
    return int(frame.apply(lambda s: s.astype(str).str.strip().eq("")).all(axis=1).sum())

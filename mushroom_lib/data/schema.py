"""The mushroom schema: feature names, valid codes with human names, and validation at the boundary.

Every public entry point (CLI, ModelService, dashboard) validates once through this module; an error
names the row, the column, the value and the valid codes, and nothing downstream re-checks.
pandas is imported inside the functions that build frames: the byte-level ``predict`` path uses the code
tables and sentences here without it.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from ..core.errors import SchemaError, shorten
from ..core.vocab import CODE_TO_WORD, WORD_TO_CODE, label_code, norm_column

if TYPE_CHECKING:
    import pandas as pd

TARGET = "class"

#: Valid codes per feature, in dataset order, transcribed from ``agaricus-lepiota.names`` (section 7).
#: ``tests/test_schema.py`` checks this table against the documentation file itself.
CODES: dict[str, dict[str, str]] = {
    "cap-shape": {"b": "bell", "c": "conical", "x": "convex", "f": "flat", "k": "knobbed", "s": "sunken"},
    "cap-surface": {"f": "fibrous", "g": "grooves", "y": "scaly", "s": "smooth"},
    "cap-color": {"n": "brown", "b": "buff", "c": "cinnamon", "g": "gray", "r": "green", "p": "pink",
                  "u": "purple", "e": "red", "w": "white", "y": "yellow"},
    "bruises": {"t": "bruises", "f": "no"},
    "odor": {"a": "almond", "l": "anise", "c": "creosote", "y": "fishy", "f": "foul", "m": "musty",
             "n": "none", "p": "pungent", "s": "spicy"},
    "gill-attachment": {"a": "attached", "d": "descending", "f": "free", "n": "notched"},
    "gill-spacing": {"c": "close", "w": "crowded", "d": "distant"},
    "gill-size": {"b": "broad", "n": "narrow"},
    "gill-color": {"k": "black", "n": "brown", "b": "buff", "h": "chocolate", "g": "gray", "r": "green",
                   "o": "orange", "p": "pink", "u": "purple", "e": "red", "w": "white", "y": "yellow"},
    "stalk-shape": {"e": "enlarging", "t": "tapering"},
    "stalk-root": {"b": "bulbous", "c": "club", "u": "cup", "e": "equal", "z": "rhizomorphs",
                   "r": "rooted", "?": "missing"},
    "stalk-surface-above-ring": {"f": "fibrous", "y": "scaly", "k": "silky", "s": "smooth"},
    "stalk-surface-below-ring": {"f": "fibrous", "y": "scaly", "k": "silky", "s": "smooth"},
    "stalk-color-above-ring": {"n": "brown", "b": "buff", "c": "cinnamon", "g": "gray", "o": "orange",
                               "p": "pink", "e": "red", "w": "white", "y": "yellow"},
    "stalk-color-below-ring": {"n": "brown", "b": "buff", "c": "cinnamon", "g": "gray", "o": "orange",
                               "p": "pink", "e": "red", "w": "white", "y": "yellow"},
    "veil-type": {"p": "partial", "u": "universal"},
    "veil-color": {"n": "brown", "o": "orange", "w": "white", "y": "yellow"},
    "ring-number": {"n": "none", "o": "one", "t": "two"},
    "ring-type": {"c": "cobwebby", "e": "evanescent", "f": "flaring", "l": "large", "n": "none",
                  "p": "pendant", "s": "sheathing", "z": "zone"},
    "spore-print-color": {"k": "black", "n": "brown", "b": "buff", "h": "chocolate", "r": "green",
                          "o": "orange", "u": "purple", "w": "white", "y": "yellow"},
    "population": {"a": "abundant", "c": "clustered", "n": "numerous", "s": "scattered", "v": "several",
                   "y": "solitary"},
    "habitat": {"g": "grasses", "l": "leaves", "m": "meadows", "p": "paths", "u": "urban", "w": "waste",
                "d": "woods"},
}

FEATURES: list[str] = list(CODES)
COLUMNS: list[str] = [TARGET, *FEATURES]
LABELS: dict[str, str] = CODE_TO_WORD
LABEL_CODES: dict[str, str] = WORD_TO_CODE
FULL_ROWS = 8124


def code_table(feature: str) -> np.ndarray:
    """A feature's valid codes as a 256-entry table: byte value -> code index (``CODES`` order), -1 if not valid."""
    table = np.full(256, -1, dtype=np.int16)
    for i, code in enumerate(CODES[feature]):
        table[ord(code)] = i
    return table

#: Caps on every table a user sends (CSV file, upload, DataFrame): ``predict`` and ``feedback`` share them.
MAX_COLUMNS = 1_000        #: columns in a header (22 features, class and up to 977 extra columns)
MAX_FIELD_CHARS = 1_000    #: characters in one value (a code is one character; extra columns hold notes)
MAX_LISTED = 5             #: names listed in a message before "and N more"


@dataclass
class Validated:
    """Clean features (22 columns, dataset order, category codes) plus what was found on the way."""

    features: pd.DataFrame
    labels: pd.Series | None = None
    extra: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_norm_name = norm_column  # the one column-name normalisation (vocab.py); kept for existing callers


def listed(names: list[object]) -> str:
    """Names for a message: the first ``MAX_LISTED`` (each cut), then "and N more"."""
    shown = ", ".join(shorten(str(n)).strip("'\"") for n in names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED:,} more" if len(names) > MAX_LISTED else "")


def check_width(n_columns: int, source: str = "input") -> None:
    """Refuse a table wider than ``MAX_COLUMNS`` (the one column-count rule of every reader)."""
    if n_columns > MAX_COLUMNS:
        raise SchemaError(f"{source} has {n_columns:,} columns, over the cap of {MAX_COLUMNS:,}; keep the 22 "
                          "features, class and a few extra columns")


def field_too_long(source: str, line: int) -> SchemaError:
    """The one sentence for a value longer than ``MAX_FIELD_CHARS`` (raised by every reader)."""
    return SchemaError(f"{source}: line {line:,} holds a value longer than {MAX_FIELD_CHARS:,} characters, "
                       "the cap; mushroom files hold one-letter codes", row=line)


def csv_rows(lines: Iterable[str], source: str = "input") -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of each CSV record, with the width and value-size caps applied.

    The one CSV record reader of the schema: the in-memory reader and ``explain_file`` (the streamed
    ``predict`` path's explanation of a refused file) both go through it, so both word a problem alike.
    """
    reader = csv.reader(lines)
    first = True
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise field_too_long(source, reader.line_num) from None
            raise SchemaError(f"{source}: line {reader.line_num:,} is not valid CSV "
                              "(an unclosed quote or a stray character)", row=reader.line_num) from None
        if first and row and any(cell.strip() for cell in row):
            check_width(len(row), source)
            first = False
        if row and max(map(len, row)) > MAX_FIELD_CHARS:
            raise field_too_long(source, reader.line_num)
        yield reader.line_num, row


def check_value_sizes(columns: Iterable[np.ndarray], path: str | Path, source: str) -> None:
    """Refuse a block of parsed values (one array of strings per column) holding a value longer than
    ``MAX_FIELD_CHARS``, with the sentence ``csv_rows`` gives for the same file (found by ``explain_file``)."""
    if any(len(col) and max(map(len, col)) > MAX_FIELD_CHARS for col in columns):
        explain_file(path, source)
        raise field_too_long(source, 0)  # not reached: explain_file names the line


def explain_file(path: str | Path, source: str | None = None) -> None:
    """Stream a CSV file and raise the sentence ``read_csv_file`` gives for its first problem, in the same
    order (bytes that are not UTF-8, then a CSV, width or value-size problem, then a ragged row), for
    readers that found a problem in their own way; return if there is none. Memory stays flat."""
    source = source or str(path)
    _check_utf8_stream(path, source)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        numbered = ((n, r) for n, r in csv_rows(fh, source) if r and any(cell.strip() for cell in r))
        first = next(numbered, None)
        if first is None:
            return
        header, headerless = _header_of(first[1])
        ragged = None
        for i, (line, row) in enumerate(numbered if not headerless else _chain(first, numbered)):
            if ragged is None and len(row) != len(header):
                ragged = ragged_row(source, line, len(row), len(header), headerless, i + 1)
    if ragged is not None:
        raise ragged


def _chain(first, rest):
    yield first
    yield from rest


def _check_utf8_stream(path: str | Path, source: str) -> None:
    """Raise ``not_utf8`` for the first byte of a file that is not UTF-8 (read in blocks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                data = exc.object  # bytes held over from the last block (never a line end) + this block
                raise not_utf8(source, lines + data[:exc.start].count(b"\n"), data[exc.start]) from None
            if not block:
                return
            lines += block.count(b"\n")


def not_utf8(source: str, line: int, byte: int) -> SchemaError:
    """The one sentence for a byte that is not UTF-8 text."""
    return SchemaError(f"{source}: line {line} is not UTF-8 text (byte {byte:#04x}); save the file as UTF-8")


def ragged_row(source: str, line: int, fields: int, width: int, headerless: bool, row: int) -> SchemaError:
    """The one sentence for a row whose field count differs from the header's (or the first line's)."""
    expected = f"the first line has {width}" if headerless else f"the header has {width}"
    return SchemaError(f"{source}: line {line} has {fields} fields, {expected} (a ragged row)", row=row)


def not_csv(source: str) -> SchemaError:
    """The sentence for a file a CSV reader refused where the schema's own reading finds nothing wrong."""
    return SchemaError(f"{source} could not be read as CSV (a row longer than 1 MiB?)")


def _header_of(first: list[str]) -> tuple[list[str], bool]:
    """(column names, headerless) from the first non-blank row: a header, or the headerless UCI layout
    (class + 22 features) or the 22 features alone, one-letter codes."""
    header = [_norm_name(c) for c in first]
    headerless = not (set(header) & set(FEATURES)) and len(first) in (len(COLUMNS), len(FEATURES)) and \
        all(len(c.strip()) <= 1 for c in first)
    if headerless:
        return (list(COLUMNS) if len(first) == len(COLUMNS) else list(FEATURES)), True
    return header, False


def valid_codes(column: str) -> str:
    """The valid codes of a feature as ``a (almond), l (anise), ...``."""
    return ", ".join(f"{code} ({name})" for code, name in CODES[column].items())


def normalize_labels(values: pd.Series, *, column: str = TARGET, first_row: int = 1) -> pd.Series:
    """Map e/p/edible/poisonous (any case) to e/p; raise SchemaError naming the first bad row."""
    text = values.astype("string")
    mapped = text.map(lambda v: label_code(v) if isinstance(v, str) else None)
    bad = mapped.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        value = values.iloc[pos]
        raise SchemaError(
            f"row {first_row + pos}, column '{column}': label {shorten(value)} is not valid; "
            f"use e/edible or p/poisonous ({int(bad.sum())} bad label(s) in all)",
            row=first_row + pos, column=column, value=value)
    return mapped.astype(object)


def invalid_codes(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Positions of the cells that hold no valid code, per feature (features with none are left out)."""
    found = {}
    for col in FEATURES:
        bad = np.flatnonzero(~df[col].isin(CODES[col].keys()).to_numpy())
        if len(bad):
            found[col] = bad
    return found


def _check_codes(df: pd.DataFrame, first_row: int) -> None:
    problems: list[str] = []
    first: tuple[int, str, object] | None = None
    for col, bad in invalid_codes(df).items():
        values = df[col]
        for pos in bad[:3]:
            value = values.iloc[pos]
            row = first_row + int(pos)
            if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
                what = "is empty"
            else:
                what = f"has {shorten(value)}, which is not a valid code"
            problems.append(f"row {row}, column '{col}' {what}; valid codes: {valid_codes(col)}")
            if first is None or row < first[0]:
                first = (row, col, value)
    if problems:
        count = len(problems)
        head = problems[0] if count == 1 else f"{count} invalid cells, first: {problems[0]}"
        if any(str(v).strip().lstrip("-").isdigit() for v in [first[2]] if first):
            head += " (this looks like label-encoded integers; use the one-letter codes)"
        raise SchemaError(head, row=first[0], column=first[1], value=first[2], problems=problems)


def validate_frame(df: pd.DataFrame, *, require_label: bool = False, first_row: int = 1,
                   label_column: str | None = None) -> Validated:
    """Validate a frame of raw features (any column order, extra columns kept aside).

    ``first_row`` is the number people see for the frame's first data row (1 = first row after the
    header). Raises SchemaError on a missing, duplicated or misspelled column, an empty frame, an
    empty cell or a code that is not valid for its feature.
    """
    import pandas as pd

    if df is None or len(df.columns) == 0:
        raise SchemaError("the input has no columns; expected a header with the 22 mushroom features")
    check_width(len(df.columns), "the input")
    names = [_norm_name(c) for c in df.columns]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    dups = sorted(n for n, c in seen.items() if c > 1)
    if dups:
        raise SchemaError(f"column {shorten(dups[0])} appears {seen[dups[0]]} times; each column may appear once",
                          column=dups[0])
    renamed = df.set_axis(names, axis=1)
    missing = [f for f in FEATURES if f not in seen]
    extra = [n for n in names if n not in FEATURES and n != TARGET and n != label_column]
    if missing:
        hint = ""
        for m in missing:
            close = difflib.get_close_matches(m, extra, n=1, cutoff=0.6)
            if close:
                hint = f" (is {shorten(close[0])} a misspelling of {m!r}?)"
                break
        if all(str(c).strip().isdigit() for c in df.columns):
            hint = " (the file seems to have no header; use the dataset's header or the UCI layout)"
        raise SchemaError(f"missing column(s): {listed(missing)}{hint}", column=missing[0])
    if len(renamed) == 0:
        raise SchemaError("the input has a header but no rows")
    feats = renamed[FEATURES]
    if not all(dt == object or pd.api.types.is_string_dtype(dt) for dt in feats.dtypes):
        feats = feats.astype(object).where(feats.notna(), None)
        feats = feats.map(lambda v: v if v is None else str(v))
    feats = feats.apply(lambda s: s.str.strip() if s.dtype == object or pd.api.types.is_string_dtype(s) else s)
    _check_codes(feats, first_row)
    labels = None
    lab_col = label_column or TARGET
    if require_label:
        if lab_col not in renamed.columns:
            raise SchemaError(f"missing column '{lab_col}' with the true label (e/edible or p/poisonous)",
                              column=lab_col)
        labels = normalize_labels(renamed[lab_col], column=lab_col, first_row=first_row)
    warnings = []
    if extra:
        warnings.append(f"extra column(s) kept but not used: {listed(extra)}")
    out = feats.reset_index(drop=True).astype(object)
    if labels is not None:
        labels = labels.reset_index(drop=True)
    return Validated(out, labels, extra, warnings)


def _sniff_problem(head: bytes) -> str | None:
    stripped = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "the file is UTF-16 text; save it as UTF-8"
    if b"\x00" in head:
        return "the file is binary, not a CSV text file"
    if stripped[:1] in (b"{", b"["):
        return "the file looks like JSON, not CSV; expected comma-separated values with a header"
    return None


def read_csv_bytes(data: bytes, *, source: str = "input", size_cap: int | None = None) -> pd.DataFrame:
    """Parse CSV bytes in either layout into a frame of strings; raise SchemaError on any format problem.

    Accepts the header layout (``class`` optional, any column order) and the headerless UCI layout
    (23 columns, class first). A UTF-8 BOM, CRLF line ends and quoted fields are fine.
    """
    if size_cap is not None and len(data) > size_cap:
        raise SchemaError(f"{source} is {len(data) / 1e6:.1f} MB, over the {size_cap / 1e6:.0f} MB size cap")
    if not data.strip():
        raise SchemaError(f"{source} is empty")
    problem = _sniff_problem(data[:65536])
    if problem:
        raise SchemaError(f"{source}: {problem}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(source, data[: exc.start].count(b"\n") + 1, data[exc.start]) from None
    return parse_csv_text(text, source=source)


def parse_csv_text(text: str, *, source: str = "input") -> pd.DataFrame:
    """Parse CSV text (see ``read_csv_bytes``)."""
    first_line = text.split("\n", 1)[0].strip("\r")
    for delim in (";", "\t", "|"):
        if delim in first_line and "," not in first_line:
            raise SchemaError(f"{source}: the delimiter looks like {delim!r}; mushroom files are comma-separated")
    numbered = [(n, r) for n, r in csv_rows(io.StringIO(text, newline=""), source)
                if r and any(cell.strip() for cell in r)]
    rows = [r for _, r in numbered]
    if not rows:
        raise SchemaError(f"{source} is empty")
    header, headerless = _header_of(rows[0])
    if headerless:
        body, lines = rows, [n for n, _ in numbered]
    else:
        body, lines = rows[1:], [n for n, _ in numbered[1:]]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ragged_row(source, lines[i], len(r), len(header), headerless, i + 1)
    import pandas as pd

    frame = pd.DataFrame(body, columns=rows[0] if not headerless else header, dtype=object)
    if headerless:
        frame.attrs["layout"] = "uci"
    else:
        frame.attrs["layout"] = "header"
    return frame


def read_csv_file(path: str | Path, *, size_cap: int | None = None) -> pd.DataFrame:
    """Read a CSV file in either layout (see ``read_csv_bytes``)."""
    p = Path(path)
    if not p.exists():
        raise SchemaError(f"{p}: no such file")
    if p.is_dir():
        raise SchemaError(f"{p} is a folder, not a CSV file")
    size = p.stat().st_size
    if size_cap is not None and size > size_cap:
        raise SchemaError(f"{p} is {size / 1e6:.1f} MB, over the {size_cap / 1e6:.0f} MB size cap "
                          "(raise it with --max-mb)")
    return read_csv_bytes(p.read_bytes(), source=str(p), size_cap=size_cap)


def records_to_frame(rows: Mapping | Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """Accept a dict (one mushroom), a list of dicts or a DataFrame, and return a DataFrame."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Mapping):
        return pd.DataFrame([dict(rows)])
    return pd.DataFrame(list(rows))


def describe(column: str, code: str) -> str:
    """Human name for a code, e.g. describe('odor', 'f') == 'foul'."""
    return CODES[column].get(code, code)

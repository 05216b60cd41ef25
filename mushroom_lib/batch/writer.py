"""Writing a scored file: CSV lines rendered exactly as ``DataFrame.to_csv`` renders them, and the staging that
lets nothing reach OUT or stdout unless the whole file validated and scored. Never imports pandas.

Both readers of ``mushroom predict`` (the byte-level one and the general one) and the dask engine render
through ``render_rows``, so they write the same bytes for the same rows.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.fileio import atomic_writer


class _Echo:
    """A file-like object whose ``write`` returns what it is given (so ``csv.writer.writerow`` returns the line)."""

    @staticmethod
    def write(text: str) -> str:
        return text


def _csv_writer():
    # pandas' to_csv writes through the csv module with these settings (QUOTE_MINIMAL, '"', '\n').
    return csv.writer(_Echo(), lineterminator="\n")


def header_line(names: Sequence[str]) -> str:
    """The output's header line, as ``DataFrame(columns=names).to_csv(index=False)`` writes it."""
    return _csv_writer().writerow(list(names))


def _cells(column: np.ndarray) -> list:
    """A column as Python values the csv module writes as to_csv does: floats by repr, NaN and None empty."""
    column = np.asarray(column)
    if column.dtype.kind == "f":
        values = column.tolist()
        if np.isnan(column).any():
            values = ["" if v != v else v for v in values]
        return values
    return column.tolist()


def render_rows(columns: Sequence[np.ndarray]) -> list[str]:
    """One CSV line (with its line end) per row of the given columns, as ``DataFrame.to_csv`` writes them."""
    writer = _csv_writer()
    return [writer.writerow(row) for row in zip(*(_cells(c) for c in columns))]


def gather(lines: np.ndarray, inverse: np.ndarray) -> bytes:
    """The output bytes of a chunk: the rendered line (bytes) of each row's distinct row, in input order."""
    return b"".join(lines[inverse].tolist())


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


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar in bytes on stderr (tqdm is imported only when the bar is shown)."""
    if not enabled:
        return contextlib.nullcontext(_NoBar())
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False)


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

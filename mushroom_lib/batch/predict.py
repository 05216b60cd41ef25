"""The ``mushroom predict`` command path: score a whole CSV file with the champion and write OUT or stdout.

1. **The usual layout** (the dataset's header or none, one-byte codes, ``\\n`` line ends) is read by
   ``fast_reader`` straight from the bytes: one integer key per row, a chunk of ``CHUNK_ROWS`` rows at a
   time; only distinct rows are scored (``Scorer.score_codes``) and rendered (``batch_writer.render_rows``),
   and each chunk's output is gathered from those lines. numpy only: pandas, pyarrow and scikit-learn are
   not imported on this path when the champion's scoring plan is saved.
2. **Anything else** (or any cell the byte reader does not take) goes through the general reader
   ``batch_reader``, whose every refusal is worded by ``schema`` and names the row counted from the start of
   the file. Both paths render through ``batch_writer``, so they write the same bytes for the same file.
3. **Nothing is written on bad input**: the output is staged (``batch_writer.staged_output``) and reaches OUT
   (atomic rename) or stdout only after the whole file validated and scored; a background thread writes.
4. **The champion's scoring plan** (``accelerator.ScoringPlan``) is written when a version is registered and
   loaded by ``plan_cache.plan_scorer`` when its sha256 checks out; scikit-learn comes in only if a row needs
   the Pipeline itself.

``engine="dask"`` scores a file, a glob or a folder over ``dask.dataframe`` partitions (``dask_engine``).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import MissingExtra  # noqa: F401 (defined in errors.py; kept importable here)
from ..core.settings import Settings
from ..data.schema import SchemaError, read_csv_file
from ..scoring.loader import champion_scorer, remember_plan
from ..scoring.scorer import SCORED_COLUMNS, Scorer
from . import byte_reader as fast_reader
from .blocks import Stages, score_block
from .csv_reader import (  # noqa: F401
    BLOCK_BYTES,
    CHUNK_ROWS,
    HEAD_BYTES,
    Block,
    Layout,
    block_keys,
    iter_blocks,
    read_layout,
    validate_block,
)
from .distinct import RowIds
from .threads import background_writes
from .writer import gather, header_line, progress_bar, render_rows, staged_output


def score_stream(scorer: Scorer, layout: Layout, out, *, block_size: int = BLOCK_BYTES,
                 chunk_rows: int = CHUNK_ROWS, progress: bool = False, stages: dict | None = None,
                 sync: bool = False) -> int:
    """Stream one CSV file through the general reader and ``score_block`` into the binary handle ``out``
    (``sync``: flushed to disk as it is written, for an output file)."""
    rows = 0
    stage = Stages(stages)
    total = layout.path.stat().st_size
    with progress_bar(total, progress, f"scoring {layout.path.name}") as bar, \
            background_writes(out, timed=stages, sync=sync) as write:
        write(layout.header_text())
        blocks = iter_blocks(layout, block_size=block_size, chunk_rows=chunk_rows, progress=bar)
        while True:
            with stage("read+parse"):
                block = next(blocks, None)
            if block is None:
                break
            text, n = score_block(scorer, layout, block, rows + 1, stage)
            write(text)
            rows += n
        bar.update(max(0, total - bar.n))
    if rows == 0:
        import pandas as pd

        from ..data.schema import validate_frame

        validate_frame(pd.DataFrame(columns=layout.names))  # "the input has a header but no rows"
        raise SchemaError(f"{layout.source} has no rows")
    return rows


# ---------------------------------------------------------------- the usual layout, from the bytes
def score_usual(scorer: Scorer, usual: fast_reader.UsualLayout, out, *, chunk_rows: int = fast_reader.CHUNK_ROWS,
                progress: bool = False, stages: dict | None = None, sync: bool = False) -> int:
    """Score a file in the usual layout chunk by chunk into the binary handle ``out``; returns rows scored
    (``sync``: flushed to disk as it is written, for an output file).

    Raises ``fast_reader.NotUsual`` (the caller then reads the file with the general reader) on any row the
    byte reader does not take; ``out`` then holds a partial output the caller discards.
    """
    stage = Stages(stages)
    numbers = RowIds()
    lines = np.empty(0, dtype=object)  # the rendered line (bytes) of each distinct row, by its number
    rows = 0
    with progress_bar(usual.path.stat().st_size, progress, f"scoring {usual.path.name}") as bar, \
            background_writes(out, timed=stages, sync=sync) as write:
        write(header_line(usual.names + SCORED_COLUMNS))
        for key in fast_reader.iter_keys(usual, chunk_rows, stage=stage):
            with stage("distinct"):
                ids, first = numbers.number(key)
            if len(first):
                with stage("score"):
                    codes, raw = usual.decode(key[first])
                    scored = scorer.score_codes(codes)
                with stage("format"):
                    text = render_rows(raw + [scored[c] for c in SCORED_COLUMNS])
                    lines = np.concatenate([lines, np.array([t.encode("utf-8") for t in text], dtype=object)])
            with stage("format"):
                data = gather(lines, ids)
            write(data)
            rows += len(key)
            bar.update(len(key) * usual.width)
    return rows


def _staged(output: str | Path | None, stages: dict | None, score) -> int:
    """``score(out)`` into a staged output, committed (renamed, or copied to stdout) when it returns."""
    with staged_output(output) as out:
        rows = score(out)
        t = time.perf_counter()
    if stages is not None:
        stages["commit"] = stages.get("commit", 0.0) + time.perf_counter() - t
    return rows


def predict_file(settings: Settings, input_path: str | Path, output: str | Path | None = None, *,
                 size_cap: int | None = None, engine: str = "local", progress: bool = False,
                 block_size: int = BLOCK_BYTES, chunk_rows: int = CHUNK_ROWS, stages: dict | None = None) -> int:
    """Validate and score a whole CSV file, then write OUT (atomically) or stdout. Returns rows scored.

    ``engine="dask"`` scores a file, a glob or a folder of CSV files over dask partitions (``predict_dask``).
    ``stages``, when given, receives the seconds spent per stage (read+parse, validate, distinct, score,
    format, write).
    """
    if engine == "dask":
        from .dask_engine import predict_dask

        return predict_dask(settings, input_path, output, size_cap=size_cap, progress=progress)
    if engine != "local":
        raise ValueError(f"unknown engine {engine!r}; choose local or dask")
    stage = Stages(stages)
    with stage("load scorer"):
        scorer = champion_scorer(settings)  # fail early (before reading a large file) without a model
    p = Path(input_path)
    if not p.is_file() or (size_cap is not None and p.stat().st_size > size_cap):
        read_csv_file(p, size_cap=size_cap)  # the schema's sentence (no such file, a folder, the size cap)
    try:
        usual = fast_reader.open_usual(p)
        rows = _staged(output, stages, lambda out: score_usual(scorer, usual, out, chunk_rows=chunk_rows,
                                                                progress=progress, stages=stages,
                                                                sync=bool(output)))
        reader = "bytes"
    except fast_reader.NotUsual:  # not the usual layout: the general reader, whose refusals schema words
        layout = read_layout(p, size_cap=size_cap)
        for note in layout.warnings:
            warnings.warn(note, stacklevel=2)
        rows = _staged(output, stages, lambda out: score_stream(scorer, layout, out, block_size=block_size,
                                                                 chunk_rows=chunk_rows, progress=progress,
                                                                 stages=stages, sync=bool(output)))
        reader = "general"
    if stages is not None:
        stages["reader"] = reader
    remember_plan(settings, scorer)  # after a clean run only: a refused input changes nothing in the home
    return rows


# ---------------------------------------------------------------- the champion's scorer

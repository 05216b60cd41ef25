"""One block of the general CSV reader scored and rendered: validated, distinct rows scored once, CSV text out.

Shared by the local stream (``predict.score_stream``) and the dask engine's partitions.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ..scoring.scorer import SCORED_COLUMNS, Scorer
from .csv_reader import Block, Layout, block_keys, validate_block
from .distinct import RowIds
from .writer import render_rows


class Stages:
    """Seconds spent per stage of a run (``predict_file(stages=...)``; the benchmark prints them)."""

    def __init__(self, into: dict | None):
        self.into = into

    @contextlib.contextmanager
    def __call__(self, name: str):
        if self.into is None:
            yield
            return
        t = time.perf_counter()
        try:
            yield
        finally:
            self.into[name] = self.into.get(name, 0.0) + time.perf_counter() - t


def score_block(scorer: Scorer, layout: Layout, block: Block, first_row: int,
                stage: Stages = Stages(None)) -> tuple[str, int]:
    """Validate one block (rows numbered from ``first_row``), score its distinct rows, render it as CSV.

    Returns (CSV text without a header, rows written). Raises SchemaError exactly as ``validate_frame`` does.
    """
    with stage("validate"):
        block, codes = validate_block(layout, block, first_row)
    if block.n == 0:
        return "", 0
    with stage("distinct"):
        inverse, first = RowIds.for_rows(block.n).number(block_keys(block))
        code_rows = np.stack([c[block.index[pos][first]] for c, pos in zip(codes, layout.features)], axis=1)
    with stage("score"):
        scored = scorer.score_codes(code_rows.astype(np.int8))
    with stage("format"):
        raw = [block.values[i][block.index[i][first]] for i in layout.keep]
        lines = np.array(render_rows(raw + [scored[c] for c in SCORED_COLUMNS]), dtype=object)
        return "".join(lines[inverse].tolist()), block.n

"""Scoring a whole CSV file with the champion (the ``mushroom predict`` path)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from .fileio import atomic_write_bytes
from .schema import read_csv_file, validate_frame
from .service import ModelService
from .settings import Settings


def predict_file(settings: Settings, input_path: str | Path, output: str | Path | None = None, *,
                 size_cap: int | None = None, engine: str = "local", progress: bool = False) -> int:
    """Validate the whole file, score it, then write OUT (atomically) or stdout. Returns rows scored."""
    svc = ModelService(settings=settings)
    svc.scorer  # fail early (before reading a large file) when no model is trained
    frame = read_csv_file(input_path, size_cap=size_cap)
    checked = validate_frame(frame)
    for note in checked.warnings:
        warnings.warn(note, stacklevel=2)
    scored = svc.predict(frame, validated=False)
    body = scored.to_csv(index=False, lineterminator="\n").encode()
    if output:
        atomic_write_bytes(output, body)
    else:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    return len(scored)

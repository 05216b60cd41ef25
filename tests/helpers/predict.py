"""What the tests of ``mushroom predict`` share: a frame as the CSV bytes a user would save, and the in-memory
answer (whole file read, validated, ``ModelService.predict``, ``to_csv``) the streamed paths must equal."""

from __future__ import annotations

import pandas as pd

from mushroom_lib.data.schema import read_csv_file, validate_frame
from mushroom_lib.service import ModelService


def csv_bytes(df: pd.DataFrame, **kw) -> bytes:
    """``df`` as CSV bytes with ``\\n`` line ends (``to_csv`` keyword arguments pass through)."""
    return df.to_csv(index=False, lineterminator="\n", **kw).encode()


def in_memory(home, path) -> bytes:
    """The non-streaming path: read the whole file, validate, ModelService.predict, to_csv."""
    frame = read_csv_file(path)
    validate_frame(frame)
    return ModelService(home).predict(frame).to_csv(index=False, lineterminator="\n").encode()

"""Data acquisition, loading, and the persisted stratified train/holdout split.

Acquisition reads with caps: at most ``MAX_DATASET_BYTES`` decompressed (zip and gzip are inflated in a stream
and cut off at the cap) and, unless forced, 1,000 to 1,000,000 rows with each class between 10% and 90%.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import sys
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.fileio import atomic_write_bytes, atomic_write_json, read_json
from ..core.settings import Settings
from ..core.vocab import CODE_TO_WORD, EDIBLE, POISONOUS
from .schema import (
    CODES,
    COLUMNS,
    FEATURES,
    FULL_ROWS,
    TARGET,
    SchemaError,
    read_csv_bytes,
    validate_frame,
)

UCI_URL = "https://archive.ics.uci.edu/static/public/73/mushroom.zip"
UCI_MEMBER = "agaricus-lepiota.data"

MAX_DATASET_BYTES = 64 << 20          #: 64 MiB of CSV text, decompressed (a million rows take ~46 MB)
MIN_ROWS, MAX_ROWS = 1_000, 1_000_000  #: a dataset outside these is refused unless forced
MIN_CLASS_SHARE = 0.10                 #: each class's share must lie in [10%, 90%] unless forced
_CHUNK = 1 << 20
_FORCE_HINT = "use `mushroom data --force` (force=True) to accept it anyway"


@dataclass
class AcquireResult:
    """What ``acquire`` wrote."""

    path: Path
    source: str
    rows: int
    balance: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def _download(url: str, *, timeout: float, progress: bool) -> bytes:
    from tqdm.auto import (
        tqdm,  # lazy: it pulls in asyncio (~35 ms); only a download shows a bar
    )

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http/https only, checked)
            total = int(resp.headers.get("Content-Length") or 0) or None
            if total and total > MAX_DATASET_BYTES:
                raise _too_big(url)
            chunks, size = [], 0
            with tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=not progress,
                      file=sys.stderr) as bar:
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > MAX_DATASET_BYTES:
                        raise _too_big(url)
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        # HTTPException: e.g. IncompleteRead when the server closes before Content-Length bytes
        reason = getattr(exc, "reason", None) or str(exc) or exc.__class__.__name__
        raise DataError(f"could not download {url}: {reason}") from None
    data = b"".join(chunks)
    if total and len(data) != total:
        raise DataError(f"download of {url} stopped at {len(data)} of {total} bytes")
    return data


def _too_big(source: str) -> DataError:
    return DataError(f"{source} holds more than {MAX_DATASET_BYTES >> 20} MiB of CSV text, the cap for a "
                     f"dataset ({MAX_ROWS:,} rows take about 46 MB); refused")


def _too_many_rows(source: str) -> DataError:
    return DataError(f"{source} holds more than {MAX_ROWS:,} rows, the cap for a dataset; {_FORCE_HINT}")


def read_capped(stream, source: str, *, max_rows: int | None = MAX_ROWS) -> bytes:
    """Read a (decompressing) stream in 1 MiB pieces; stop with DataError past ``MAX_DATASET_BYTES`` or,
    when ``max_rows`` is given, once it holds more lines than ``max_rows`` rows and a header could."""
    buf, lines = bytearray(), 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        if len(buf) + len(chunk) > MAX_DATASET_BYTES:
            raise _too_big(source)
        buf += chunk
        lines += chunk.count(b"\n")
        if max_rows is not None and lines > max_rows + 1:
            raise _too_many_rows(source)


def _unzip(data: bytes, source: str, max_rows: int | None) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            member = next((n for n in names if n.endswith(UCI_MEMBER)), None)
            if member is None:
                member = next((n for n in names if n.endswith((".csv", ".data"))), None)
            if member is None:
                raise DataError(f"{source}: the zip holds no {UCI_MEMBER} or .csv file (members: "
                                f"{', '.join(names[:5])}{' …' if len(names) > 5 else ''})")
            with zf.open(member) as fh:
                return read_capped(fh, source, max_rows=max_rows)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{source}: the zip archive is damaged or truncated (or encrypted, or in an unsupported "
                        "compression)") from None


def _gunzip(data: bytes, source: str, max_rows: int | None) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            return read_capped(fh, source, max_rows=max_rows)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise DataError(f"{source}: the gzip file is damaged or truncated") from None


def _read_source(source: str, *, timeout: float, progress: bool, max_rows: int | None = MAX_ROWS) -> bytes:
    if source.startswith(("http://", "https://")):
        raw = _download(source, timeout=timeout, progress=progress)
    elif "://" in source:
        raise DataError(f"unsupported source {source!r}: give a file path or an http(s) URL")
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise DataError(f"data source {path} does not exist")
        if path.stat().st_size > MAX_DATASET_BYTES:
            raise _too_big(source)
        raw = path.read_bytes()
    if raw[:4] == b"PK\x03\x04" or source.endswith(".zip"):
        return _unzip(raw, source, max_rows)
    if raw[:2] == b"\x1f\x8b":
        return _gunzip(raw, source, max_rows)
    if max_rows is not None and raw.count(b"\n") > max_rows + 1:
        raise _too_many_rows(source)
    return raw


def parse_dataset(raw: bytes, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Parse and validate dataset bytes in either layout; return the frame (class + 22) and warnings."""
    frame = read_csv_bytes(raw, source=source)
    checked = validate_frame(frame, require_label=True)
    df = checked.features.copy()
    df.insert(0, TARGET, checked.labels.to_numpy())
    notes = list(checked.warnings)
    if len(df) != FULL_ROWS:
        notes.append(f"{len(df)} rows, not the full {FULL_ROWS}: a subset is accepted, metrics will differ")
    return df[COLUMNS], notes


def check_shape(df: pd.DataFrame, source: str) -> None:
    """Refuse a dataset with fewer than ``MIN_ROWS`` or more than ``MAX_ROWS`` rows, or a class whose share
    lies outside [MIN_CLASS_SHARE, 1 - MIN_CLASS_SHARE] (``acquire(force=True)`` skips this check)."""
    n = len(df)
    if not MIN_ROWS <= n <= MAX_ROWS:
        raise DataError(f"{source} has {n:,} rows; a dataset needs {MIN_ROWS:,} to {MAX_ROWS:,} rows, "
                        f"{_FORCE_HINT}")
    shares = df[TARGET].value_counts(normalize=True)
    for code, word in CODE_TO_WORD.items():
        share = float(shares.get(code, 0.0))
        if share < MIN_CLASS_SHARE:  # (then the other class is over 1 - MIN_CLASS_SHARE)
            raise DataError(f"{source} is {share:.1%} {word}; each class must make up {MIN_CLASS_SHARE:.0%} to "
                            f"{1 - MIN_CLASS_SHARE:.0%} of a dataset, {_FORCE_HINT}")


def acquire(settings: Settings, source: str | None = None, *, timeout: float = 30.0,
            progress: bool = True, force: bool = False) -> AcquireResult:
    """Put the validated dataset at ``data/mushrooms.csv``.

    Source order: ``source``, then MUSHROOM_DATA, then an existing data/mushrooms.csv, then the UCI zip.
    Nothing is written unless the whole file validates. The decompressed size is capped
    (``MAX_DATASET_BYTES``) always; the row count and class shares (``check_shape``) unless ``force``.
    """
    target = settings.dataset_path
    chosen = source or settings.data_source
    if not chosen and target.exists():
        chosen = str(target)
    chosen = chosen or UCI_URL
    raw = _read_source(chosen, timeout=timeout, progress=progress, max_rows=None if force else MAX_ROWS)
    try:
        df, notes = parse_dataset(raw, chosen)
    except SchemaError as exc:
        raise DataError(f"{chosen}: {exc}") from None
    del raw
    if not force:
        check_shape(df, chosen)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    body = df.to_csv(index=False, lineterminator="\n").encode()
    if not (target.exists() and target.read_bytes() == body):
        atomic_write_bytes(target, body)
    balance = {k: int(v) for k, v in df[TARGET].value_counts().sort_index().items()}
    write_samples(settings)
    return AcquireResult(target, chosen, len(df), balance, notes)


def load_dataset(settings: Settings) -> pd.DataFrame:
    """The acquired dataset (class + 22 features as codes)."""
    path = settings.dataset_path
    if not path.exists():
        raise DataError(f"no dataset at {path}; run `mushroom data` first")
    return pd.read_csv(path, dtype=str, keep_default_na=False)[COLUMNS]


def dataset_sha256(settings: Settings) -> str:
    """sha256 of data/mushrooms.csv."""
    if not settings.dataset_path.exists():
        raise DataError(f"no dataset at {settings.dataset_path}; run `mushroom data` first")
    return hashlib.sha256(settings.dataset_path.read_bytes()).hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """A stable hash of a frame's content (for the training-data fingerprint)."""
    return hashlib.sha256(df.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


@dataclass
class Split:
    """Row identities (positions in data/mushrooms.csv) of the training part and the holdout."""

    train: list[int]
    holdout: list[int]
    seed: int
    test_size: float
    dataset_sha256: str


def make_split(settings: Settings, *, force: bool = False, persist: bool = True) -> Split:
    """Create (or reuse) the stratified split; it is persisted so the holdout never enters training
    (``persist=False``: the same split, computed but not written)."""
    digest = dataset_sha256(settings)
    saved = read_json(settings.split_path)
    if saved and not force and saved.get("dataset_sha256") == digest:
        return Split(saved["train"], saved["holdout"], saved["seed"], saved["test_size"], digest)
    if saved and not force:
        raise DataError(f"{settings.split_path} belongs to another dataset (sha256 differs); "
                        "remove it or train with --resplit to make a new split")
    from sklearn.model_selection import (
        train_test_split,  # lazy: scikit-learn (~0.5 s) only to make a new split
    )

    df = load_dataset(settings)
    idx = list(range(len(df)))
    train, holdout = train_test_split(idx, test_size=settings.test_size, stratify=df[TARGET],
                                      random_state=settings.seed)
    split = Split(sorted(int(i) for i in train), sorted(int(i) for i in holdout), settings.seed,
                  settings.test_size, digest)
    if persist:
        atomic_write_json(settings.split_path, split.__dict__)
    return split


def load_split(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) frames of the persisted split, each with ``class`` and the 22 features."""
    split = make_split(settings)
    df = load_dataset(settings)
    return df.iloc[split.train].reset_index(drop=True), df.iloc[split.holdout].reset_index(drop=True)


def synthetic_frame(n: int = 200, seed: int = 0, *, with_class: bool = True) -> pd.DataFrame:
    """A small random frame of valid codes (for tests and demos that need no real rows).

    The class follows a simple rule on odor and spore-print color so that a model can learn it.
    """
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f: rng.choice(list(CODES[f]), size=n) for f in FEATURES})
    if with_class:
        poisonous = df["odor"].isin(["f", "y", "p", "c", "m", "s"]) | (df["spore-print-color"] == "r")
        df.insert(0, TARGET, np.where(poisonous, POISONOUS, EDIBLE))
    return df


SAMPLE_ROWS = 20


def training_sample(settings: Settings, n: int = SAMPLE_ROWS, *, offset: int = 0) -> pd.DataFrame:
    """``n`` rows of the training split (never the holdout), half edible and half poisonous, spread evenly
    over it and interleaved, with ``class``; ``offset`` picks a different set of rows."""
    df = load_dataset(settings)
    try:
        split = make_split(settings, persist=False)
    except DataError:  # split.json is of the previous dataset: the split `train --resplit` will make
        split = make_split(settings, force=True, persist=False)
    train = df.iloc[split.train].reset_index(drop=True)
    parts = []
    for label in sorted(train[TARGET].unique()):
        part = train[train[TARGET] == label]
        want = n // 2 if len(parts) == 0 else n - n // 2
        step = max(1, len(part) // max(1, want))
        parts.append(part.iloc[offset % step::step].head(want).reset_index(drop=True))
    mixed = pd.concat(parts, keys=range(len(parts))).swaplevel().sort_index(kind="stable")
    return mixed.reset_index(drop=True)[COLUMNS]


def write_samples(settings: Settings) -> list[Path]:
    """data/samples/sample_labelled.csv and sample_unlabelled.csv (20 training rows each, different rows),
    for a first try of the CLI, the API and the dashboard. A dataset too small to split gets none (warned)."""
    try:
        labelled = training_sample(settings)
        unlabelled = training_sample(settings, offset=1).drop(columns=[TARGET])
    except ValueError as exc:  # e.g. a class with a single row cannot be split
        warnings.warn(f"no sample files written: {exc}", stacklevel=2)
        return []
    folder = settings.dataset_path.parent / "samples"
    out = []
    for name, frame in (("sample_labelled.csv", labelled), ("sample_unlabelled.csv", unlabelled)):
        path = folder / name
        atomic_write_bytes(path, frame.to_csv(index=False, lineterminator="\n").encode())
        out.append(path)
    return out

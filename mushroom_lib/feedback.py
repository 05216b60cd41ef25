"""The feedback store: ``data/prod_data.csv``, appended under a file lock, flushed and fsynced.

A torn last line (a crash mid-append) is detected, moved to a quarantine file with a warning, and never
reaches a reader, the retrain or a report.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

import pandas as pd
from filelock import FileLock

from .schema import FEATURES
from .settings import Settings

PROD_COLUMNS = [*FEATURES, "target", "prediction", "p_poisonous", "model_version", "timestamp", "source"]
_HEADER = (",".join(PROD_COLUMNS) + "\n").encode()


class FeedbackStore:
    """Append-only CSV of labelled production rows."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path: Path = settings.prod_path
        self.quarantine_path: Path = settings.quarantine_path
        self._lock: FileLock | None = None

    def lock(self) -> FileLock:
        """The one lock around appends and the retrain decision.

        One FileLock object per store: re-entrant within a thread, exclusive across threads (each
        thread holds its own descriptor) and across processes.
        """
        if self._lock is None:
            self.settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.settings.lock_path))
        return self._lock

    # ------------------------------------------------------------- repair
    def _quarantine(self, lines: list[bytes], why: str) -> None:
        self.quarantine_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.quarantine_path, "ab") as fh:
            for line in lines:
                fh.write(line.rstrip(b"\r\n") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        warnings.warn(f"{self.path}: {len(lines)} damaged line(s) ({why}) moved to {self.quarantine_path}",
                      stacklevel=3)

    def repair(self) -> int:
        """Move a torn last line (no final newline) to quarantine; caller holds the lock. Returns lines moved."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size == 0:
            return 0
        with open(self.path, "rb+") as fh:
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return 0
            # find the start of the torn line
            block = min(size, 1 << 16)
            fh.seek(size - block)
            tail = fh.read(block)
            cut = tail.rfind(b"\n")
            start = size - block + cut + 1 if cut >= 0 else 0
            fh.seek(start)
            torn = fh.read()
            self._quarantine([torn], "torn last line, probably a crash during an append")
            fh.truncate(start)
            fh.flush()
            os.fsync(fh.fileno())
        return 1

    # ------------------------------------------------------------- writing
    def append(self, rows: pd.DataFrame) -> int:
        """Append rows (PROD_COLUMNS) durably; caller holds ``lock()``. Returns the number written."""
        if len(rows) == 0:
            return 0
        body = rows[PROD_COLUMNS].to_csv(index=False, header=False, lineterminator="\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repair()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size == 0:
                body = _HEADER + body
            view = memoryview(body)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        return len(rows)

    # ------------------------------------------------------------- reading
    def read(self) -> pd.DataFrame:
        """All complete rows; damaged lines are quarantined (under the lock) and skipped."""
        if not self.path.exists():
            return pd.DataFrame(columns=PROD_COLUMNS)
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            with self.lock():
                self.repair()
            raw = self.path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return pd.DataFrame(columns=PROD_COLUMNS)
        good, bad = [], []
        for rec in reader:
            if len(rec) == len(PROD_COLUMNS):
                good.append(rec)
            elif rec:
                bad.append(",".join(rec).encode())
        if bad:
            warnings.warn(f"{self.path}: skipped {len(bad)} line(s) with the wrong number of fields", stacklevel=2)
        df = pd.DataFrame(good, columns=header if len(header) == len(PROD_COLUMNS) else PROD_COLUMNS, dtype=object)
        df["p_poisonous"] = pd.to_numeric(df["p_poisonous"], errors="coerce")
        return df

    def count(self) -> int:
        """Number of complete data rows (fast: counts newlines)."""
        try:
            with open(self.path, "rb") as fh:
                n = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        except FileNotFoundError:
            return 0
        return max(0, n - 1)

"""The feedback store: ``data/prod_data.csv``, appended under a file lock, flushed and fsynced.

Every row has a stable ``feedback_id`` (1, 2, ... in file order) and its ``source``; a small summary
(``artifacts/feedback_index.json``: rows, last id, counts per source, contradictions) is updated on each
append and checked against the file's size and mtime, so a hand-edited file is detected and summarised
again. Exclusions live in an append-only log beside the file (``prod_data.exclusions.jsonl``); the file
itself stays append-only. A torn last line (a crash mid-append) is moved to a quarantine file with a
warning and never reaches a reader, the retrain or a report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd
from filelock import FileLock

from ..core.fileio import atomic_writer, read_json
from ..core.settings import Settings
from ..data.schema import FEATURES

PROD_COLUMNS = [*FEATURES, "target", "prediction", "p_poisonous", "model_version", "timestamp", "source",
                "feedback_id"]
OLD_COLUMNS = PROD_COLUMNS[:-1]  #: the layout before feedback ids (upgraded in place, once)
_HEADER = (",".join(PROD_COLUMNS) + "\n").encode()


class FeedbackStore:
    """Append-only CSV of labelled production rows, its summary and its exclusion log."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path: Path = settings.prod_path
        self.quarantine_path: Path = settings.quarantine_path
        self.exclusions_path: Path = settings.data_dir / "prod_data.exclusions.jsonl"
        self.index_path: Path = settings.artifacts_dir / "feedback_index.json"
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

    # ------------------------------------------------------------- upgrade
    def upgrade(self) -> bool:
        """Give a file from before feedback ids its ids (1.. in file order), atomically; caller holds the lock."""
        try:
            with open(self.path, "rb") as fh:
                first = fh.readline()
        except FileNotFoundError:
            return False
        if first.rstrip(b"\r\n") != (",".join(OLD_COLUMNS)).encode():
            return False
        self.repair()
        with open(self.path, "rb") as src, atomic_writer(self.path) as out:
            src.readline()
            out.write(_HEADER)
            n = 0
            for line in src:
                line = line.rstrip(b"\r\n")
                if line:
                    n += 1
                    out.write(line + b"," + str(n).encode() + b"\n")
        self.index_path.unlink(missing_ok=True)
        return True

    # ------------------------------------------------------------- summary
    def _stamp(self) -> list[int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return [0, 0]
        return [st.st_size, st.st_mtime_ns]

    def _index(self) -> dict | None:
        """The saved summary when it still describes the file (same size and mtime), else None."""
        try:
            idx = read_json(self.index_path, None)
        except ValueError:
            return None
        ok = isinstance(idx, dict) and idx.get("stamp") == self._stamp() and "last_id" in idx
        return idx if ok else None

    def _save_index(self, idx: dict) -> None:
        """Replace the summary whole (renamed into place, not fsynced: a summary lost in a crash no longer
        matches the file's stamp and is rebuilt)."""
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_name(f".{self.index_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(idx))
        os.replace(tmp, self.index_path)

    def summary(self, contradicting: Callable[[pd.DataFrame], int] | None = None) -> dict:
        """rows, last_id, sources {name: rows}, contradictions: from the index when it matches the file,
        else rebuilt from one full read (a hand-edited or upgraded file) and saved."""
        idx = self._index()
        if idx is not None:
            return idx
        try:
            with self.lock():
                self.repair()
                self.upgrade()
                return self._rebuild(contradicting)
        except PermissionError:  # a read-only home: summarised in memory, nothing written
            return self._rebuild(contradicting, save=False)

    def _rebuild(self, contradicting, save: bool = True) -> dict:
        df = self.read(include_excluded=True)
        ids = df["feedback_id"]
        idx = {"stamp": self._stamp(), "rows": len(df), "last_id": int(ids.max()) if len(df) else 0,
               "sources": {str(k): int(v) for k, v in df["source"].value_counts().items()},
               "contradictions": int(contradicting(df)) if contradicting and len(df) else 0}
        if save:
            self._save_index(idx)
        return idx

    # ------------------------------------------------------------- writing
    def append(self, rows: pd.DataFrame, *, contradicting: int = 0,
               counter: Callable[[pd.DataFrame], int] | None = None) -> int:
        """Append rows durably with the next feedback ids; caller holds ``lock()``. Returns the number written."""
        return len(self.append_ids(rows, contradicting=contradicting, counter=counter))

    def append_ids(self, rows: pd.DataFrame, *, contradicting: int = 0,
                   counter: Callable[[pd.DataFrame], int] | None = None) -> list[int]:
        """Append rows durably with the next feedback ids; caller holds ``lock()``. Returns the ids written.

        ``contradicting`` (how many of ``rows`` disagree with the dataset) goes into the summary; ``counter``
        recounts the whole file when the summary must be rebuilt first."""
        if len(rows) == 0:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repair()
        self.upgrade()
        idx = self.summary(counter)
        first = int(idx["last_id"]) + 1
        out = rows.copy()
        out["feedback_id"] = range(first, first + len(rows))
        body = out[PROD_COLUMNS].to_csv(index=False, header=False, lineterminator="\n").encode()
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
        sources = dict(idx["sources"])
        for name, n in out["source"].astype(str).value_counts().items():
            sources[name] = sources.get(name, 0) + int(n)
        self._save_index({"stamp": self._stamp(), "rows": idx["rows"] + len(rows), "last_id": first + len(rows) - 1,
                          "sources": sources, "contradictions": idx["contradictions"] + int(contradicting)})
        return list(range(first, first + len(rows)))

    # ------------------------------------------------------------- exclusions
    def exclusion_events(self) -> list[dict]:
        """The exclusion log, oldest first (each: action exclude|include, ids, reason, who, when)."""
        try:
            text = self.exclusions_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        events = []
        for line in text.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a torn last line from a crash: that event never happened
        return events

    def excluded(self) -> dict[int, dict]:
        """feedback_id -> the exclude event in force for it (the log replayed)."""
        out: dict[int, dict] = {}
        for ev in self.exclusion_events():
            for i in ev.get("ids", []):
                if ev.get("action") == "exclude":
                    out[int(i)] = ev
                else:
                    out.pop(int(i), None)
        return out

    def log_exclusion(self, event: dict) -> None:
        """Append one event to the exclusion log durably; caller holds ``lock()``."""
        self.exclusions_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.exclusions_path, "ab") as fh:
            fh.write((json.dumps(event, sort_keys=True) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------- reading
    def read(self, include_excluded: bool = False) -> pd.DataFrame:
        """Complete rows (excluded rows left out unless asked); damaged lines are quarantined and skipped."""
        if not self.path.exists():
            return pd.DataFrame(columns=PROD_COLUMNS)
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            with self.lock():
                self.repair()
            raw = self.path.read_bytes()
        df, old = _parse_fast(raw)
        if df is None:  # a damaged or unusual file: the record-by-record reader names what it skips
            df, old = self._parse_records(raw)
            if df is None:
                return pd.DataFrame(columns=PROD_COLUMNS)
        if old:
            df["feedback_id"] = range(1, len(df) + 1)
        df["feedback_id"] = pd.to_numeric(df["feedback_id"], errors="coerce").fillna(0).astype("int64")
        df["p_poisonous"] = pd.to_numeric(df["p_poisonous"], errors="coerce")
        if not include_excluded and len(df):
            gone = self.excluded()
            if gone:
                df = df[~df["feedback_id"].isin(list(gone))].reset_index(drop=True)
        return df

    def _parse_records(self, raw: bytes) -> tuple[pd.DataFrame | None, bool]:
        """Record by record: lines with the wrong number of fields are skipped with a warning."""
        reader = csv.reader(io.StringIO(raw.decode("utf-8", errors="replace"), newline=""))
        header = next(reader, None)
        if header is None:
            return None, False
        old = header == OLD_COLUMNS  # not upgraded yet: ids are the file order
        width = len(OLD_COLUMNS) if old else len(PROD_COLUMNS)
        good, bad = [], []
        for rec in reader:
            if len(rec) == width:
                good.append(rec)
            elif rec:
                bad.append(rec)
        if bad:
            warnings.warn(f"{self.path}: skipped {len(bad)} line(s) with the wrong number of fields", stacklevel=3)
        return pd.DataFrame(good, columns=OLD_COLUMNS if old else PROD_COLUMNS, dtype=object), old

    def count(self) -> int:
        """Number of complete data rows (from the summary when it matches the file)."""
        idx = self._index()
        if idx is not None:
            return int(idx["rows"])
        try:
            with open(self.path, "rb") as fh:
                n = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        except FileNotFoundError:
            return 0
        return max(0, n - 1)


def _parse_fast(raw: bytes) -> tuple[pd.DataFrame | None, bool]:
    """The usual case in one call of pandas' C parser: a well-formed file in either column layout. None when
    anything is unusual (a short or long line, a bad byte, an unknown header), for the careful reader."""
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8",
                         on_bad_lines="error", engine="c")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None, False
    header = list(df.columns)
    if header not in (PROD_COLUMNS, OLD_COLUMNS) or df.isna().to_numpy().any():
        return None, False
    return df.astype(object), header == OLD_COLUMNS

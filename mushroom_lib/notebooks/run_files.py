"""Housekeeping of notebook runs: a private folder and a liveness lock per run, leftovers of killed runs,
the bounded history in reports/ (MUSHROOM_REPORTS_KEEP) and reports/last_report.json.

A run holds an exclusive ``flock`` on its lock files for its whole life; the kernel dies with it, and
so does the lock: a file whose lock nobody holds belongs to a killed run and is removed by the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from ..core.fileio import atomic_write_json, read_json
from ..core.settings import Settings

RUN_PREFIX = "mushroom-run-"   #: private per-run folders in the temp dir (kernel IPC sockets, outcome)
STALE_SECONDS = 60             #: an unlocked run folder younger than this may be starting: left alone
KINDS = ("train", "report", "exploration")


def _hold(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created if needed), or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _abandoned(lock: Path) -> bool:
    """True when no live process holds ``lock`` (or it does not exist)."""
    if not lock.exists():
        return True
    fd = _hold(lock)
    if fd is None:
        return False
    os.close(fd)
    return True


class Run:
    """One notebook run: ``token``, a private 0700 folder ``dir`` (IPC sockets, outcome file), both locked."""

    def __init__(self, runs_dir: Path):
        self.token = uuid.uuid4().hex[:12]
        self.runs_dir = runs_dir
        self.lock_path = runs_dir / f".run-{self.token}.lock"
        self.dir = Path(tempfile.gettempdir()) / f"{RUN_PREFIX}{self.token}"
        self._fds: list[int] = []

    @property
    def outcome_path(self) -> Path:
        return self.dir / "outcome.json"

    def __enter__(self) -> "Run":
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        for lock in (self.dir / "run.lock", self.lock_path):
            self._fds.append(_hold(lock))
        return self

    def __exit__(self, *exc) -> None:
        for fd in self._fds:
            os.close(fd)
        self.lock_path.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def clean_leftovers(settings: Settings) -> list[Path]:
    """Remove what killed runs left: ``*-running*.ipynb`` and ``.run-*.lock`` in reports/runs/ whose run
    holds no lock, and unlocked run folders in the temp dir. Returns what was removed."""
    runs = settings.runs_dir
    removed: list[Path] = []
    for path in sorted(runs.glob("*-running*.ipynb")):
        token = path.stem.split("-running-", 1)[1].split("-", 1)[0] if "-running-" in path.stem else ""
        if not token or _abandoned(runs / f".run-{token}.lock"):
            path.unlink(missing_ok=True)
            removed.append(path)
    for lock in sorted(runs.glob(".run-*.lock")):
        if _abandoned(lock):
            lock.unlink(missing_ok=True)
            removed.append(lock)
    for folder in Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_uid == os.getuid() and \
                    time.time() - folder.stat().st_mtime > STALE_SECONDS and _abandoned(folder / "run.lock"):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def _newest_first(paths: Iterator[Path]) -> list[Path]:
    """Newest first: file names start with the UTC time; same-second names by modification time."""
    def key(p: Path):
        with contextlib.suppress(OSError):
            return (p.name[:16], p.stat().st_mtime)
        return (p.name[:16], 0.0)

    return sorted(paths, key=key, reverse=True)


def prune_history(settings: Settings) -> list[Path]:
    """Keep the newest ``settings.reports_keep`` HTML reports and, per kind, executed notebooks.

    Workspace snapshots, running notebooks and last_report.json are never touched. Returns what was removed.
    """
    keep = settings.reports_keep
    groups = [list(settings.reports_dir.glob("*-monitoring.html"))]
    groups += [[p for p in settings.runs_dir.glob(f"*-{kind}-*.ipynb") if "-running" not in p.name]
               for kind in KINDS]
    removed = []
    for group in groups:
        for path in _newest_first(iter(group))[keep:]:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_last_report(settings: Settings, record: dict) -> None:
    """reports/last_report.json, replaced atomically (contract #5 of TEAM.md)."""
    atomic_write_json(settings.last_report_path, record)


def read_last_report(settings: Settings) -> dict | None:
    """The last report run's record (status ok|failed, model_version, rows, started, finished, reason,
    html, notebook, ...), or None before the first run."""
    return read_json(settings.last_report_path, None)

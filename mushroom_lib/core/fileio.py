"""Durable file writes: temporary file in the same folder, flush, fsync, os.replace, fsync the folder.

Every file the workbench writes (records, pointers, reports, outputs) goes through here, so a crash leaves
the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

log = logging.getLogger("mushroom_lib")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a file system that cannot sync a folder is logged, not fatal: the
    rename itself is atomic, only its durability across a power loss is then the file system's)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        log.warning("cannot open %s to make a rename durable: %s", folder, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.warning("cannot fsync %s after a rename: %s", folder, exc)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, buffering: int = -1) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` only if the block exits cleanly.

    Readers see the old file or the whole new one, never a part; on an error nothing is left behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb", buffering=buffering) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomic write of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Atomic write of pretty JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path, default: object = None) -> object:
    """JSON content of ``path``, or ``default`` when it does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def package_folder(package: str) -> Path:
    """The folder holding a package's files, found with importlib.resources (the notebooks and the dashboard
    page ship as the packages ``mushroom_lib.notebooks.files`` and ``mushroom_lib.dashboard.files``; Voila and
    papermill read them from disk). FileNotFoundError (one sentence) when the package is missing or zipped."""
    import importlib.resources  # lazy: only the notebook runner and the dashboard server need it

    try:
        folder = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise FileNotFoundError(f"{package} is not installed; reinstall mushroom-workbench (its wheel ships "
                                "the notebooks and the dashboard page)") from None
    if not isinstance(folder, Path):
        raise FileNotFoundError(f"{package} is not a folder on disk ({folder}); install mushroom-workbench "
                                "with pip, unzipped")
    return folder

"""The background threads of a batch run: a reader that works ahead of the caller and a writer behind it.

numpy's table look-ups, pyarrow's parser and the write system call free the GIL, so on two cores reading,
scoring and writing overlap. Each thread stops on any exit of the caller and hands its exception over.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from typing import Callable, Iterable, Iterator

_DONE = object()


def prefetch(items: Iterable, depth: int = 1) -> Iterator:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead; its exception is raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 (not swallowed: the consumer raises it in its own thread)
            put(exc)
        finally:
            if hasattr(items, "close"):
                items.close()  # a generator left early closes its files here, in its own thread

    t = threading.Thread(target=work, name="mushroom-batch-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


@contextlib.contextmanager
def background_writes(out, depth: int = 2, timed: dict | None = None,
                      sync: bool = False) -> Iterator[Callable[[bytes | str], None]]:
    """A ``write(data)`` that writes (text as UTF-8) in a background thread; the write system call frees the
    GIL, so writing overlaps with the next chunk's work. A write error is raised in the caller's thread.
    ``timed``, when given, gets the seconds spent writing under "write" (they overlap the caller's work).
    ``sync``: each write is flushed to disk (fdatasync) as it goes, so the final fsync has little left."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    failed: list[BaseException] = []
    done = object()

    def work():
        while True:
            item = q.get()
            if item is done:
                return
            if not failed:
                try:
                    t = time.perf_counter()
                    out.write(item.encode("utf-8") if isinstance(item, str) else item)
                    if sync:
                        out.flush()
                        os.fdatasync(out.fileno())
                    if timed is not None:
                        timed["write"] = timed.get("write", 0.0) + time.perf_counter() - t
                except BaseException as exc:  # noqa: BLE001 (raised in the caller's thread at its next write)
                    failed.append(exc)

    def write(data: bytes | str) -> None:
        if failed:
            raise failed[0]
        q.put(data)

    t = threading.Thread(target=work, name="mushroom-batch-writer", daemon=True)
    t.start()
    try:
        yield write
    finally:
        q.put(done)
        t.join()
    if failed:
        raise failed[0]

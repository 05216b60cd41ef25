"""``mushroom api`` in a child process on a free 127.0.0.1 port, for tests and benchmarks.

Started in its own session and stopped with its whole process group (uvicorn's workers included);
readiness is polled through ``/ready``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..ports import free_port


class ApiProcess:
    """A running ``mushroom --home HOME api --workers N`` (use as a context manager)."""

    def __init__(self, home: str | Path, *, workers: int = 1, port: int | None = None, env: dict | None = None,
                 log_path: str | Path | None = None, extra_args: list[str] | None = None):
        self.port = port or free_port()
        self.cmd = [sys.executable, "-m", "mushroom_lib.cli", "--home", str(home), "api", "--port", str(self.port),
                    "--workers", str(workers), *(extra_args or [])]
        self.env = {**os.environ, "MUSHROOM_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "ApiProcess":
        """Start and wait until ``/ready`` answers 200 (raises with the log's tail otherwise)."""
        out = subprocess.DEVNULL
        if self.log_path:
            self._log = open(self.log_path, "wb")
            out = self._log
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mushroom api exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)  # polling interval while the server starts, not synchronisation
        self.stop()
        raise TimeoutError(f"mushroom api not ready after {timeout:.0f}s: {self.log_tail()}")

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def log_tail(self, n: int = 2000) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server's process group (master and workers), SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # a worker left behind by a master that died first
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "ApiProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""Child servers for the tests and benchmarks (``mushroom dashboard``, plain Voila, ``mushroom api``) and
Debian's chromium: one helper starts each in its own session, polls it until ready and stops its process group.

Not part of the installed package: ``mushroom_lib`` never needs a browser or a server it did not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mushroom_lib.core.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "dashboards" / "app.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
POOL_FILLED = "Kernel pool of app.ipynb is filled"


def chromium_path() -> str | None:
    """Debian's chromium (Playwright's own browser download is not used)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class ServerProcess:
    """A server (dashboard, plain Voila or API) in its own process group on 127.0.0.1 (a context manager).

    Ready when its port accepts a connection, or, with ``ready_path``, when that path answers 200.
    """

    def __init__(self, cmd: list[str], *, port: int, env: dict | None = None, log_path: str | Path | None = None,
                 ready_path: str | None = None, start_timeout: float = 60.0, stop_timeout: float = 15.0,
                 cwd: str | Path | None = None):
        self.cmd, self.port, self.cwd = cmd, port, cwd
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.ready_path, self.start_timeout, self.stop_timeout = ready_path, start_timeout, stop_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    @classmethod
    def dashboard(cls, home: str | Path, port: int | None = None, *, log_path=None, cull_seconds: int | None = None,
                  env: dict | None = None, args: list[str] | None = None) -> "ServerProcess":
        """``mushroom dashboard`` for ``home`` on a free port (extra ``env`` and CLI ``args`` if given)."""
        port = port or free_port()
        full_env = {"MUSHROOM_HOME": str(home), "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        if cull_seconds:
            full_env["MUSHROOM_DASHBOARD_CULL_SECONDS"] = str(cull_seconds)
        return cls([sys.executable, "-m", "mushroom_lib.cli", "--home", str(home), "dashboard", "--port", str(port),
                    *(args or [])], port=port, env=full_env, log_path=log_path)

    @classmethod
    def plain_voila(cls, home: str | Path, port: int | None = None, *, log_path=None) -> "ServerProcess":
        """Voila with its defaults serving the same notebook (the benchmark's baseline)."""
        port = port or free_port()
        env = {"MUSHROOM_HOME": str(home), "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
        return cls([sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
                    "--Voila.ip=127.0.0.1", "--Voila.port_retries=0",
                    "--MappingKernelManager.cull_idle_timeout=30", "--MappingKernelManager.cull_interval=5"],
                   port=port, env=env, log_path=log_path)

    @classmethod
    def api(cls, home: str | Path, *, workers: int = 1, port: int | None = None, env: dict | None = None,
            log_path=None, args: list[str] | None = None) -> "ServerProcess":
        """``mushroom api --workers N`` for ``home`` on a free port, ready once ``/ready`` answers 200."""
        port = port or free_port()
        full_env = {"MUSHROOM_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})}
        return cls([sys.executable, "-m", "mushroom_lib.cli", "--home", str(home), "api", "--port", str(port),
                    "--workers", str(workers), *(args or [])], port=port, env=full_env, log_path=log_path,
                   ready_path="/ready", start_timeout=90.0, stop_timeout=30.0)  # uvicorn's graceful 30 s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _ready(self) -> bool:
        """One readiness probe: the port accepts, or ``ready_path`` answers 200."""
        try:
            if self.ready_path is None:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            with urllib.request.urlopen(self.url.rstrip("/") + self.ready_path, timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):  # not listening (or not ready: 503) yet
            return False

    def start(self, timeout: float | None = None) -> "ServerProcess":
        """Start and wait until ready (raises with the log's tail if it exits or the timeout passes)."""
        timeout = self.start_timeout if timeout is None else timeout
        out = subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")
            out = self._log
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            if self._ready():
                return self
            time.sleep(0.2)  # polling a server that is not ready yet, not synchronisation
        self.stop()
        raise TimeoutError(f"server not ready on {self.port} after {timeout}s: {self.log_tail()}")

    def get_json(self, path: str) -> dict:
        """GET ``path`` and decode the JSON answer."""
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=10) as resp:
            return json.loads(resp.read())

    def log_text(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 2000) -> str:
        return self.log_text()[-n:]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(text) >= count:
                return True
            time.sleep(0.2)  # polling the log file
        return False

    def kernel_pids(self) -> list[int]:
        """Pids of the server's live kernel processes (children running ipykernel)."""
        if self.proc is None:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                if ppid != self.proc.pid:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if b"ipykernel" in fh.read():
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
        return out

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the server (Voila shuts its kernels down, uvicorn its workers), SIGKILL its process group
        if it lingers, then whatever of the group outlived it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # the group is empty: nothing outlived the server
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None

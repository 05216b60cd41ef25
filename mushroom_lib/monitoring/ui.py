"""`mushroom ui`: the `evidently ui` server on the home's workspace, telemetry off, read-only.

* no token (the default): Evidently itself on 127.0.0.1 (loopback only, as before);
* a token (``--token`` or MUSHROOM_UI_TOKEN): Evidently on a private 127.0.0.1 port and the token-checking
  proxy of :mod:`.ui_proxy` on ``--host``:``--port``; any address beyond loopback needs one, since
  Evidently's own secret guards writes only and anyone reaching its port would read every report.

Evidently always gets a random secret (EVIDENTLY_SECRET) that nobody is told: the UI cannot write, the
workbench writes its snapshots into the workspace itself. ``serve_ui`` runs in the foreground and stops
Evidently with itself (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from ..core.ports import ensure_port_free, free_port, is_loopback
from ..core.settings import Settings

STOP_TIMEOUT = 15


def ui_command(workspace: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The `evidently ui` command line for the workspace (this interpreter's Evidently)."""
    return [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace), "--host", host,
            "--port", str(port)]


def check_ui_host(host: str, token: str | None) -> None:
    """Anything but loopback needs a token (ValueError, one sentence)."""
    if not is_loopback(host) and not token:
        raise ValueError(f"refusing to serve the monitoring UI on {host} without a token: pass --token or set "
                         "MUSHROOM_UI_TOKEN (every request will need it), or keep the default --host 127.0.0.1")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_ui(settings: Settings, port: int = 8082, *, host: str = "127.0.0.1", token: str | None = None) -> int:
    """Serve the workspace's UI until interrupted; returns an exit code (Evidently's, if it stopped first)."""
    token = token or settings.ui_token
    check_ui_host(host, token)
    if is_loopback(host):
        ensure_port_free(port)  # one sentence instead of a bind traceback
    workspace = settings.workspace_dir
    workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_SECRET": secrets.token_urlsafe(32)}
    if not token:
        print(f"evidently ui: http://127.0.0.1:{port} (workspace {workspace}); Ctrl-C stops it", file=sys.stderr)
        return _run_plain(ui_command(workspace, port, "127.0.0.1"), env)
    from .ui_proxy import serve_proxy  # lazy: tornado only behind a token

    inner = free_port()
    proc = subprocess.Popen(ui_command(workspace, inner, "127.0.0.1"), env=env)
    print(f"evidently ui: http://{host}:{port}/?token=… behind a token check (Evidently on 127.0.0.1:{inner}, "
          f"workspace {workspace}); Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        return serve_proxy(host, port, f"http://127.0.0.1:{inner}", token, proc)
    finally:
        _stop(proc)


def _run_plain(cmd: list[str], env: dict) -> int:
    """Evidently in the foreground, SIGTERM forwarded to it."""
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum, _frame):
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)

"""The `evidently ui` server on the home's workspace: bound to 127.0.0.1, telemetry off.

``serve_ui`` runs it in the foreground for `mushroom ui` and forwards Ctrl-C / SIGTERM to it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ..core.ports import ensure_port_free
from ..core.settings import Settings


def ui_command(workspace: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The `evidently ui` command line for the workspace (this interpreter's Evidently)."""
    return [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace), "--host", host,
            "--port", str(port)]


def serve_ui(settings: Settings, port: int = 8082) -> int:
    """Run `evidently ui` on reports/workspace, bound to 127.0.0.1, telemetry off; returns its exit code."""
    host = "127.0.0.1"
    ensure_port_free(port)
    workspace = settings.workspace_dir
    workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    print(f"evidently ui: http://{host}:{port} (workspace {workspace}); Ctrl-C stops it", file=sys.stderr)
    proc = subprocess.Popen(ui_command(workspace, port, host), env=env)

    def forward(signum, _frame):
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)

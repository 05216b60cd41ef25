"""``mushroom api``: uvicorn serving ``app_from_env`` with N workers, 127.0.0.1 unless a key guards it.

The home, the key rule and the body cap reach the workers through the environment. Refuses (ValueError,
one sentence: exit 2 from the CLI) to listen beyond loopback without MUSHROOM_API_KEY. Each worker runs
:mod:`.protocol` (head size and count limits, head and body deadlines, a connection cap).
"""

from __future__ import annotations

import os

from ..core.ports import ensure_port_free, is_loopback
from ..core.settings import Settings, env_name


def check(settings: Settings, host: str, port: int, workers: int, key_for_reads: bool, max_mb: float | None) -> None:
    """Raise ValueError (one sentence) for a setting that must not start."""
    key = settings.api_key
    if not is_loopback(host) and not key:
        raise ValueError(f"refusing to listen on {host} without a key: set MUSHROOM_API_KEY (clients send it "
                         "as X-API-Key) or keep the default --host 127.0.0.1")
    if key_for_reads and not key:
        raise ValueError("--key-for-reads needs MUSHROOM_API_KEY to be set")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    if max_mb is not None and max_mb <= 0:
        raise ValueError(f"--max-mb must be above 0, not {max_mb}")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")


def raise_open_files_limit(needed: int) -> None:
    """Lift this process's soft open-files limit towards its hard one, so that the connection cap (per
    worker; the workers inherit the limit) is reached before the process runs out of descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          key_for_reads: bool = False, max_mb: float | None = None) -> int:
    """Serve the API until interrupted; returns uvicorn's exit status."""
    import uvicorn

    check(settings, host, port, workers, key_for_reads, max_mb)
    if host == "127.0.0.1":
        ensure_port_free(port)  # one sentence instead of uvicorn's bind traceback
    # the workers build their settings from the environment: hand them what this command was told
    os.environ[env_name("home")] = str(settings.home)
    os.environ[env_name("api_key_for_reads")] = "1" if key_for_reads else "0"
    if max_mb is not None:
        os.environ[env_name("api_max_bytes")] = str(int(max_mb * 1024 * 1024))
    from .protocol import uvicorn_options  # lazy: uvicorn's protocol classes

    raise_open_files_limit(settings.api_max_connections + 256)  # + the home's files, the worker, logs
    # the protocol's limits (head size and count, head and body deadlines, connection cap) come from each
    # worker's settings, read from this environment
    uvicorn.run("mushroom_lib.api:app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_level="info", timeout_graceful_shutdown=30,
                **uvicorn_options(settings.api_max_connections, settings.api_keepalive_timeout))
    return 0

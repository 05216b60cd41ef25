"""Loopback ports for the servers the workbench starts (dashboard, evidently ui), and what counts as loopback.

A free port is asked of the kernel on 127.0.0.1; nothing here binds another interface.
"""

from __future__ import annotations

import ipaddress
import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ensure_port_free(port: int) -> None:
    """Raise OSError (one line for the CLI) if ``port`` on 127.0.0.1 is not a free TCP port."""
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, int(port)))
        except OSError:
            raise OSError(f"port {port} on {HOST} is already in use; choose another with --port") from None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): the servers need no key or token there."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False

"""uvicorn's httptools protocol with the limits a server facing a network needs, which uvicorn lacks.

uvicorn bounds neither the request head (a 200 MB header was read, then answered, after 59 s) nor the time
a client takes to send it (300 slow-loris connections stayed open for good), nor a trickled body. Here, per
connection, in the worker's event loop (no thread, no task per connection):

* the request head (request line and headers) is refused with 431 past ``api_max_header_bytes`` bytes, counted
  as they arrive (httptools would buffer an unfinished header whatever its size), or past ``api_max_headers``
  headers;
* the head must arrive within ``api_header_timeout`` seconds of the connection or of the request's first byte,
  and the body within ``api_body_timeout`` seconds of the head: else 408 and the connection is closed;
* an idle kept-alive connection is closed after ``api_keepalive_timeout`` seconds (uvicorn's own timer);
* past ``api_max_connections`` open connections in this worker a new one gets 503 and is closed at once
  (uvicorn's ``limit_concurrency`` is set to the same number: it answers 503 past that many requests).

Every refusal is one sentence in a JSON body, like every other error of the API, with ``Connection: close``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000


@functools.lru_cache(maxsize=1)
def limits() -> Limits:
    """This worker's limits, from its settings (``mushroom api`` hands them on through the environment)."""
    from ..core.settings import (
        get_settings,  # the settings of the worker process, read once
    )

    s = get_settings()
    return Limits(s.api_max_header_bytes, s.api_max_headers, s.api_header_timeout, s.api_body_timeout,
                  s.api_max_connections)


class _LimitExceeded(Exception):
    """Raised inside a parser callback to stop parsing a request that broke a limit (answered already)."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with head size/count limits, head and body deadlines and a connection cap."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits()
        self._in_head = True      # between requests or inside a request's head
        self._head_bytes = 0      # bytes received while the current head is unfinished
        self._parsed_bytes = 0    # bytes of the current head's request line and headers, as parsed
        self._header_count = 0
        self._deadline = None     # the head's or the body's timer
        self._refused = False

    # ------------------------------------------------------------------ the connection
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, f"this server has {self.limits.max_connections} connections open, its limit; "
                              "try again in a moment")
            return
        self._arm(self.limits.header_timeout, "request head")

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)  # an unfinished head: every byte of it counts, parsed or not
        super().data_received(data)
        if self._in_head and not self._refused and self._head_bytes > self.limits.max_header_bytes:
            self._too_large()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a callback of ours stopped the parser: the answer is sent already
            super().send_400_response(msg)

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._header_count, self._parsed_bytes = True, 0, 0
        self._arm(self.limits.header_timeout, "request head")

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        self._check_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._parsed_bytes += len(name) + len(value) + 4
        self._check_head()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout, "request body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._head_bytes = 0  # the next request's head is counted afresh
        self._in_head = True
        super().on_message_complete()

    # ------------------------------------------------------------------ limits
    def _check_head(self) -> None:
        """In a parser callback: refuse, then stop the parser (httptools turns the exception into its
        HttpParserCallbackError; uvicorn's 400 answer to it is skipped, see send_400_response)."""
        if self._header_count > self.limits.max_headers:
            self._refuse(431, f"the request has more than {self.limits.max_headers} headers")
            raise _LimitExceeded
        if self._parsed_bytes > self.limits.max_header_bytes:
            self._too_large()
            raise _LimitExceeded

    def _too_large(self) -> None:
        self._refuse(431, f"the request line and headers are over {self.limits.max_header_bytes} bytes")

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.transport.close()  # an answer is under way: nothing more can be said
            return
        self._refuse(408, f"the {what} did not arrive within {seconds:g} s")

    def _refuse(self, status: int, sentence: str) -> None:
        """Answer ``status`` with one sentence and close the connection; the request, if any, is abandoned."""
        self._refused = True
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.response_complete = True  # the app (waiting for a body) sees a disconnect, sends nothing
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        body = json.dumps({"detail": sentence}).encode()
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, REASONS[status], len(body)))
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()


def uvicorn_options(max_connections: int, keepalive_timeout: float) -> dict:
    """What ``uvicorn.run`` gets besides the app: this protocol, no websockets, the caps and timers."""
    # uvicorn answers 503 once open connections (this one included) or running requests reach
    # limit_concurrency; connections past max_connections are turned away in connection_made
    return {"http": GuardedHttpToolsProtocol, "ws": "none", "limit_concurrency": max_connections + 1,
            "timeout_keep_alive": keepalive_timeout, "backlog": 2048}

"""A token-checking reverse proxy in front of `evidently ui` (tornado, which Jupyter brings along).

Evidently's own ``--secret`` guards writes only: anyone who reaches its port reads every report. So beyond
loopback (or whenever a token is given) `mushroom ui` runs Evidently on a private 127.0.0.1 port and this
proxy on the public address: every request needs the token, given once as ``?token=...`` (a signed cookie
carries it afterwards, and the token is taken out of the address bar by a redirect) or by programs in the
header ``Authorization: Bearer ...``. Anything else gets 403 and one sentence; nothing reaches Evidently.

The proxy forwards the method, path, query, body and end-to-end headers, and bounds what a client can send
(header size, body size, idle and body timeouts). Evidently itself is started with a random secret that
nobody knows, so the UI stays read-only (the workbench writes its snapshots to the workspace directly).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TOKEN_PARAM = "token"
COOKIE = "mushroom_ui"
#: hop-by-hop headers (RFC 9110 7.6.1) and the ones tornado sets itself: never forwarded either way
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length", "host", "authorization", "cookie",
                        "evidently-secret"})
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 20 * 1024 * 1024
UPSTREAM_TIMEOUT = 120.0
REFUSED = ("the monitoring UI needs its token: open it once as /?token=... (the token set in "
           "MUSHROOM_UI_TOKEN or given with --token), or send the header 'Authorization: Bearer ...'")


def token_matches(given: str | None, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def without_token(uri: str) -> str:
    """The request URI with the ``token`` query parameter removed."""
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != TOKEN_PARAM]
    return urlunsplit(("", "", parts.path or "/", urlencode(query), ""))


def make_app(upstream: str, token: str):
    """The tornado application forwarding authorised requests to ``upstream`` (http://127.0.0.1:PORT)."""
    import tornado.web

    # signed with a key made from the token: sessions survive a restart, and change when the token does
    secret = hmac.new(token.encode("utf-8"), b"mushroom-ui-cookie", hashlib.sha256).hexdigest()
    return tornado.web.Application([(r".*", _handler_class(), {"upstream": upstream.rstrip("/"), "token": token})],
                                   cookie_secret=secret, xsrf_cookies=False, compress_response=False)


def _handler_class():
    import tornado.web
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    class ProxyHandler(tornado.web.RequestHandler):
        """Check the token, then forward the request to Evidently and its answer back."""

        SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

        def initialize(self, upstream: str, token: str) -> None:
            self.upstream, self.token = upstream, token

        def _authorised(self) -> bool:
            scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() in ("bearer", "token") and token_matches(value.strip(), self.token):
                return True
            return self.get_signed_cookie(COOKIE, max_age_days=7) == b"ok"

        def _unavailable(self, why) -> None:
            self.set_status(502)
            self.finish({"detail": f"the monitoring UI behind this proxy is not answering ({why}); try again "
                                   "in a few seconds"})

        def _refuse(self) -> None:
            self.set_status(403)
            self.set_header("Content-Type", "application/json")
            self.finish({"detail": REFUSED})

        async def _forward(self) -> None:
            given = self.get_query_argument(TOKEN_PARAM, None)
            if given is not None:
                if not token_matches(given, self.token):
                    return self._refuse()
                self.set_signed_cookie(COOKIE, "ok", expires_days=7, httponly=True, samesite="Strict")
                if self.request.method in ("GET", "HEAD"):  # the token leaves the address bar and the history
                    return self.redirect(without_token(self.request.uri))
            elif not self._authorised():
                return self._refuse()
            headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in HOP_BY_HOP}
            body = self.request.body if self.request.method not in ("GET", "HEAD", "OPTIONS") else None
            request = HTTPRequest(self.upstream + without_token(self.request.uri), method=self.request.method,
                                  headers=headers, body=body, allow_nonstandard_methods=True, follow_redirects=False,
                                  decompress_response=False, request_timeout=UPSTREAM_TIMEOUT)
            try:
                response = await AsyncHTTPClient().fetch(request, raise_error=False)
            except OSError as exc:  # refused: Evidently is still starting, or gone
                return self._unavailable(exc)
            if response.code == 599:  # no answer in time
                return self._unavailable(response.error)
            self.set_status(response.code, response.reason)
            self.clear_header("Content-Type")
            for name, value in response.headers.get_all():
                if name.lower() not in HOP_BY_HOP and name.lower() != "set-cookie":
                    self.add_header(name, value)
            if self.request.method != "HEAD" and response.body:
                self.write(response.body)
            self.finish()

        get = head = post = put = patch = delete = options = _forward

    return ProxyHandler


def serve_proxy(host: str, port: int, upstream: str, token: str, child) -> int:
    """Serve the proxy on host:port until SIGTERM/SIGINT or until ``child`` (Evidently) exits; returns its
    exit code (0 when stopped by a signal)."""
    import asyncio
    import signal

    import tornado.httpserver

    async def main() -> int:
        server = tornado.httpserver.HTTPServer(make_app(upstream, token), max_header_size=MAX_HEADER_BYTES,
                                               max_body_size=MAX_BODY_BYTES, idle_connection_timeout=60,
                                               body_timeout=30)
        server.listen(port, address=host)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            while child.poll() is None:
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=1.0)
                    return 0
                except TimeoutError:  # a second without a signal: look at Evidently again
                    continue
            return child.returncode
        finally:
            server.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())

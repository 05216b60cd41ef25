"""The request-body size cap, as a small ASGI middleware: 413 before any route parses the body.

A declared Content-Length over the cap is refused before a byte of the body is read; a chunked body (no
length) is counted as it arrives and refused as soon as it passes the cap, so memory stays bounded.
"""

from __future__ import annotations

import json


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413 and one sentence."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value
                break
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await self._refuse(send, 400, "the Content-Length header is not a number")
            if declared > self.max_bytes:
                return await self._refuse(send, 413, self._too_large())
            return await self.app(scope, receive, send)  # the server delivers at most that many bytes
        return await self._counted(scope, receive, send)

    async def _counted(self, scope, receive, send):
        """No declared length (chunked): gather the body up to the cap, then hand it on in one piece."""
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                return await self._refuse(send, 413, self._too_large())
            chunks.append(body)
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return (f"the request body is over the {self.max_bytes / 1e6:g} MB size cap; send fewer rows per "
                "request (or start the server with a larger --max-mb)")

    @staticmethod
    async def _refuse(send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

"""Every error an API client can cause, as one JSON sentence ``{"detail": "..."}`` with a 4xx status.

Library errors map to statuses here (bad rows 422, unknown feedback ids 404, no model 503, ...); anything
unexpected becomes a 500 whose body names no path and carries no traceback. Paths in the home are shown relative.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("mushroom_lib.api")

MAX_SENTENCE = 300
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.@+-]+/)*[\w.@+-]+")


class ApiError(Exception):
    """An error with its HTTP status and the sentence to show."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def public_text(text: object, home=None) -> str:
    """One line, at most 300 characters, with paths in the home made relative and other paths hidden."""
    out = " ".join(str(text).split())
    if home is not None:
        root = str(home).rstrip("/")
        out = out.replace(root + "/", "").replace(root, ".")
    out = _ABSOLUTE_PATH.sub("<path>", out)
    return out if len(out) <= MAX_SENTENCE else out[: MAX_SENTENCE - 1] + "…"


def error_response(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_sentence(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "the request"
    more = f" ({len(errors)} problems in all)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'not valid')}{more}"


def install(app: FastAPI, home) -> None:
    """Register the handlers that turn exceptions into one-sentence JSON answers."""
    from ..data.dataset import DataError
    from ..data.schema import SchemaError
    from ..feedback.review import ReviewConflict, ReviewError, ReviewNotFound
    from ..registry.versions import RegistryError
    from ..service import NoChampionError

    def say(status: int):
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return error_response(status, public_text(exc, home))
        return handler

    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, public_text(exc.detail, home), exc.headers)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "the request was refused"
        return error_response(exc.status_code, public_text(detail, home), getattr(exc, "headers", None))

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, public_text(_validation_sentence(exc), home))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # a bug, not the client's doing: logged in full on the server, one neutral sentence to the client
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error ({exc.__class__.__name__}); the server log has the details")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(SchemaError, say(422))
    app.add_exception_handler(ReviewError, say(422))  # Starlette picks the handler nearest in the class's MRO:
    app.add_exception_handler(ReviewNotFound, say(404))  # nothing selected
    app.add_exception_handler(ReviewConflict, say(409))  # already so
    app.add_exception_handler(NoChampionError, say(503))
    app.add_exception_handler(DataError, say(503))
    app.add_exception_handler(RegistryError, say(409))
    app.add_exception_handler(Exception, unexpected)

"""GET /feedback, POST /feedback/exclude, POST /feedback/include: reviewing feedback over HTTP (``svc.feedback``).

A request the library refuses (ReviewError) writes nothing and is answered with its sentence (errors.py):
404 when nothing matches, 409 when the rows are already so, 422 when the request itself is wrong.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from .. import bodies, schemas
from ..config import get_config, get_service, require_read_key, require_write_key
from ..errors import ApiError
from ..openapi import errors, request_body

router = APIRouter(prefix="/feedback", tags=["feedback"])
MAX_PAGE = 10_000


def _plain(value):
    """A cell as JSON: numpy scalars as Python, NaN/None as null, timestamps as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        return _plain(value.item())
    return value if isinstance(value, (bool, int, float, str)) else str(value)


# feedback is stamped between these; a time outside selects the same rows and stays within pandas' range
_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(2262, 1, 1, tzinfo=timezone.utc)
_NOT_FOUND = {404: "no feedback row has these ids, or none matches the source and time"}


def _since(text: str | None) -> str | None:
    """An ISO 8601 time (a date, or a date and time; UTC unless it has an offset) for the library."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        shown = text[:40] + ("…" if len(text) > 40 else "")
        raise ApiError(422, f"since {shown!r} is not an ISO 8601 time like 2026-11-30 or 2026-11-30T12:00:00Z"
                       ) from None
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return min(max(when, _EARLIEST), _LATEST).isoformat()


def _who(request: Request) -> str:
    """Who the audit log names: the API, and whether the caller proved it holds the server's key."""
    return "api:key" if get_config(request).api_key else "api"


async def _body(request: Request, model):
    return bodies.parse_model(await request.body(), request.headers.get("content-type"), model)


@router.get("", summary="List feedback rows with their ids, sources and exclusions",
            response_model=schemas.FeedbackList, responses=errors(401, 422),
            dependencies=[Depends(require_read_key)])
def list_feedback(
        svc=Depends(get_service),
        source: str | None = Query(None, max_length=schemas.SOURCE_MAX, description="only rows from this source"),
        since: str | None = Query(None, max_length=schemas.SINCE_MAX, description=schemas.SINCE,
                                  json_schema_extra={"format": "date-time"}),
        contradicting: bool = Query(False, description="only rows whose label contradicts the dataset's"),
        excluded: bool | None = Query(None, description="only excluded (true) or only used (false) rows"),
        offset: int = Query(0, ge=0, description="rows to skip (oldest first)"),
        limit: int = Query(1000, ge=1, le=MAX_PAGE, description="rows to return at most")):
    """Rows oldest first: ``feedback_id``, ``source``, ``timestamp``, ``target``, ``prediction``,
    ``model_version``, ``contradicts``, ``excluded`` and, for excluded rows, ``excluded_reason``,
    ``excluded_by``, ``excluded_at``. ``total`` counts every matching row; page with ``offset``/``limit``."""
    frame = svc.feedback.list(source=source, since=_since(since), contradicting=contradicting, excluded=excluded)
    page = frame.iloc[offset:offset + limit]
    names = [str(c) for c in page.columns]
    rows = [{k: _plain(v) for k, v in zip(names, row)} for row in page.to_numpy(dtype=object).tolist()]
    return {"total": len(frame), "rows": rows}


@router.post("/exclude", summary="Keep feedback rows out of training (with a reason)",
             response_model=schemas.ReviewEvent, responses=errors(401, 404, 409, 413, 415, 422, reasons={
                 **_NOT_FOUND, 409: "every selected row is already excluded"}),
             openapi_extra=request_body(["ExcludeRequest"], csv=False,
                                        example={"source": "mallory", "reason": "labels were guesses"}),
             dependencies=[Depends(require_write_key)])
async def exclude(request: Request, svc=Depends(get_service)):
    """``{"ids": [...], "reason": "..."}`` or ``{"source": "...", "since": "...", "reason": "..."}``. The rows
    stay in prod_data.csv; the next retrain leaves them out and they no longer count toward K. Answers the
    event written to the audit log. Nothing is written when the ids are unknown or nothing matches (404), the
    rows are all excluded already (409) or the request is not valid, e.g. no reason (422)."""
    body = await _body(request, schemas.ExcludeRequest)
    return await run_in_threadpool(svc.feedback.exclude, body.ids, source=body.source, since=_since(body.since),
                                   reason=body.reason, who=_who(request))


@router.post("/include", summary="Use excluded feedback rows for training again",
             response_model=schemas.ReviewEvent, responses=errors(401, 404, 409, 413, 415, 422, reasons={
                 **_NOT_FOUND, 409: "a row named is not excluded"}),
             openapi_extra=request_body(["IncludeRequest"], csv=False, example={"ids": [3]}),
             dependencies=[Depends(require_write_key)])
async def include(request: Request, svc=Depends(get_service)):
    """``{"ids": [...]}``: take back their exclusion (logged like an exclusion). Nothing is written when an id
    is unknown (404) or not excluded (409)."""
    body = await _body(request, schemas.IncludeRequest)
    return await run_in_threadpool(svc.feedback.include, body.ids, reason=body.reason, who=_who(request))

"""POST /identify: the features a person knows (any subset) -> the worst case over the known mushrooms that
match, and the next question to ask (``ModelService.identify``); never an answer that is not the library's.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from .. import bodies, schemas
from ..config import get_service, require_read_key
from ..openapi import errors, request_body

router = APIRouter(tags=["identify"])


@router.post(
    "/identify", summary="Identify from the features you know (worst case over the known mushrooms)",
    response_model=schemas.IdentifyResponse, response_model_exclude_unset=True,
    openapi_extra=request_body(["IdentifyRequest"], csv=False, example={"odor": "n", "spore-print-color": "w"}),
    responses=errors(401, 413, 415, 422, 503), dependencies=[Depends(require_read_key)])
async def identify(request: Request, svc=Depends(get_service)):
    """Any subset of the 22 features as codes (`"unknown"`, null or absent = open). Edible only when some
    known mushroom matches and every match is edible; no match means poisonous. ``ask_next`` names the open
    feature that best splits the matches; with all 22 given, ``model`` is the serving model's answer too."""
    given = bodies.parse_features(await request.body(), request.headers.get("content-type"))
    return await run_in_threadpool(svc.identify, given)

"""GET /health (the process answers), GET /ready (a champion is loaded) and GET /status
(= `mushroom status --json`)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from ...service import NoChampionError
from .. import schemas
from ..config import get_config, get_service, require_read_key
from ..errors import ApiError, public_text
from ..openapi import errors

router = APIRouter(tags=["health"])



@router.get("/health", summary="Liveness: the worker answers", response_model=schemas.Health)
async def health():
    return {"status": "alive", "worker": os.getpid()}


@router.get("/ready", summary="Readiness: a champion is loaded", response_model=schemas.Ready,
            responses=errors(503))
async def ready(request: Request, svc=Depends(get_service)):
    """200 with the serving version once a champion is loaded; 503 with the reason before."""
    try:
        version = svc.scorer.version
    except NoChampionError as exc:
        raise ApiError(503, f"not ready: {exc}") from None
    return {"status": "ready", "model_version": version, "worker": os.getpid()}


def _public(value, home):
    if isinstance(value, str):
        return public_text(value, home)
    if isinstance(value, dict):
        return {k: _public(v, home) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v, home) for v in value]
    return value


@router.get("/status", summary="Champion, metrics, feedback and retrain state", response_model=schemas.Status,
            responses=errors(401), dependencies=[Depends(require_read_key)])
async def status(request: Request, svc=Depends(get_service)):
    """What `mushroom status --json` prints; paths are shown relative to the home (``home`` is ``.``)."""
    home = get_config(request).settings.home
    st = await run_in_threadpool(svc.status)
    return {**_public(st, home), "home": "."}

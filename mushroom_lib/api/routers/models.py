"""GET /models, POST /models/{version}/promote, POST /models/rollback: the registry over HTTP.

Every worker (and every other ModelService on the home) serves a new champion at its next request.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ...registry import versions as reg
from .. import schemas
from ..config import get_service, require_read_key, require_write_key
from ..errors import ApiError
from ..openapi import errors

router = APIRouter(prefix="/models", tags=["models"])
_FIELDS = ("status", "trigger", "created_utc", "parent", "threshold", "holdout_metrics", "reason")


@router.get("", summary="Registered model versions", response_model=schemas.ModelList,
            responses=errors(401), dependencies=[Depends(require_read_key)])
def list_models(svc=Depends(get_service)):
    registry = svc.registry
    champion = registry.champion()
    versions = []
    for v in registry.versions():
        meta = registry.metadata(v)
        versions.append({"version": v, "champion": v == champion, **{k: meta.get(k) for k in _FIELDS}})
        versions[-1]["holdout_metrics"] = meta.get("holdout_metrics") or {}
    return {"champion": champion, "versions": versions}


def _change(svc, action) -> dict:
    previous = svc.registry.champion()
    version = action()
    svc.refresh()  # this worker serves it from this moment; the others at their next request
    return {"model_version": version, "previous": previous}


@router.post("/{version}/promote", summary="Make a version the champion", response_model=schemas.ChampionChange,
             responses=errors(401, 404, 409), dependencies=[Depends(require_write_key)])
def promote(version: str, svc=Depends(get_service)):
    """Point the champion at ``version`` (it must load: hashes and trusted types are checked)."""
    known = svc.registry.versions()
    try:
        name = reg.version_name(reg.parse_version(version))
    except reg.RegistryError:
        name = None
    if name not in known:
        raise ApiError(404, f"no model version {version[:40]!r}; known: {', '.join(known) or 'none'}")
    return _change(svc, lambda: svc.registry.promote(name, reason="api promote"))


@router.post("/rollback", summary="Serve the champion's parent again", response_model=schemas.ChampionChange,
             responses=errors(401, 409), dependencies=[Depends(require_write_key)])
def rollback(svc=Depends(get_service)):
    return _change(svc, svc.registry.rollback)

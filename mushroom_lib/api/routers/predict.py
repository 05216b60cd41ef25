"""POST /predict: JSON rows, a CSV (answered with the same CSV as `mushroom predict`) or the seed's body.

Scoring is ``ModelService.predict``: every column it returns passes through.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from .. import bodies, schemas
from ..config import get_config, get_service, require_read_key
from ..openapi import errors, request_body

router = APIRouter(tags=["predict"])

INLINE_BYTES = 64 * 1024  # smaller bodies are scored on the event loop (a few ms at most); larger in a thread


def _seed_answer(frame) -> dict:
    """The seed's shape: ``prediction`` as Poisonous/Edible, then every other column the library added."""
    out = frame.iloc[[0], list(frame.columns).index("prediction"):].to_dict("records")[0]
    out["prediction"] = "Poisonous" if out["prediction"] == "poisonous" else "Edible"
    return out


def _score(svc, body: bodies.Body, state, settings):
    if body.seed is not None:
        row = bodies.seed_encoding(state, settings).decode(body.seed.get("observation"))
        return JSONResponse(_seed_answer(svc.predict(row)))
    frame = svc.predict(body.rows)
    if body.csv:
        return Response(frame.to_csv(index=False), media_type="text/csv")
    version = str(frame["model_version"].iloc[0]) if len(frame) else svc.model_version
    return JSONResponse({"model_version": version, "predictions": frame.to_dict("records")})


@router.post(
    "/predict", summary="Score mushrooms with the serving model",
    response_model=schemas.PredictResponse | schemas.SeedPredictResponse,
    openapi_extra=request_body(["PredictRequest", "SeedPredictRequest"], csv=True,
                               example={"rows": [schemas.EXAMPLE_ROW]}),
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                     "description": "JSON predictions, or for a CSV body the CSV `mushroom predict` writes"},
               **errors(401, 413, 415, 422, 503)},
    dependencies=[Depends(require_read_key)])
async def predict(request: Request, svc=Depends(get_service)):
    """Score rows (JSON ``{"rows": [...]}`` or a CSV body in either layout) or the seed's
    ``{"observation": [22 integers]}``. Rows called *uncertain* are to be treated as poisonous."""
    data = await request.body()
    body = bodies.parse(data, request.headers.get("content-type"))
    settings = get_config(request).settings
    if len(data) <= INLINE_BYTES:
        response = _score(svc, body, request.app.state, settings)
    else:
        response = await run_in_threadpool(_score, svc, body, request.app.state, settings)
    response.headers["X-Mushroom-Worker"] = str(os.getpid())
    return response

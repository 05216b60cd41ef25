"""POST /predict: JSON rows, a CSV (answered with the same CSV as `mushroom predict`) or the seed's body.

Scoring is ``ModelService.predict``: every column it returns passes through.
"""

from __future__ import annotations

import json
import math
import os

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from .. import bodies, schemas
from ..config import get_config, get_service, require_read_key
from ..openapi import errors, request_body

router = APIRouter(tags=["predict"])

INLINE_BYTES = 64 * 1024  # smaller bodies are scored on the event loop (a few ms at most); larger in a thread


def _native(value):
    """numpy scalars (bool, int) as plain Python for JSON; floats are already Python floats' subclass."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _records(frame) -> list[dict]:
    """The frame's rows as dicts, every column (one object array: much cheaper than ``to_dict``)."""
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, row)) for row in frame.to_numpy(dtype=object).tolist()]


def _finite(value):
    """NaN and infinities (an echoed extra column can hold them) become null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json(content) -> Response:
    try:
        text = json.dumps(content, default=_native, allow_nan=False, separators=(",", ":"))
    except ValueError:  # rare: only when a value is not finite
        text = json.dumps(_finite(content), default=_native, allow_nan=False, separators=(",", ":"))
    return Response(text, media_type="application/json")


def _one(svc, row: dict) -> dict:
    """One mushroom as one dict: the scorer's lean path, else ``ModelService.predict`` (which validates)."""
    record = svc.scorer.predict_one(row, as_record=True)
    return record if record is not None else _records(svc.predict(row))[0]


def _seed_answer(row: dict) -> dict:
    """The seed's shape: ``prediction`` as Poisonous/Edible, then every other column the library added."""
    keys = list(row)
    out = {k: row[k] for k in keys[keys.index("prediction"):]}
    out["prediction"] = "Poisonous" if out["prediction"] == "poisonous" else "Edible"
    return out


def _score(svc, body: bodies.Body, state, settings) -> Response:
    if body.seed is not None:
        row = bodies.seed_encoding(state, settings).decode(body.seed.get("observation"))
        return _json(_seed_answer(_one(svc, row)))
    rows = body.rows
    if body.csv:
        return Response(svc.predict(rows).to_csv(index=False), media_type="text/csv")
    records = [_one(svc, rows[0])] if len(rows) == 1 else _records(svc.predict(rows))
    return _json({"model_version": records[0]["model_version"], "predictions": records})


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

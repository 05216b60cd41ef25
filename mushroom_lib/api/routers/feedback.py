"""POST /feedback: labelled rows (JSON, CSV or the seed's body) -> the receipt, at once.

The retrain a submission makes due runs in the background (``submit_feedback(wait=False)``): the answer
says ``retrain_pending`` and never waits for it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from .. import bodies, schemas
from ..config import get_config, get_service, require_write_key
from ..openapi import errors, request_body

router = APIRouter(tags=["feedback"])
SOURCE_PATTERN = r"^[A-Za-z0-9_.:@-]{1,40}$"  # what the store keeps of a source name (feedback_loop.clean_source)


def _submit(svc, body: bodies.Body, state, settings, source: str) -> dict:
    rows = body.rows
    if body.seed is not None:
        bodies.seed_prediction(body.seed.get("prediction"))
        label = bodies.seed_label(body.seed.get("target"))
        row = bodies.seed_encoding(state, settings).decode(body.seed.get("observation"))
        rows = [{**row, "class": label}]
    receipt = svc.submit_feedback(rows, wait=False, source=source)
    return receipt.to_dict()


@router.post(
    "/feedback", summary="Send mushrooms with their true label", response_model=schemas.Receipt,
    openapi_extra=request_body(["FeedbackRequest", "SeedFeedbackRequest"], csv=True, label=True,
                               example={"rows": [{**schemas.EXAMPLE_ROW, "class": "p"}]}),
    responses=errors(401, 413, 415, 422, 503), dependencies=[Depends(require_write_key)])
async def feedback(request: Request, svc=Depends(get_service),
                   source: str = Query("api", pattern=SOURCE_PATTERN,
                                       description="who sends the rows (a person, a script); stored with each "
                                                   "row for GET /feedback?source= and exclusions")):
    """Rows with the true label in ``class`` (e/edible, p/poisonous), a CSV with a ``class`` column, or the
    seed's ``{"observation": [...], "prediction": ..., "target": "True"|"False"}`` (True = poisonous).
    Every K-th row makes a retrain due; it runs in the background (``retrain_pending: true``). Each row is
    stored with ``source`` (default ``api``) and gets a ``feedback_id`` (see GET /feedback)."""
    data = await request.body()
    body = bodies.parse(data, request.headers.get("content-type"))
    return await run_in_threadpool(_submit, svc, body, request.app.state, get_config(request).settings, source)

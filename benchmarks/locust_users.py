"""Locust users for benchmarks/bench_load.py (run by it: `locust -f benchmarks/locust_users.py ...`).

* ``MixedUser``: one-row JSON ``POST /predict`` 50 times for each ``POST /feedback`` of one labelled row
  (with ``X-API-Key``), 0.5-1.5 s of thought between requests, as a person or a client program would;
* ``SeedStyleUser``: the seed's protocol only (``{"observation": [22 integers]}`` to ``/predict``), the same
  pace, so that the anchor (which has no /feedback) and ours answer the same requests.

The rows come from the JSON file in ``LOAD_ROWS`` (written by bench_load from the dataset); the key from
``LOAD_API_KEY``. A request counts as failed unless it answers 200 with the expected body.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, between, task

_DATA = json.loads(Path(os.environ["LOAD_ROWS"]).read_text())
_KEY = os.environ.get("LOAD_API_KEY", "")
FEATURE_ROWS: list[dict] = [{k: v for k, v in r.items() if k != "class"} for r in _DATA["rows"]]
LABELLED_ROWS: list[dict] = _DATA["rows"]
OBSERVATIONS: list[list[int]] = _DATA["observations"]


class MixedUser(FastHttpUser):
    """Mostly one-row predictions, now and then one row of feedback."""

    wait_time = between(0.5, 1.5)

    @task(50)
    def predict(self) -> None:
        body = {"rows": [random.choice(FEATURE_ROWS)]}
        with self.client.post("/predict", json=body, name="/predict", catch_response=True) as resp:
            if resp.status_code != 200 or b'"predictions"' not in (resp.content or b""):
                resp.failure(f"/predict answered {resp.status_code}: {(resp.content or b'')[:120]!r}")

    @task(1)
    def feedback(self) -> None:
        body = {"rows": [random.choice(LABELLED_ROWS)]}
        with self.client.post("/feedback?source=locust", json=body, headers={"X-API-Key": _KEY},
                              name="/feedback", catch_response=True) as resp:
            if resp.status_code != 200 or b'"rows_written"' not in (resp.content or b""):
                resp.failure(f"/feedback answered {resp.status_code}: {(resp.content or b'')[:120]!r}")


class SeedStyleUser(FastHttpUser):
    """The seed's /predict protocol only (the anchor understands nothing else)."""

    wait_time = between(0.5, 1.5)

    @task
    def predict(self) -> None:
        body = {"observation": random.choice(OBSERVATIONS)}
        with self.client.post("/predict", json=body, name="/predict (seed protocol)", catch_response=True) as resp:
            if resp.status_code != 200 or b'"prediction"' not in (resp.content or b""):
                resp.failure(f"/predict answered {resp.status_code}: {(resp.content or b'')[:120]!r}")

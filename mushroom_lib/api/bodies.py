"""Reading request bodies: JSON ``{"rows": [...]}``, a CSV (either layout) or the seed's
``{"observation": [22 integers]}``, into what the library takes. Validation of the rows is the library's.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import pandas as pd

from ..schema import CODES, FEATURES, SchemaError, read_csv_bytes
from ..settings import Settings
from .errors import ApiError

CSV_TYPES = {"text/csv", "application/csv", "text/plain"}


@dataclass
class Body:
    """A parsed body: ``rows`` (list of dicts or a DataFrame), whether it came as CSV, the seed's fields."""

    rows: object
    csv: bool = False
    seed: dict | None = None


def media_type(content_type: str | None) -> str:
    return (content_type or "application/json").split(";", 1)[0].strip().lower() or "application/json"


def parse(data: bytes, content_type: str | None) -> Body:
    """The body as rows; raises ApiError (415, 422) or SchemaError with one sentence."""
    kind = media_type(content_type)
    if kind in CSV_TYPES:
        return Body(read_csv_bytes(data, source="the request body"), csv=True)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, f"content type {kind!r} is not accepted; send application/json or text/csv")
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, f"the body is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if isinstance(payload, dict) and "observation" in payload:
        return Body(None, seed=payload)
    if not isinstance(payload, dict) or "rows" not in payload:
        raise ApiError(422, 'expected a JSON object {"rows": [{feature: code, ...}, ...]} or the seed\'s '
                            '{"observation": [22 integers]}')
    rows = payload["rows"]
    if not isinstance(rows, list) or not rows:
        raise ApiError(422, '"rows" must be a non-empty list of objects, one per mushroom')
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ApiError(422, f"row {i} is not an object of feature: code pairs")
    return Body(rows)


class SeedEncoding:
    """The seed's integers: per feature, the codes found in the dataset, sorted (scikit-learn's LabelEncoder)."""

    def __init__(self, codes: dict[str, list[str]]):
        self.codes = codes

    @classmethod
    def from_dataset(cls, settings: Settings) -> "SeedEncoding":
        from ..data import load_dataset

        if not settings.dataset_path.exists():
            raise ApiError(503, "the seed's integer encoding needs the dataset: run `mushroom data` on the "
                                "server first")
        df = load_dataset(settings)
        return cls({f: sorted(map(str, pd.unique(df[f]))) for f in FEATURES})

    def decode(self, observation) -> dict[str, str]:
        """22 integers -> {feature: code}; SchemaError naming the position, the column and the valid range."""
        if not isinstance(observation, list) or len(observation) != len(FEATURES):
            got = f"{len(observation)} values" if isinstance(observation, list) else type(observation).__name__
            raise SchemaError(f'"observation" must be a list of {len(FEATURES)} integers (one per feature, '
                              f"in the dataset's order); got {got}", column="observation")
        row = {}
        for i, (feature, value) in enumerate(zip(FEATURES, observation)):
            codes = self.codes[feature]
            if type(value) is float and value.is_integer():  # JSON's 2.0 is the integer 2
                value = int(value)
            if type(value) is not int or not 0 <= value < len(codes):
                shown = json.dumps(value)[:40]
                legend = ", ".join(f"{n}={c} ({CODES[feature].get(c, c)})" for n, c in enumerate(codes))
                raise SchemaError(f"observation[{i}], column '{feature}': {shown} is out of range; valid "
                                  f"integers are 0 to {len(codes) - 1} ({legend})",
                                  row=1, column=feature, value=value)
            row[feature] = codes[value]
        return row


def seed_label(target) -> str:
    """The seed's target ("True" = poisonous, "False" = edible) as a class code."""
    text = str(target).strip().lower()
    if text in ("true", "1"):
        return "p"
    if text in ("false", "0"):
        return "e"
    raise SchemaError(f'"target" is {json.dumps(target)[:40]}; use "True" (poisonous) or "False" (edible)',
                      column="target", value=target)


def seed_prediction(value) -> None:
    """The seed's own ``prediction`` field is informational: it must be Poisonous or Edible when given."""
    if value is not None and str(value).strip().lower() not in ("poisonous", "edible"):
        raise SchemaError(f'"prediction" is {json.dumps(value)[:40]}; use "Poisonous" or "Edible"',
                          column="prediction", value=value)


_ENCODING_LOCK = threading.Lock()


def seed_encoding(state, settings: Settings) -> SeedEncoding:
    """The app's SeedEncoding, read from the home's dataset on first use."""
    enc = getattr(state, "seed_encoding", None)
    if enc is None:
        with _ENCODING_LOCK:
            enc = getattr(state, "seed_encoding", None)
            if enc is None:
                enc = state.seed_encoding = SeedEncoding.from_dataset(settings)
    return enc

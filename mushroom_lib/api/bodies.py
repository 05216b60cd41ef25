"""Reading request bodies: JSON ``{"rows": [...]}``, a CSV (either layout), the seed's
``{"observation": [22 integers]}``, features to identify or a review request, into what the library takes.
Validation of the rows and the codes is the library's.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import pandas as pd
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from ..core.settings import Settings
from ..data.schema import CODES, FEATURES, SchemaError, read_csv_bytes
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


def _json(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, f"the body is not valid JSON ({exc.__class__.__name__}: {exc})") from None


def parse(data: bytes, content_type: str | None) -> Body:
    """The body as rows; raises ApiError (415, 422) or SchemaError with one sentence."""
    kind = media_type(content_type)
    if kind in CSV_TYPES:
        return Body(read_csv_bytes(data, source="the request body"), csv=True)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, f"content type {kind!r} is not accepted; send application/json or text/csv")
    payload = _json(data)
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


def _json_only(data: bytes, content_type: str | None, empty=None):
    """A body that must be JSON (415 otherwise); ``empty`` stands for an empty body when given."""
    kind = media_type(content_type)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, f"content type {kind!r} is not accepted; send application/json")
    return empty if empty is not None and not data.strip() else _json(data)


def parse_model(data: bytes, content_type: str | None, model: type[BaseModel]) -> BaseModel:
    """A JSON body checked against a pydantic model; ApiError 415/422 (the first problem as one sentence)."""
    payload = _json_only(data, content_type)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def parse_features(data: bytes, content_type: str | None) -> dict[str, str]:
    """A JSON object of feature: code pairs (any subset; null leaves a feature open) -> ApiError 415/422."""
    payload = _json_only(data, content_type, empty={})
    if not isinstance(payload, dict):
        raise ApiError(422, 'expected a JSON object of feature: code pairs, e.g. {"odor": "n", "cap-color": "w"}')
    # a number or a list is shown as sent, so the library's sentence names it beside the valid codes
    return {name: value if isinstance(value, str) else json.dumps(value)
            for name, value in payload.items() if value is not None}


class SeedEncoding:
    """The seed's integers: per feature, the codes found in the dataset, sorted (scikit-learn's LabelEncoder)."""

    def __init__(self, codes: dict[str, list[str]]):
        self.codes = codes

    @classmethod
    def from_dataset(cls, settings: Settings) -> "SeedEncoding":
        from ..data.dataset import load_dataset

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

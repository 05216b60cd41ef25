"""The OpenAPI document: request bodies read by hand (JSON, CSV or the seed's shape) are declared here,
every error is ``{"detail": sentence}``, and the seed's integers are documented per position."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from ..data.schema import CODES, FEATURES
from . import schemas
from .config import require_read_key, require_write_key

REF = "#/components/schemas/{model}"
_REASONS = {401: "the X-API-Key header is missing or wrong", 404: "no such model version",
            409: "the registry refused the change", 413: "the body is over the size cap",
            415: "the content type is not accepted", 422: "the body or a row is not valid (one sentence)",
            503: "no model is serving yet, or the data it needs is missing"}


def errors(*statuses: int, reasons: dict[int, str] | None = None) -> dict:
    """``responses=`` entries for these statuses, each answering ``{"detail": sentence}`` (``reasons`` says
    what a status means on this route where the default does not fit)."""
    why = {**_REASONS, **(reasons or {})}
    return {s: {"model": schemas.Error, "description": why[s]} for s in statuses}


def csv_pattern(label: bool) -> str:
    """A regular expression for a valid CSV in the header layout (lets schema-driven tools make valid files)."""
    names = (["class"] if label else []) + FEATURES
    cells = (["[ep]"] if label else []) + ["[" + "".join(CODES[f]) + "]" for f in FEATURES]
    return "^" + ",".join(names) + "\\n(?:" + ",".join(cells) + "\\n)+$"


def request_body(models: list[str], *, csv: bool, label: bool = False, example: dict | None = None) -> dict:
    """``openapi_extra`` declaring a body the route reads itself: one of ``models`` as JSON, or a CSV."""
    json_schema: dict = {"anyOf": [{"$ref": REF.format(model=m)} for m in models]}
    content = {"application/json": {"schema": json_schema}}
    if example:
        content["application/json"]["example"] = example
    if csv:
        content["text/csv"] = {"schema": {"type": "string", "pattern": csv_pattern(label), "description": (
            "a CSV with the 22 features" + (" and `class`" if label else "") + ": the header layout (any column "
            "order, extra columns kept) or the headerless UCI layout")}}
    return {"requestBody": {"required": True, "content": content}}


def _seed_items(codes: dict[str, list[str]] | None) -> dict:
    """The seed's observation array, one entry per position with its column and range."""
    items = []
    for f in FEATURES:
        known = codes[f] if codes else sorted(CODES[f])
        legend = ", ".join(f"{n}={c} ({CODES[f].get(c, c)})" for n, c in enumerate(known))
        items.append({"type": "integer", "minimum": 0, "maximum": len(known) - 1, "title": f,
                      "description": legend})
    return {"type": "array", "prefixItems": items, "items": False, "minItems": len(FEATURES),
            "maxItems": len(FEATURES)}


def _guarded(route: APIRoute, config) -> bool:
    """Whether this server asks ``route`` for the key (writes when a key is set; reads with --key-for-reads)."""
    deps = {d.dependency for d in route.dependencies}
    if config.api_key is None:
        return False
    return require_write_key in deps or (require_read_key in deps and config.key_for_reads)


def install(app: FastAPI, config, seed_codes, routes: list) -> None:
    """Replace ``app.openapi`` with one that adds the hand-read bodies and the one-sentence errors, and that
    declares the key only where this server asks for it."""

    def build() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        _, defs = models_json_schema([(m, "validation") for m in schemas.REQUEST_MODELS], ref_template=REF)
        components.update(defs.get("$defs", {}))
        observation = _seed_items(seed_codes())
        for name in ("SeedPredictRequest", "SeedFeedbackRequest"):
            components[name]["properties"]["observation"] = {**observation, "description": schemas.SEED_DOC}
        for path in doc.get("paths", {}).values():
            for op in path.values():
                if "422" in op.get("responses", {}):
                    op["responses"]["422"] = {"description": _REASONS[422], "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
        for route in routes:  # the routers' own routes (app.routes wraps included routers)
            if isinstance(route, APIRoute) and not _guarded(route, config):
                for method in route.methods:
                    op = doc["paths"][route.path_format][method.lower()]
                    op.pop("security", None)
                    op.get("responses", {}).pop("401", None)
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = build

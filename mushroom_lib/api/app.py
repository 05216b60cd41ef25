"""``create_app(settings)``: the FastAPI app over one home's ModelService (routers, dependencies, lifespan).

Each uvicorn worker builds its own app (``app_from_env``) and so its own ModelService on the shared home;
all of them notice a new champion with one ``stat`` before their next prediction.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..core.settings import Settings, get_settings
from . import errors, openapi
from .config import ApiConfig
from .limits import BodySizeLimit
from .routers import feedback, feedback_review, health, identify, models, predict

DESCRIPTION = """The mushroom workbench over HTTP: the same model registry, feedback store and hot swap as
the `mushroom` command, the dashboard and the library.

**Safety first**: a row marked `uncertain` is to be treated as poisonous, and `/identify` answers edible
only when every known mushroom with the given features is edible. Writes (`/feedback`, its exclude/include,
promote, rollback) need the `X-API-Key` header when the server has `MUSHROOM_API_KEY` set. Every error is
`{"detail": "one sentence"}`."""

_UNSET = object()


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Load the champion before the first request; on shutdown let a background retrain finish."""
    from ..service import ModelService

    app.state.service = ModelService(settings=app.state.config.settings)
    app.state.service.watch()  # a new champion is loaded off the request path
    try:
        yield
    finally:
        app.state.service.close()


def create_app(settings: Settings | None = None, *, api_key=_UNSET, key_for_reads: bool | None = None,
               max_body_bytes: int | None = None) -> FastAPI:
    """The API for ``settings``' home. The key, the reads rule and the body cap default to the environment
    (MUSHROOM_API_KEY, MUSHROOM_API_KEY_FOR_READS, MUSHROOM_API_MAX_BYTES, else the upload cap)."""
    base = ApiConfig.from_env(settings or get_settings())
    config = ApiConfig(base.settings, base.api_key if api_key is _UNSET else (api_key or None),
                       base.key_for_reads if key_for_reads is None else key_for_reads,
                       base.max_body_bytes if max_body_bytes is None else int(max_body_bytes))
    app = FastAPI(title="Mushroom workbench API", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.config = config
    routers = [m.router for m in (predict, identify, feedback, feedback_review, models, health)]
    for router in routers:
        app.include_router(router)
    errors.install(app, config.settings.home)
    openapi.install(app, config, lambda: _seed_codes(app), [r for router in routers for r in router.routes])
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    return app


def _seed_codes(app: FastAPI):
    """The seed's per-column codes when the home has the dataset (for the docs), else None."""
    from ..data.dataset import DataError
    from .bodies import seed_encoding
    from .errors import ApiError

    try:
        return seed_encoding(app.state, app.state.config.settings).codes
    except (ApiError, DataError, OSError, ValueError):  # no dataset yet: the docs show the documented codes
        return None


def app_from_env() -> FastAPI:
    """The app factory uvicorn's workers call (``mushroom api`` passes the home and key through the environment)."""
    return create_app(get_settings())

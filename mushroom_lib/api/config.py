"""What one API app is configured with (the home's settings, the key, the body cap) and the shared objects
it hands to its routes as FastAPI dependencies: the config, the ModelService, the API-key checks."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from ..core.settings import Settings, get_settings
from .errors import ApiError


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="APIKey",
                              description="the key in the server's MUSHROOM_API_KEY (needed for writes when "
                                          "it is set, and for reads too with `mushroom api --key-for-reads`)")


@dataclass(frozen=True)
class ApiConfig:
    """One app's configuration; ``api_key`` None means no key is needed anywhere."""

    settings: Settings
    api_key: str | None = None
    key_for_reads: bool = False
    max_body_bytes: int = 20 * 1024 * 1024

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> "ApiConfig":
        """The config of the settings (MUSHROOM_API_KEY, MUSHROOM_API_KEY_FOR_READS, MUSHROOM_API_MAX_BYTES),
        which ``mushroom api`` passes to its workers through the environment."""
        settings = settings or get_settings()
        return cls(settings, settings.api_key, settings.api_key_for_reads,
                   settings.api_max_bytes or settings.upload_cap_bytes)


# ---------------------------------------------------------------- dependencies
def get_config(request: Request) -> ApiConfig:
    return request.app.state.config


_SERVICE_LOCK = threading.Lock()


async def get_service(request: Request):
    """The app's ModelService (made by the lifespan; made here on first use under a server without one)."""
    state = request.app.state
    svc = getattr(state, "service", None)
    if svc is None:
        with _SERVICE_LOCK:
            svc = getattr(state, "service", None)
            if svc is None:
                from ..service import ModelService

                svc = state.service = ModelService(settings=state.config.settings)
    return svc


def _check_key(config: ApiConfig, given: str | None) -> None:
    if config.api_key is None:
        return
    if not given or not hmac.compare_digest(given.encode("utf-8", "replace"), config.api_key.encode("utf-8")):
        raise ApiError(401, "this endpoint needs the header X-API-Key with the key set in the server's "
                            "MUSHROOM_API_KEY")


async def require_write_key(request: Request, key: str | None = Security(api_key_header)) -> None:
    """Writes (feedback, promote, rollback) need the key whenever one is set."""
    _check_key(get_config(request), key)


async def require_read_key(request: Request, key: str | None = Security(api_key_header)) -> None:
    """Reads need the key only with ``--key-for-reads``."""
    config = get_config(request)
    if config.key_for_reads:
        _check_key(config, key)

"""The REST API (`mushroom api`): FastAPI routers over the same ModelService as the CLI and the dashboard.
No library package imports it; it imports no other surface.

Build an app with ``create_app(settings)``; serve it with ``serve(...)`` (uvicorn, 127.0.0.1 by default).
"""

from __future__ import annotations

from .app import app_from_env, create_app
from .serve import serve

__all__ = ["app_from_env", "create_app", "serve"]

"""Mushroom workbench: train, serve, correct and monitor an edibility classifier.

``from mushroom_lib import ModelService`` is the programmatic entry point. Heavy modules (Evidently,
plotly, widgets) are imported only by the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["ModelService", "SchemaError", "get_settings", "__version__"]


def __getattr__(name: str):
    if name == "ModelService":
        from .service import ModelService
        return ModelService
    if name == "SchemaError":
        from .schema import SchemaError
        return SchemaError
    if name == "get_settings":
        from .settings import get_settings
        return get_settings
    raise AttributeError(f"module 'mushroom_lib' has no attribute {name!r}")

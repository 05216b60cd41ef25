"""Mushroom workbench: train, serve, correct and monitor an edibility classifier.

``from mushroom_lib import ModelService`` is the programmatic entry point. Heavy modules (Evidently,
plotly, widgets) are imported only by the functions that need them.
"""

from __future__ import annotations

from .core.errors import SchemaError
from .core.settings import get_settings

__version__ = "0.1.0"
__all__ = ["ModelService", "SchemaError", "get_settings", "__version__"]


def __getattr__(name: str):
    if name == "ModelService":
        from .service import (
            ModelService,  # lazy: pandas and the model stack; `mushroom --help` needs neither
        )
        return ModelService
    raise AttributeError(f"module 'mushroom_lib' has no attribute {name!r}")

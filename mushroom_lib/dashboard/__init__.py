"""The Voila dashboard: upload or sample, editable prediction grid, feedback, live model refresh.
No library package imports it; it imports no other surface, and widgets, Voila and plotly only where used.

``dashboards/app.ipynb`` builds and shows :class:`Dashboard` (:mod:`.app`); :func:`serve` runs Voila
(``mushroom dashboard``). Map: values (pure helpers), state (pure pandas), source (the model a page uses),
views/form/plot (widgets), feedback (sending rows), batches (the sent batches and their undo),
grid_adapter (private internals), server/handlers.
Importing this package is light: widgets, Voila and plotly are imported where they are used.
"""

from __future__ import annotations

from .values import FORMULA_PREFIXES, UNCERTAIN_MARK, human, neutralize, safe_csv

__all__ = ["Dashboard", "serve", "human", "neutralize", "safe_csv", "FORMULA_PREFIXES", "UNCERTAIN_MARK"]


def __getattr__(name: str):
    if name == "Dashboard":
        from .app import Dashboard

        return Dashboard
    if name in ("serve", "voila_config", "notebook_path", "DashboardRefused", "check_host"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)

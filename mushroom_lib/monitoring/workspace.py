"""The Evidently workspace: the project "Mushroom monitoring", its dashboard panels, adding snapshots.

Panels have stable ids, so setting the dashboard again changes nothing; the workspace is written under
a file lock so that concurrent reports on one home add their snapshots one at a time.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from filelock import FileLock

from .drift import DRIFT_SHARE

PROJECT_NAME = "Mushroom monitoring"
_NAMESPACE = uuid.UUID("6f1c3a52-6d1e-4f55-9a0e-2b7f6c1d9e01")  # stable dashboard panel ids


def _panel(key: str, title: str, subtitle: str, metric: str, labels: dict, legend: str):
    from evidently.sdk.models import (  # lazy: Evidently (~2 s), see __init__
        DashboardPanelPlot,
        PanelMetric,
    )

    return DashboardPanelPlot(
        id=uuid.uuid5(_NAMESPACE, key), title=title, subtitle=subtitle, size="half",
        values=[PanelMetric(legend=legend, metric=metric, metric_labels=labels)],
        plot_params={"plot_type": "line"})


def dashboard_model():
    """The whole dashboard of the project: four line panels, stable ids (setting it twice changes nothing).

    A snapshot without a metric (no drift verdict under MIN_DRIFT_ROWS rows, no quality part under
    MIN_QUALITY_ROWS labelled rows) has no point on that panel: a gap, not a zero.
    """
    from evidently.sdk.models import (  # lazy: Evidently, see __init__
        DashboardModel,
        DashboardTabModel,
    )

    panels = [
        _panel("accuracy", "Accuracy", "labelled production rows, served predictions", "Accuracy",
               {}, "accuracy"),
        _panel("f1", "F1 (poisonous = positive)", "labelled production rows", "F1Score", {}, "F1"),
        _panel("false_edible", "false_edible", "poisonous rows the model called edible (count)", "SumValue",
               {"column": "false_edible"}, "false_edible"),
        _panel("drift_share", "Drifted-column share", f"22 features + PCA components; dataset drift at "
               f">= {DRIFT_SHARE:.0%}; no point where too few rows to judge", "DriftedColumnsCount",
               {"value_type": "share"}, "share ({{cat_method}} / {{num_method}})"),
    ]
    tab = DashboardTabModel(id=uuid.uuid5(_NAMESPACE, "tab:monitoring"), title="Monitoring",
                            panels=[p.id for p in panels])
    return DashboardModel(tabs=[tab], panels=panels)


def ensure_project(workspace, name: str = PROJECT_NAME):
    """The project called ``name``: found by name first, created only when absent (caller holds the lock)."""
    found = [p for p in workspace.search_project(name) if p.name == name]
    if found:
        return found[0]
    return workspace.create_project(name, description="Drift and quality of the mushroom classifier "
                                    "on production rows, one snapshot per report")


def _workspace_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f".{path.name}.lock"))


def add_to_workspace(snapshot, workspace_path: Path, project_name: str = PROJECT_NAME) -> tuple[str, str]:
    """Add a snapshot to the project (created once) and set its dashboard; returns (project id, snapshot id)."""
    from evidently.ui.workspace import Workspace  # lazy: Evidently, see __init__

    workspace_path = Path(workspace_path)
    with _workspace_lock(workspace_path):
        ws = Workspace(str(workspace_path))
        project = ensure_project(ws, project_name)
        ref = ws.add_run(project.id, snapshot, include_data=False)
        ws.save_dashboard(project.id, dashboard_model())
    return str(project.id), str(ref.id)

"""Monitoring with Evidently 0.7: the drift + quality report, the workspace and its panels, `evidently ui`.
Never imports notebooks, the worker, the service or a surface; Evidently only inside the functions that use it.

``report.py`` builds the report, ``drift.py`` holds the drift policy, ``workspace.py`` the project and
panels, ``ui.py`` the server, ``result.py`` what a run produced. Importing this package imports no
Evidently (it loads inside the functions that need it).
"""

from ..core.vocab import utc_stamp
from .drift import (
                    CAT_TEST,
                    DISTANCE,
                    DRIFT_SHARE,
                    LARGE_SAMPLE,
                    MIN_DRIFT_ROWS,
                    P_VALUE,
                    MonitoringError,
                    chisquare_mc,
                    column_scores,
                    drift_check,
                    drift_columns,
                    drift_options,
                    judge_drift,
                    load_evidently,
                    too_few_rows,
)
from .report import (
                    MIN_QUALITY_ROWS,
                    NEGATIVE,
                    POSITIVE,
                    build_report,
                    load_production,
                    load_reference,
                    pca_columns,
                    report_for_notebook,
                    score_frame,
)
from .result import STATUSES, MonitoringResult
from .ui import serve_ui, ui_command
from .workspace import PROJECT_NAME, add_to_workspace, dashboard_model, ensure_project

__all__ = [
    "CAT_TEST", "chisquare_mc", "DISTANCE", "DRIFT_SHARE", "LARGE_SAMPLE", "MIN_DRIFT_ROWS", "MIN_QUALITY_ROWS", "NEGATIVE", "P_VALUE",
    "POSITIVE", "PROJECT_NAME", "STATUSES", "MonitoringError", "MonitoringResult", "add_to_workspace",
    "build_report", "column_scores", "dashboard_model", "drift_check", "drift_columns", "drift_options",
    "ensure_project", "judge_drift", "load_evidently", "load_production", "load_reference", "pca_columns",
    "report_for_notebook", "score_frame", "serve_ui", "too_few_rows", "ui_command", "utc_stamp",
]

"""Helpers shared by tests/test_monitoring.py and tests/test_notebooks.py: what a user sees in a report.

``html_counters`` reads the figures Evidently's HTML shows in its counter widgets ("Drifted Columns",
"Share of Drifted Columns", "Accuracy", ...); ``snapshots`` lists a workspace's stored snapshots;
``submit`` fills prod_data.csv through the service without retraining.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from mushroom_lib.core.settings import get_settings
from mushroom_lib.service import ModelService

_COUNTERS = re.compile(r'"counters": (\[[^\]]*\])')


def html_counters(path: Path) -> dict[str, str]:
    """label -> value (as displayed) of every counter widget in an Evidently HTML report (first wins)."""
    found: dict[str, str] = {}
    for block in _COUNTERS.findall(Path(path).read_text(encoding="utf-8")):
        for counter in json.loads(block):
            found.setdefault(counter["label"], counter["value"])
    return found


def snapshots(workspace: Path) -> list[Path]:
    return sorted(Path(workspace).glob("*/snapshots/*.json"))


def submit(home: Path, rows: pd.DataFrame) -> None:
    """Production rows through the service (K huge: no retrain while filling prod_data.csv)."""
    ModelService(settings=get_settings(home, k=10**9)).submit_feedback(rows, source="test")

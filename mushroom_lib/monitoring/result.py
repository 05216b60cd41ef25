"""What one monitoring run produced (``MonitoringResult``): its Markdown summary, table and record.

The record is what the runner writes into reports/last_report.json; the summary is what the report
notebook and `mushroom report` show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .drift import DRIFT_SHARE
from .workspace import PROJECT_NAME

#: status: "full" (drift + quality), "drift-only", "quality-only", "counts-only" (too few rows for either:
#: only the false_edible count), "nothing" (no production rows: nothing written) or "error".
STATUSES = ("full", "drift-only", "quality-only", "counts-only", "nothing", "error")


@dataclass
class MonitoringResult:
    """What one monitoring run produced; shows itself as Markdown in a notebook."""

    status: str                       #: one of STATUSES
    notes: list[str] = field(default_factory=list)
    html_path: Path | None = None
    snapshot_id: str | None = None
    project_id: str | None = None
    project_name: str = PROJECT_NAME
    model_version: str | None = None  #: the champion when the report's computation started
    rows: int = 0                     #: production rows in the report
    drift: dict | None = None         #: share, count, columns, dataset_drift, drifted, tests
    drift_note: str | None = None     #: why there is no drift verdict (too few rows)
    quality: dict | None = None       #: accuracy, precision, recall, f1, false_edible, roc_auc, log_loss
    false_edible: int | None = None   #: poisonous production rows served as edible (every report has it)
    error: str | None = None          #: why no report could be made (status "error")
    seconds: float = 0.0

    def _drift_line(self) -> str | None:
        if self.drift_note:
            return f"- Data drift: {self.drift_note}."
        if not self.drift:
            return None
        d = self.drift
        verdict = "**drift detected**" if d["dataset_drift"] else "no dataset drift"
        names = ", ".join(d["drifted"]) if d["drifted"] else "none"
        return (f"- Data drift: {verdict}: {int(d['count'])} of {d['columns']} columns drifted "
                f"(share {d['share']:.2f}, threshold {DRIFT_SHARE:.2f}); drifted columns: {names}. "
                f"Tests: {d['tests']}.")

    def summary(self) -> str:
        """A few Markdown lines: what was written, drift, quality, and why anything is missing."""
        lines = [f"**Monitoring report** ({self.status}) for model {self.model_version or '?'}, "
                 f"{self.rows} production rows"]
        if self.error:
            lines.append(f"- No report was written: {self.error}")
        drift = self._drift_line()
        if drift:
            lines.append(drift)
        if self.quality:
            q = self.quality
            parts = [f"{k} {q[k]:.4f}" for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
                     if q.get(k) is not None]
            if q.get("false_edible") is not None:
                parts.append(f"false_edible {int(q['false_edible'])}")
            lines.append("- Quality on the labelled production rows (poisonous = positive): " + ", ".join(parts))
        lines += [f"- {note}" for note in self.notes]
        if self.html_path:
            lines.append(f"- HTML: `{self.html_path}`")
        if self.snapshot_id:
            lines.append(f"- Workspace snapshot `{self.snapshot_id}` in project \"{self.project_name}\" "
                         "(`mushroom ui` shows it)")
        return "\n".join(lines)

    def metrics_frame(self) -> pd.DataFrame:
        """Drift and quality figures as a two-column table (drift: the sentence when not judged)."""
        rows: list[tuple] = [("production rows", self.rows)]
        if self.drift_note:
            rows.append(("data drift", self.drift_note))
        elif self.drift:
            rows += [("drifted columns", int(self.drift["count"])), ("drifted-column share", self.drift["share"]),
                     ("dataset drift", bool(self.drift["dataset_drift"]))]
        for key, value in (self.quality or {}).items():
            if value is not None:
                rows.append((key, value))
        return pd.DataFrame(rows, columns=["figure", "value"]).astype({"value": object})

    def record(self) -> dict:
        """Plain JSON data for reports/last_report.json (the runner adds status, times and the notebook)."""
        return {"result": self.status, "model_version": self.model_version, "rows": self.rows,
                "html": str(self.html_path) if self.html_path else None, "snapshot_id": self.snapshot_id,
                "false_edible": self.false_edible,
                "error": self.error, "notes": list(self.notes), "drift_note": self.drift_note,
                "drifted": (self.drift or {}).get("drifted"), "dataset_drift": (self.drift or {}).get("dataset_drift")}

    def _repr_markdown_(self) -> str:
        return self.summary()

    def __str__(self) -> str:
        return self.summary()

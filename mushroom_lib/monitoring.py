"""Monitoring: the Evidently report (drift + classification quality), its HTML and the workspace snapshot.

The report compares production rows (``data/prod_data.csv``) with the reference rows
(``data/ref_data.csv``):

* data drift on the 22 raw categorical features and on the PCA components, both computed with the
  current champion for reference and production rows;
* classification quality on the labelled production rows, poisonous = positive: accuracy, precision,
  recall, F1, confusion matrix (from the served ``prediction``) and ROC AUC / log loss (from the served
  ``p_poisonous``), plus the count of false_edible rows (poisonous called edible).

It writes ``reports/<UTC timestamp>-monitoring.html`` and adds the run to the workspace
``reports/workspace`` under the project "Mushroom monitoring", whose dashboard shows accuracy, F1,
false_edible and the drifted-column share over runs.

Drift tests depend on the production sample size (see ``drift_options``). Evidently is imported only
inside the functions that need it: importing it takes seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .ports import ensure_port_free
from .schema import FEATURES, LABELS, invalid_codes
from .settings import Settings

PROJECT_NAME = "Mushroom monitoring"
POSITIVE, NEGATIVE = LABELS["p"], LABELS["e"]  # "poisonous", "edible"
#: Below this many production rows the drift tests are p-value tests (chi-square / z / K-S), from
#: here on Evidently's distance tests (Jensen-Shannon / normed Wasserstein at 0.1). Evidently makes the
#: same switch but on the *reference* size, which calls small samples drifted (see ``drift_options``).
LARGE_SAMPLE = 1000
P_VALUE = 0.05          #: per-column significance level of the small-sample tests
DISTANCE = 0.1          #: per-column threshold of the large-sample distance tests
DRIFT_SHARE = 0.3       #: the dataset counts as drifted when at least this share of columns drifts
MIN_QUALITY_ROWS = 10   #: fewer labelled rows than this: the report holds the drift part only
_NAMESPACE = uuid.UUID("6f1c3a52-6d1e-4f55-9a0e-2b7f6c1d9e01")  # stable dashboard panel ids


class MonitoringError(RuntimeError):
    """The report cannot be made at all (no model, no reference rows)."""


@contextlib.contextmanager
def _quiet_imports():
    """Silence the DeprecationWarnings Evidently's import raises (numpy.core, litestar), nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*numpy\.core", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"litestar(\.|$)")
        yield


def _evidently():
    """Import Evidently once, on the monitoring path only, with telemetry off."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with _quiet_imports():
        import evidently  # noqa: F401
        from evidently.ui.workspace import Workspace  # noqa: F401
    return sys.modules["evidently"]


def utc_stamp(now: datetime | None = None) -> str:
    """UTC time for file names, e.g. 20250101T120000Z."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


# ------------------------------------------------------------------------------------------ result
@dataclass
class MonitoringResult:
    """What one monitoring run produced; shows itself as Markdown in a notebook."""

    status: str                       #: "full", "drift-only" or "nothing"
    notes: list[str] = field(default_factory=list)
    html_path: Path | None = None
    snapshot_id: str | None = None
    project_id: str | None = None
    project_name: str = PROJECT_NAME
    model_version: str | None = None
    rows: int = 0                     #: production rows in the report
    drift: dict | None = None         #: share, count, columns, dataset_drift, drifted, tests
    quality: dict | None = None       #: accuracy, precision, recall, f1, false_edible, roc_auc, log_loss
    seconds: float = 0.0

    def summary(self) -> str:
        """A few Markdown lines: what was written, drift, quality, and why anything is missing."""
        lines = [f"**Monitoring report** ({self.status}) for model {self.model_version or '?'}, "
                 f"{self.rows} production rows"]
        if self.drift:
            d = self.drift
            verdict = "**drift detected**" if d["dataset_drift"] else "no dataset drift"
            names = ", ".join(d["drifted"]) if d["drifted"] else "none"
            lines.append(f"- Data drift: {verdict}: {int(d['count'])} of {d['columns']} columns drifted "
                         f"(share {d['share']:.2f}, threshold {DRIFT_SHARE:.2f}); drifted columns: {names}. "
                         f"Tests: {d['tests']}.")
        if self.quality:
            q = self.quality
            parts = [f"{k} {q[k]:.4f}" for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
                     if q.get(k) is not None]
            if q.get("false_edible") is not None:
                parts.append(f"false_edible {int(q['false_edible'])}")
            lines.append("- Quality on the labelled production rows (poisonous = positive): " + ", ".join(parts))
        for note in self.notes:
            lines.append(f"- {note}")
        if self.html_path:
            lines.append(f"- HTML: `{self.html_path}`")
        if self.snapshot_id:
            lines.append(f"- Workspace snapshot `{self.snapshot_id}` in project \"{self.project_name}\" "
                         "(`mushroom ui` shows it)")
        return "\n".join(lines)

    def metrics_frame(self) -> pd.DataFrame:
        """Drift and quality figures as a two-column table."""
        rows = [("production rows", self.rows)]
        if self.drift:
            rows += [("drifted columns", int(self.drift["count"])), ("drifted-column share", self.drift["share"]),
                     ("dataset drift", bool(self.drift["dataset_drift"]))]
        for key, value in (self.quality or {}).items():
            if value is not None:
                rows.append((key, value))
        return pd.DataFrame(rows, columns=["figure", "value"])

    def _repr_markdown_(self) -> str:
        return self.summary()

    def __str__(self) -> str:
        return self.summary()


# ------------------------------------------------------------------------------------------ frames
def pca_columns(n: int) -> list[str]:
    return [f"pca_{i + 1}" for i in range(n)]


def score_frame(scorer, features: pd.DataFrame, target: pd.Series, prediction: pd.Series | None = None,
                p: pd.Series | np.ndarray | None = None) -> pd.DataFrame:
    """Features + target/prediction (words) + p_poisonous + false_edible + pca_1..n under ``scorer``.

    Without ``prediction``/``p`` the rows are scored with ``scorer`` (the reference); with them the
    served values are kept (production rows), and only the PCA coordinates come from ``scorer``.
    """
    out = features[FEATURES].reset_index(drop=True).copy()
    out["target"] = np.asarray(target, dtype=object)
    if prediction is None:
        scored = scorer.score(out[FEATURES])
        out["prediction"] = scored["prediction"].to_numpy()
        out["p_poisonous"] = scored["p_poisonous"].to_numpy(dtype=float)
    else:
        out["prediction"] = np.asarray(prediction, dtype=object)
        out["p_poisonous"] = np.asarray(p, dtype=float)
    out["false_edible"] = ((out["target"] == POSITIVE) & (out["prediction"] == NEGATIVE)).astype(int)
    coords = scorer.pca(out[FEATURES])
    for name, col in zip(pca_columns(coords.shape[1]), coords.T):
        out[name] = col
    return out


def _words(values: pd.Series) -> pd.Series:
    """e/p/edible/poisonous (any case) -> edible/poisonous; anything else -> None."""
    text = values.astype("string").str.strip().str.lower()
    mapped = text.map(lambda v: LABELS.get(v, v) if isinstance(v, str) else None)
    return mapped.where(mapped.isin([POSITIVE, NEGATIVE]), None).astype(object)


def load_reference(path: Path) -> pd.DataFrame:
    """The 22 features and target (words) of ``ref_data.csv``."""
    if not Path(path).exists():
        raise MonitoringError(f"no reference rows at {path}: run `mushroom train` first (it writes them)")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in [*FEATURES, "target"] if c not in raw.columns]
    if missing:
        raise MonitoringError(f"{path} lacks column(s) {', '.join(missing)}; `mushroom train` rewrites it")
    ref = raw[FEATURES].copy()
    ref["target"] = _words(raw["target"])
    return ref[ref["target"].notna()].reset_index(drop=True)


def _read_rows(path: Path, settings: Settings | None) -> tuple[pd.DataFrame | None, list[str]]:
    """Raw rows of a production file; the project's own prod_data.csv is read through FeedbackStore
    (which quarantines a torn last line under the lock), any other file as plain CSV."""
    from .feedback import PROD_COLUMNS, FeedbackStore

    if settings is not None and path.resolve() == settings.prod_path.resolve():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = FeedbackStore(settings).read(include_excluded=False)  # excluded feedback stays out
        return df, [str(w.message) for w in caught]
    import csv
    import io

    records = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8", errors="replace"), newline="")))
    header = [h.strip().lstrip("\ufeff") for h in (records[0] if records else [])]
    missing = [c for c in [*FEATURES, "target", "prediction", "p_poisonous"] if c not in header]
    if missing:
        return None, [f"{path} is not in the production format: column(s) {', '.join(missing)} are missing "
                      f"(expected {', '.join(PROD_COLUMNS)}); no report was written."]
    body = [r for r in records[1:] if r]
    good = [r for r in body if len(r) == len(header)]
    notes = [f"{len(body) - len(good)} line(s) of {path.name} with the wrong number of fields were left out."
             ] if len(good) < len(body) else []
    return pd.DataFrame(good, columns=header, dtype=object), notes


def load_production(path: Path, settings: Settings | None = None) -> tuple[pd.DataFrame | None, list[str]]:
    """Valid production rows (PROD_COLUMNS) and sentences about what was left out.

    Returns (None, [why]) when there is no file or no valid row. Rows with an invalid code, true label
    or prediction are left out and the first one is named.
    """
    path = Path(path)
    if not path.exists():
        return None, [f"No production rows yet (no file {path}): there is nothing to compare with the "
                      "reference, so no report was written. Submit labelled rows first "
                      "(`mushroom feedback FILE` or the dashboard)."]
    df, notes = _read_rows(path, settings)
    if df is None:
        return None, notes
    if df.empty:
        return None, [f"{path} holds no production rows yet: nothing to compare with the reference, so no "
                      "report was written."] + notes
    df = df.reset_index(drop=True)
    for col in FEATURES:
        df[col] = df[col].astype(str).str.strip()
    df["target"] = _words(df["target"])
    df["prediction"] = _words(df["prediction"])
    df["p_poisonous"] = pd.to_numeric(df["p_poisonous"], errors="coerce")
    problems: dict[int, str] = {}  # row position -> first problem found in it
    for col, bad in invalid_codes(df).items():
        for pos in bad:
            problems.setdefault(int(pos), f"row {pos + 1}, column '{col}' has {df[col].iloc[pos]!r}")
    for col, what in (("target", "true label"), ("prediction", "prediction")):
        for pos in np.flatnonzero(df[col].isna().to_numpy()):
            problems.setdefault(int(pos), f"row {pos + 1} has no valid {what} (edible/poisonous)")
    if problems:
        notes.append(f"{len(problems)} production row(s) with an invalid code or label were left out "
                     f"(first: {problems[min(problems)]}).")
        df = df.drop(index=list(problems)).reset_index(drop=True)
    if df.empty:
        return None, notes + ["No valid production rows remain, so no report was written."]
    return df, notes


# ------------------------------------------------------------------------------------------ drift
def drift_options(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> tuple[dict, str]:
    """Drift tests for ``current`` against ``reference``, chosen by the current sample size.

    Evidently picks its tests by the *reference* size: over 1000 reference rows it uses Jensen-Shannon /
    normed Wasserstein distances at 0.1, whose sampling noise alone exceeds 0.1 for small batches (rows
    drawn from the reference itself were called drifted in most columns at 10-100 rows). A distance
    needs a large sample; a p-value test accounts for the sample size. So below ``LARGE_SAMPLE``
    production rows: chi-square on the categorical features and Kolmogorov-Smirnov on the PCA
    components, p < 0.05 per column; from ``LARGE_SAMPLE`` rows on: Evidently's distance tests, where
    p-values would flag tiny, harmless shifts. The dataset counts as drifted when at least
    ``DRIFT_SHARE`` of the columns drift. Measured on the real data with 300 samples per size: samples
    of the reference itself were flagged in 2.0% (10 rows), 1.3% (30) and 1.3% (100) of draws; batches
    of foul-smelling mushrooms (odor f) in 57% (10 rows), 92% (20) and 100% (30 and more). A shift in a
    single column (odor forced to f, the rest unchanged) is named among the drifted columns without
    tipping the dataset-level flag. tests/test_monitoring.py checks both sides.

    One test per column type (not per column) keeps the metric's configuration the same from run to
    run, so the dashboard draws one line per regime. Returns (keyword arguments for DataDriftPreset /
    DriftedColumnsCount, a description).
    """
    n = len(current)
    if n < LARGE_SAMPLE:
        options = {"cat_method": "chisquare", "num_method": "ks", "cat_threshold": P_VALUE, "num_threshold": P_VALUE}
        text = (f"{n} production rows (< {LARGE_SAMPLE}): chi-square on the features and Kolmogorov-Smirnov "
                f"on the PCA components, p < {P_VALUE} per column")
    else:
        options = {"cat_method": "jensenshannon", "num_method": "wasserstein", "cat_threshold": DISTANCE,
                   "num_threshold": DISTANCE}
        text = (f"{n} production rows (>= {LARGE_SAMPLE}): Jensen-Shannon distance on the features and "
                f"normed Wasserstein distance on the PCA components, >= {DISTANCE} per column")
    text += f"; dataset drift when >= {DRIFT_SHARE:.0%} of {len(columns)} columns drift"
    return {"columns": list(columns), "drift_share": DRIFT_SHARE, **options}, text


def _data_definition(pca: list[str], with_quality: bool, with_probability: bool):
    from evidently import BinaryClassification, DataDefinition

    tasks = []
    if with_quality:
        tasks.append(BinaryClassification(name="default", target="target", prediction_labels="prediction",
                                          pos_label=POSITIVE))
    if with_probability:
        tasks.append(BinaryClassification(name="probability", target="target", prediction_probas="p_poisonous",
                                          pos_label=POSITIVE))
    return DataDefinition(categorical_columns=list(FEATURES),
                          numerical_columns=[*pca, "p_poisonous", "false_edible"],
                          classification=tasks or None)


def drift_check(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str] | None = None) -> dict:
    """Dataset-level drift of ``current`` against ``reference`` with the report's tests, without HTML.

    Both frames hold the 22 features and, optionally, pca_* columns (``score_frame``). Returns
    {rows, count, share, columns, dataset_drift}.
    """
    _evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount

    columns = columns or [c for c in reference.columns if c in FEATURES or c.startswith("pca_")]
    options, _ = drift_options(reference, current, columns)
    definition = DataDefinition(categorical_columns=[c for c in columns if c in FEATURES],
                                numerical_columns=[c for c in columns if c not in FEATURES])
    with _quiet_imports(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy on codes absent from the reference
        snap = Report([DriftedColumnsCount(**options)]).run(
            Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition))
    value = snap.dict()["metrics"][0]["value"]
    share = float(value["share"])
    return {"rows": len(current), "count": int(value["count"]), "share": share, "columns": len(columns),
            "dataset_drift": share >= DRIFT_SHARE}


# ------------------------------------------------------------------------------------------ quality
def _quality_plan(prod: pd.DataFrame) -> tuple[bool, bool, list[str]]:
    """(label metrics possible, probability metrics possible, sentences about what is left out)."""
    n = len(prod)
    if n < MIN_QUALITY_ROWS:
        return False, False, [f"Only {n} labelled production row(s) (the quality part needs at least "
                              f"{MIN_QUALITY_ROWS}): the report holds the drift part only."]
    targets, preds = set(prod["target"]), set(prod["prediction"])
    right = int((prod["target"] == prod["prediction"]).sum())
    fe = int(prod["false_edible"].sum())
    if len(targets | preds) < 2:
        (only,) = targets
        return False, False, [
            f"All {n} labelled production rows are {only} and all were predicted {only}: Evidently's "
            f"classification metrics need both classes, so the quality part is left out "
            f"({right} of {n} predictions right, false_edible {fe})."]
    notes = []
    probability = True
    if len(targets) < 2:
        (only,) = targets
        probability = False
        notes.append(f"All {n} labelled production rows are {only}: ROC AUC and log loss need both classes "
                     "among the true labels, so the probability metrics are left out.")
    elif prod["p_poisonous"].isna().any() or not prod["p_poisonous"].between(0, 1).all():
        probability = False
        notes.append("Some production rows have no valid p_poisonous: the probability metrics are left out.")
    return True, probability, notes


def _quality_metrics(with_probability: bool) -> list:
    from evidently.metrics import LogLoss, RocAuc, SumValue
    from evidently.presets import ClassificationPreset

    metrics = [ClassificationPreset(classification_name="default"), SumValue(column="false_edible")]
    if with_probability:
        metrics += [RocAuc(classification_name="probability"), LogLoss(classification_name="probability")]
    return metrics


def _read_snapshot(snap, pca: list[str]) -> tuple[dict, dict]:
    """(drift summary, quality figures) from a snapshot's metrics and tests."""
    data = snap.dict()
    drift, quality = None, {}
    names = {"Accuracy": "accuracy", "Precision": "precision", "Recall": "recall", "F1Score": "f1",
             "RocAuc": "roc_auc", "LogLoss": "log_loss"}
    for m in data["metrics"]:
        cfg = m.get("config") or {}
        kind = str(cfg.get("type", "")).rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount" and drift is None:
            drift = {"count": float(m["value"]["count"]), "share": float(m["value"]["share"]),
                     "columns": len(cfg.get("columns") or [])}
        elif kind in names and names[kind] not in quality:
            quality[names[kind]] = float(m["value"])
        elif kind == "SumValue" and cfg.get("column") == "false_edible":
            quality["false_edible"] = int(round(float(m["value"])))
    drifted = []
    for t in data.get("tests", []):
        params = (t.get("metric_config") or {}).get("params") or {}
        if str(params.get("type", "")).endswith(":ValueDrift") and str(t.get("status", "")).endswith("FAIL"):
            drifted.append(params.get("column"))
    if drift is not None:
        order = [*FEATURES, *pca]
        drift["drifted"] = sorted(drifted, key=lambda c: order.index(c) if c in order else len(order))
        drift["dataset_drift"] = drift["share"] >= DRIFT_SHARE
    return drift, quality


# ------------------------------------------------------------------------------------------ workspace
def _panel(key: str, title: str, subtitle: str, metric: str, labels: dict, legend: str):
    from evidently.sdk.models import DashboardPanelPlot, PanelMetric

    return DashboardPanelPlot(
        id=uuid.uuid5(_NAMESPACE, key), title=title, subtitle=subtitle, size="half",
        values=[PanelMetric(legend=legend, metric=metric, metric_labels=labels)],
        plot_params={"plot_type": "line"})


def dashboard_model():
    """The whole dashboard of the project: four line panels, stable ids (setting it twice changes nothing)."""
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    panels = [
        _panel("accuracy", "Accuracy", "labelled production rows, served predictions", "Accuracy",
               {}, "accuracy"),
        _panel("f1", "F1 (poisonous = positive)", "labelled production rows", "F1Score", {}, "F1"),
        _panel("false_edible", "false_edible", "poisonous rows the model called edible (count)", "SumValue",
               {"column": "false_edible"}, "false_edible"),
        _panel("drift_share", "Drifted-column share", f"22 features + PCA components; dataset drift at "
               f">= {DRIFT_SHARE:.0%}", "DriftedColumnsCount", {"value_type": "share"},
               "share ({{cat_method}} / {{num_method}})"),
    ]
    tab = DashboardTabModel(id=uuid.uuid5(_NAMESPACE, "tab:monitoring"), title="Monitoring",
                            panels=[p.id for p in panels])
    return DashboardModel(tabs=[tab], panels=panels)


def ensure_project(workspace, name: str = PROJECT_NAME):
    """The project called ``name``: found by name first, created only when absent (caller holds the lock)."""
    found = [p for p in workspace.search_project(name) if p.name == name]
    if found:
        return found[0]
    project = workspace.create_project(name, description="Drift and quality of the mushroom classifier "
                                       "on production rows, one snapshot per report")
    return project


def _workspace_lock(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f".{path.name}.lock"))


def add_to_workspace(snapshot, workspace_path: Path, project_name: str = PROJECT_NAME) -> tuple[str, str]:
    """Add a snapshot to the project (created once) and set its dashboard; returns (project id, snapshot id)."""
    from evidently.ui.workspace import Workspace

    workspace_path = Path(workspace_path)
    with _workspace_lock(workspace_path):
        ws = Workspace(str(workspace_path))
        project = ensure_project(ws, project_name)
        ref = ws.add_run(project.id, snapshot, include_data=False)
        ws.save_dashboard(project.id, dashboard_model())
    return str(project.id), str(ref.id)


def _claim_html(reports_dir: Path, now: datetime) -> Path:
    """A new reports/<UTC timestamp>-monitoring.html path (a suffix when two runs share a second)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp(now)
    for i in range(1000):
        path = reports_dir / (f"{stamp}-monitoring.html" if i == 0 else f"{stamp}-{i}-monitoring.html")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return path
        except FileExistsError:
            continue
    raise MonitoringError(f"could not claim a report name in {reports_dir}")


# ------------------------------------------------------------------------------------------ the report
def build_report(settings: Settings, *, reference_path: str | Path | None = None,
                 production_path: str | Path | None = None, workspace_path: str | Path | None = None,
                 project_name: str = PROJECT_NAME, output_html: str | Path | None = None,
                 add_snapshot: bool = True) -> MonitoringResult:
    """Build the Evidently report for the current champion; write HTML and add the workspace snapshot.

    Never raises for the state of the production rows: with none it writes nothing, with too few
    labelled rows or only one class it writes the drift part and says why the quality part is absent.
    Raises MonitoringError (or NoChampionError) when there is no model or no reference.
    """
    from .registry import Registry
    from .scoring import Scorer
    from .service import NoChampionError

    start = time.perf_counter()
    registry = Registry(settings)
    version = registry.champion()
    if version is None:
        raise NoChampionError(f"no trained model in {settings.artifacts_dir}; run `mushroom train` first")
    reference_path = Path(reference_path or settings.ref_path)
    production_path = Path(production_path or settings.prod_path)
    ref_raw = load_reference(reference_path)
    prod_raw, notes = load_production(production_path, settings)
    result = MonitoringResult(status="nothing", notes=notes, model_version=version, project_name=project_name)
    if prod_raw is None:
        result.seconds = time.perf_counter() - start
        return result

    scorer = Scorer(registry.load(version))
    reference = score_frame(scorer, ref_raw, ref_raw["target"])
    production = score_frame(scorer, prod_raw, prod_raw["target"], prod_raw["prediction"], prod_raw["p_poisonous"])
    pca = [c for c in reference.columns if c.startswith("pca_")]
    with_quality, with_probability, quality_notes = _quality_plan(production)
    result.notes += quality_notes
    result.rows = len(production)

    _evidently()
    from evidently import Dataset, Report
    from evidently.metrics import SumValue
    from evidently.presets import DataDriftPreset

    options, tests_text = drift_options(reference, production, [*FEATURES, *pca])
    now = datetime.now(timezone.utc)
    tags = [version]
    metadata = {"model_version": version, "production_rows": str(len(production)), "drift_tests": tests_text}

    def run(quality: bool, probability: bool):
        metrics = [DataDriftPreset(**options)]
        metrics += _quality_metrics(probability) if quality else [SumValue(column="false_edible")]
        definition = _data_definition(pca, quality, quality and probability)
        from sklearn.exceptions import UndefinedMetricWarning

        with _quiet_imports(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy on codes absent from the reference
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # per-label recall of an absent class;
            # the notes already say which metrics a one-class batch lacks
            return Report(metrics, metadata=metadata, tags=tags, include_tests=True).run(
                Dataset.from_pandas(production, data_definition=definition),
                Dataset.from_pandas(reference, data_definition=definition),
                timestamp=now.replace(tzinfo=None), name=f"{version}: {len(production)} production rows")

    try:
        snapshot = run(with_quality, with_probability)
    except (ValueError, KeyError, IndexError) as exc:
        if not with_quality:
            raise
        result.notes.append(f"Evidently could not compute the quality part ({type(exc).__name__}: {exc}); "
                            "the report holds the drift part only.")
        with_quality = False
        snapshot = run(False, False)
    drift, quality = _read_snapshot(snapshot, pca)
    drift["tests"] = tests_text
    result.drift = drift
    result.quality = quality if with_quality else None
    if not with_quality and "false_edible" in quality:
        result.notes.append(f"false_edible among the production rows: {quality['false_edible']}.")
    result.status = "full" if with_quality else "drift-only"

    html_path = Path(output_html) if output_html else _claim_html(settings.reports_dir, now)
    from .fileio import atomic_write_text

    atomic_write_text(html_path, snapshot.get_html_str(as_iframe=False))
    os.chmod(html_path, 0o644)  # a report to share, not a secret (the atomic write makes 0600 files)
    result.html_path = html_path
    if add_snapshot:
        result.project_id, result.snapshot_id = add_to_workspace(
            snapshot, Path(workspace_path or settings.workspace_dir), project_name)
    result.seconds = time.perf_counter() - start
    return result


def report_for_notebook(home: str | Path | None = None, **kwargs) -> MonitoringResult:
    """``build_report`` for notebooks/report.ipynb: every expected problem becomes a sentence, not a traceback."""
    from .schema import SchemaError
    from .service import NoChampionError
    from .settings import get_settings

    settings = get_settings(home)
    kwargs = {k: v for k, v in kwargs.items() if v not in (None, "")}
    try:
        return build_report(settings, **kwargs)
    except (MonitoringError, NoChampionError, SchemaError, OSError) as exc:
        return MonitoringResult(status="nothing", notes=[f"No report was written: {exc}"])


# ------------------------------------------------------------------------------------------ evidently ui
def ui_command(workspace: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The `evidently ui` command line for the workspace (this interpreter's Evidently)."""
    return [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace), "--host", host,
            "--port", str(port)]


def serve_ui(settings: Settings, port: int = 8082) -> int:
    """Run `evidently ui` on reports/workspace, bound to 127.0.0.1, telemetry off; returns its exit code."""
    host = "127.0.0.1"
    ensure_port_free(port)
    workspace = settings.workspace_dir
    workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    print(f"evidently ui: http://{host}:{port} (workspace {workspace}); Ctrl-C stops it", file=sys.stderr)
    proc = subprocess.Popen(ui_command(workspace, port, host), env=env)

    def forward(signum, _frame):
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)

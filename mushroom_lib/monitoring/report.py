"""The Evidently report: production rows against the reference, drift + classification quality, HTML + snapshot.

``build_report`` compares ``data/prod_data.csv`` with ``data/ref_data.csv`` under the current champion
(drift on the 22 features and the PCA components; quality on the labelled rows, poisonous = positive:
accuracy, precision, recall, F1, confusion matrix, ROC AUC / log loss from ``p_poisonous``, and the
count of false_edible rows), writes ``reports/<UTC>-monitoring.html`` and adds the snapshot to the
workspace. Drift is judged only from ``MIN_DRIFT_ROWS`` rows on (see ``drift.py``); quality only from
``MIN_QUALITY_ROWS`` labelled rows with both classes. Evidently is imported inside functions only.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import NoChampionError
from ..core.fileio import atomic_write_text
from ..core.settings import Settings, get_settings
from ..core.vocab import CODE_TO_WORD, EDIBLE, POISONOUS, label_word, utc_now, utc_stamp
from ..data.schema import FEATURES, SchemaError, invalid_codes, read_csv_file
from ..feedback.store import PROD_COLUMNS, FeedbackStore
from ..registry.versions import Registry
from ..scoring.scorer import Scorer
from .drift import (
    DRIFT_SHARE,
    MonitoringError,
    drift_options,
    load_evidently,
    quiet_imports,
    too_few_rows,
)
from .result import MonitoringResult
from .workspace import PROJECT_NAME, add_to_workspace

POSITIVE, NEGATIVE = CODE_TO_WORD[POISONOUS], CODE_TO_WORD[EDIBLE]  # "poisonous", "edible"
MIN_QUALITY_ROWS = 10   #: fewer labelled rows than this: the report holds no quality part


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
    return values.map(label_word).astype(object)


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
    """Raw rows of a production file through the library's readers: the home's prod_data.csv through
    FeedbackStore (which quarantines a torn last line under the lock), any other file through
    ``schema.read_csv_file`` (SchemaError on a malformed file)."""
    if settings is not None and path.resolve() == settings.prod_path.resolve():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = FeedbackStore(settings).read(include_excluded=False)  # excluded feedback stays out
        return df, [str(w.message) for w in caught]
    df = read_csv_file(path)
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    missing = [c for c in [*FEATURES, "target", "prediction", "p_poisonous"] if c not in df.columns]
    if missing:
        return None, [f"{path} is not in the production format: column(s) {', '.join(missing)} are missing "
                      f"(expected {', '.join(PROD_COLUMNS)}); no report was written."]
    return df, []


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



# ------------------------------------------------------------------------------------------ quality
def _quality_plan(prod: pd.DataFrame) -> tuple[bool, bool, list[str]]:
    """(label metrics possible, probability metrics possible, sentences about what is left out)."""
    n = len(prod)
    if n < MIN_QUALITY_ROWS:
        return False, False, [f"Only {n} labelled production row(s) (the quality part needs at least "
                              f"{MIN_QUALITY_ROWS}): the report has no quality figures."]
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
    # lazy (Evidently, ~2 s): importing the monitoring package must not load it (see __init__)
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



def _data_definition(pca: list[str], with_quality: bool, with_probability: bool):
    from evidently import (  # lazy: Evidently, see _quality_metrics
        BinaryClassification,
        DataDefinition,
    )

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
@dataclass
class _Plan:
    """Which parts a batch supports: drift (enough rows), quality (labels of both kinds), probabilities."""

    drift: bool
    quality: bool
    probability: bool
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return {(True, True): "full", (True, False): "drift-only", (False, True): "quality-only",
                (False, False): "counts-only"}[(self.drift, self.quality)]


def _plan(production: pd.DataFrame) -> _Plan:
    quality, probability, notes = _quality_plan(production)
    return _Plan(drift=too_few_rows(len(production)) is None, quality=quality, probability=probability,
                 notes=notes)


def _run_evidently(reference: pd.DataFrame, production: pd.DataFrame, plan: _Plan, version: str, now: datetime):
    """One Evidently Report over the parts in ``plan``; the drift metric is left out when not judged."""
    load_evidently()  # lazy imports below: Evidently (and scikit-learn under it), loaded by load_evidently
    from evidently import Dataset, Report
    from evidently.metrics import SumValue
    from evidently.presets import DataDriftPreset
    from sklearn.exceptions import UndefinedMetricWarning

    pca = [c for c in reference.columns if c.startswith("pca_")]
    options, tests_text = drift_options(reference, production, [*FEATURES, *pca])
    metrics = [DataDriftPreset(**options)] if plan.drift else []
    metrics += _quality_metrics(plan.probability) if plan.quality else [SumValue(column="false_edible")]
    metadata = {"model_version": version, "production_rows": str(len(production)),
                "drift_tests": tests_text if plan.drift else too_few_rows(len(production))}
    definition = _data_definition(pca, plan.quality, plan.quality and plan.probability)
    with quiet_imports(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy on codes absent from the reference
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # per-label recall of an absent class;
        # the notes already say which metrics a one-class batch lacks
        snapshot = Report(metrics, metadata=metadata, tags=[version], include_tests=True).run(
            Dataset.from_pandas(production, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
            timestamp=now.replace(tzinfo=None), name=f"{version}: {len(production)} production rows")
    return snapshot, tests_text


def _compute(result: MonitoringResult, reference: pd.DataFrame, production: pd.DataFrame, now: datetime):
    """Run the report for ``result.model_version`` and fill ``result``; returns the snapshot."""
    plan = _plan(production)
    result.notes += plan.notes
    result.rows = len(production)
    result.drift_note = too_few_rows(len(production))
    try:
        snapshot, tests_text = _run_evidently(reference, production, plan, result.model_version, now)
    except (ValueError, KeyError, IndexError) as exc:
        if not plan.quality:
            raise
        result.notes.append(f"Evidently could not compute the quality part ({type(exc).__name__}: {exc}); "
                            "the report holds no quality figures.")
        plan = _Plan(plan.drift, False, False)
        snapshot, tests_text = _run_evidently(reference, production, plan, result.model_version, now)
    drift, quality = _read_snapshot(snapshot, [c for c in reference.columns if c.startswith("pca_")])
    if drift is not None:
        drift["tests"] = tests_text
    result.drift = drift
    result.quality = quality if plan.quality else None
    result.false_edible = quality.get("false_edible")
    if not plan.quality and "false_edible" in quality:
        result.notes.append(f"false_edible among the production rows: {quality['false_edible']}.")
    result.status = plan.status
    return snapshot


def _champion(settings: Settings) -> str:
    version = Registry(settings).champion()
    if version is None:
        raise NoChampionError(f"no trained model in {settings.artifacts_dir}; run `mushroom train` first")
    return version


def build_report(settings: Settings, *, reference_path: str | Path | None = None,
                 production_path: str | Path | None = None, workspace_path: str | Path | None = None,
                 project_name: str = PROJECT_NAME, output_html: str | Path | None = None,
                 add_snapshot: bool = True) -> MonitoringResult:
    """Build the Evidently report for the current champion; write HTML and add the workspace snapshot.

    Never raises for the state of the production rows: with none it writes nothing; with too few rows
    it judges no drift and says so; with too few labelled rows or one class it says why the quality
    part is absent. Raises MonitoringError (or NoChampionError) when there is no model or no reference.
    ``result.model_version`` is the champion when the computation started: the version it covers.
    """
    start = time.perf_counter()
    version = _champion(settings)
    ref_raw = load_reference(Path(reference_path or settings.ref_path))
    prod_raw, notes = load_production(Path(production_path or settings.prod_path), settings)
    result = MonitoringResult(status="nothing", notes=notes, model_version=version, project_name=project_name)
    if prod_raw is not None:
        scorer = Scorer(Registry(settings).load(version))
        reference = score_frame(scorer, ref_raw, ref_raw["target"])
        production = score_frame(scorer, prod_raw, prod_raw["target"], prod_raw["prediction"],
                                 prod_raw["p_poisonous"])
        now = utc_now()
        snapshot = _compute(result, reference, production, now)
        result.html_path = Path(output_html) if output_html else _claim_html(settings.reports_dir, now)
        atomic_write_text(result.html_path, snapshot.get_html_str(as_iframe=False))
        os.chmod(result.html_path, 0o644)  # a report to share, not a secret (atomic writes make 0600 files)
        if add_snapshot:
            result.project_id, result.snapshot_id = add_to_workspace(
                snapshot, Path(workspace_path or settings.workspace_dir), project_name)
    result.seconds = time.perf_counter() - start
    return result


def report_for_notebook(home: str | Path | None = None, outcome_path: str | Path | None = None,
                        **kwargs) -> MonitoringResult:
    """``build_report`` for notebooks/report.ipynb: every expected problem becomes a sentence, not a traceback.

    With ``outcome_path`` the result's record (``MonitoringResult.record``) is written there as JSON
    (atomically): the runner reads it for reports/last_report.json and the executed notebook's name.
    """
    settings = get_settings(home)
    kwargs = {k: v for k, v in kwargs.items() if v not in (None, "")}
    try:
        result = build_report(settings, **kwargs)
    except (MonitoringError, NoChampionError, SchemaError, OSError) as exc:
        result = MonitoringResult(status="error", error=str(exc))
    if outcome_path:
        atomic_write_text(outcome_path, json.dumps(result.record()))
    return result

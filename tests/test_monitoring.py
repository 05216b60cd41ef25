"""Monitoring: drift tests by sample size, the report's graceful cases, the workspace, `evidently ui`.

Real data through the ``trained_home`` fixture; production rows are made by ModelService.submit_feedback
or written in the documented prod_data.csv format (feedback.PROD_COLUMNS).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mushroom_lib import monitoring as mon
from mushroom_lib.data import load_dataset
from mushroom_lib.feedback import PROD_COLUMNS
from mushroom_lib.ports import free_port
from mushroom_lib.registry import Registry
from mushroom_lib.schema import FEATURES, LABELS
from mushroom_lib.scoring import Scorer
from mushroom_lib.service import ModelService
from mushroom_lib.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ helpers
def submit(home: Path, rows: pd.DataFrame) -> None:
    """Production rows through the service (K huge: no retrain while filling prod_data.csv)."""
    ModelService(settings=get_settings(home, k=10**9)).submit_feedback(rows, source="test")


def write_prod(home: Path, rows: pd.DataFrame, prediction=None, p=None) -> None:
    """prod_data.csv in the documented format, with chosen predictions / probabilities."""
    out = rows[FEATURES].reset_index(drop=True).copy()
    out["target"] = rows["class"].map(LABELS).to_numpy()
    out["prediction"] = out["target"] if prediction is None else prediction
    out["p_poisonous"] = (out["target"] == "poisonous").astype(float) if p is None else p
    out["model_version"] = "v0001"
    out["timestamp"] = "2025-01-01T00:00:00.000Z"
    out["source"] = "test"
    out["feedback_id"] = range(1, len(out) + 1)
    path = get_settings(home).prod_path
    path.parent.mkdir(parents=True, exist_ok=True)
    out[PROD_COLUMNS].to_csv(path, index=False, lineterminator="\n")


def snapshots(workspace: Path) -> list[Path]:
    return sorted(workspace.glob("*/snapshots/*.json"))


@pytest.fixture(scope="module")
def reference(_trained_template):
    """Reference rows scored with the champion (22 features, target, prediction, pca_*)."""
    settings = get_settings(_trained_template)
    registry = Registry(settings)
    scorer = Scorer(registry.load(registry.champion()))
    raw = mon.load_reference(settings.ref_path)
    return mon.score_frame(scorer, raw, raw["target"]), scorer


# ------------------------------------------------------------------------------------------ imports
def test_importing_the_library_does_not_import_evidently_plotly_or_papermill():
    code = ("import sys, mushroom_lib, mushroom_lib.monitoring, mushroom_lib.runner, mushroom_lib.plots, "
            "mushroom_lib.cli; print([m for m in ('evidently', 'plotly', 'papermill') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------ drift tests
def test_reference_samples_are_not_called_drifted_but_foul_odour_batches_are(reference):
    """False alarms: <= 1 of 20 reference samples per size (10, 30, 100 rows). Real drift: caught."""
    ref, _ = reference
    rng = np.random.default_rng(2024)
    for n in (10, 30, 100):
        flagged = [mon.drift_check(ref, ref.sample(n, random_state=int(rng.integers(2**31))))["dataset_drift"]
                   for _ in range(20)]
        assert sum(flagged) <= 1, f"{sum(flagged)} of 20 reference samples of {n} rows called drifted"
    foul = ref[ref["odor"] == "f"]
    for n in (30, 100):
        checks = [mon.drift_check(ref, foul.sample(n, random_state=int(rng.integers(2**31)))) for _ in range(5)]
        assert all(c["dataset_drift"] for c in checks), f"foul-odour batches of {n} rows not all flagged"


def test_small_samples_get_p_value_tests_and_large_ones_distances(reference):
    ref, _ = reference
    small, text_small = mon.drift_options(ref, ref.head(50), FEATURES)
    large, text_large = mon.drift_options(ref, ref.head(mon.LARGE_SAMPLE), FEATURES)
    assert (small["cat_method"], small["num_method"], small["cat_threshold"]) == ("chisquare", "ks", 0.05)
    assert (large["cat_method"], large["num_method"]) == ("jensenshannon", "wasserstein")
    assert "50 production rows" in text_small and "Jensen-Shannon" in text_large


def test_odor_forced_to_foul_is_named_as_a_drifted_column(trained_home):
    rows = load_dataset(get_settings(trained_home)).sample(30, random_state=3)
    rows["odor"] = "f"  # everything else as in the reference
    submit(trained_home, rows)
    result = mon.build_report(get_settings(trained_home), add_snapshot=False)
    assert "odor" in result.drift["drifted"]
    assert "odor" in result.summary()


# ------------------------------------------------------------------------------------------ graceful cases
def test_no_production_rows_writes_nothing_and_says_why(trained_home):
    settings = get_settings(trained_home)
    result = mon.build_report(settings)
    assert result.status == "nothing" and result.html_path is None and result.snapshot_id is None
    assert "No production rows yet" in result.summary()
    assert not list(settings.reports_dir.glob("*-monitoring.html"))
    assert not snapshots(settings.workspace_dir)


def test_too_few_labelled_rows_give_the_drift_part_only(trained_home):
    settings = get_settings(trained_home)
    submit(trained_home, load_dataset(settings).sample(4, random_state=1))
    result = mon.build_report(settings)
    assert result.status == "drift-only" and result.quality is None
    assert "Only 4 labelled production row(s)" in result.summary()
    assert result.html_path.exists() and len(snapshots(settings.workspace_dir)) == 1


def test_one_class_batch_gives_drift_and_a_sentence_why_quality_is_absent(trained_home):
    settings = get_settings(trained_home)
    data = load_dataset(settings)
    write_prod(trained_home, data[data["class"] == "p"].head(25))  # all poisonous, all predicted poisonous
    result = mon.build_report(settings)
    assert result.status == "drift-only" and result.drift is not None
    assert "need both classes" in result.summary()
    html = result.html_path.read_text()
    assert "drift" in html.lower()


def test_one_class_truth_with_mixed_predictions_keeps_label_metrics_only(trained_home):
    settings = get_settings(trained_home)
    data = load_dataset(settings)
    rows = data[data["class"] == "p"].head(20)
    pred = ["edible"] * 2 + ["poisonous"] * 18
    write_prod(trained_home, rows, prediction=pred, p=[0.0] * 2 + [1.0] * 18)
    result = mon.build_report(settings)
    assert result.status == "full"
    assert result.quality["accuracy"] == pytest.approx(0.9)
    assert result.quality["false_edible"] == 2
    assert "roc_auc" not in result.quality
    assert "probability metrics are left out" in result.summary()


def test_invalid_rows_are_left_out_and_named(trained_home):
    settings = get_settings(trained_home)
    data = load_dataset(settings)
    write_prod(trained_home, data.sample(30, random_state=5))
    lines = settings.prod_path.read_text().splitlines()
    lines[3] = "q" + lines[3][1:]  # cap-shape q is no code
    cells = lines[5].split(",")
    cells[PROD_COLUMNS.index("target")] = "maybe"
    lines[5] = ",".join(cells)
    settings.prod_path.write_text("\n".join(lines) + "\n")
    result = mon.build_report(settings, add_snapshot=False)
    assert result.rows == 28
    assert "2 production row(s) with an invalid code or label were left out" in result.summary()
    assert "row 3, column 'cap-shape' has 'q'" in result.summary()


# ------------------------------------------------------------------------------------------ workspace + ui
def test_report_quality_matches_the_served_predictions(trained_home):
    settings = get_settings(trained_home)
    rows = load_dataset(settings).sample(200, random_state=11)
    submit(trained_home, rows)
    result = mon.build_report(settings)
    prod = pd.read_csv(settings.prod_path, dtype=str, keep_default_na=False)
    served = (prod["target"] == prod["prediction"]).mean()
    assert result.status == "full"
    assert result.quality["accuracy"] == pytest.approx(served)
    assert {"precision", "recall", "f1", "roc_auc", "log_loss", "false_edible"} <= set(result.quality)
    html = result.html_path.read_text()
    assert "Accuracy" in html and "F1" in html and "drift" in html.lower()
    assert result.html_path.parent == settings.reports_dir and result.html_path.name.endswith("Z-monitoring.html")


def test_project_is_created_once_and_the_dashboard_is_not_duplicated(trained_home):
    settings = get_settings(trained_home)
    submit(trained_home, load_dataset(settings).sample(40, random_state=2))
    first = mon.build_report(settings)
    second = mon.build_report(settings)
    assert first.project_id == second.project_id
    projects = [p for p in settings.workspace_dir.iterdir() if p.is_dir() and (p / "metadata.json").exists()]
    assert len(projects) == 1
    assert len(snapshots(settings.workspace_dir)) == 2
    mon._evidently()
    from evidently.ui.workspace import Workspace

    dashboard = Workspace(str(settings.workspace_dir)).get_dashboard(first.project_id)
    titles = [p.title for p in dashboard.panels]
    assert titles == ["Accuracy", "F1 (poisonous = positive)", "false_edible", "Drifted-column share"]
    assert len(dashboard.tabs) == 1 and len(dashboard.tabs[0].panels) == 4


def _get(url: str, data: dict | None = None):
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"content-type": "application/json"}, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_evidently_ui_serves_the_project_and_its_snapshots(trained_home):
    settings = get_settings(trained_home)
    submit(trained_home, load_dataset(settings).sample(40, random_state=4))
    result = mon.build_report(settings)
    port = free_port()
    env = {**os.environ, "MUSHROOM_HOME": str(trained_home)}
    env.pop("DO_NOT_TRACK", None)  # serve_ui must set it itself
    proc = subprocess.Popen([sys.executable, "-m", "mushroom_lib.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(120):
            try:
                _get(f"{base}/version")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                time.sleep(0.5)
        projects = _get(f"{base}/projects")
        assert [p["name"] for p in projects] == ["Mushroom monitoring"]
        pid = projects[0]["id"]
        snaps = _get(f"{base}/projects/{pid}/snapshots")
        assert [s["id"] for s in snaps] == [result.snapshot_id]
        assert snaps[0]["metadata"]["model_version"] == "v0001"
        series = _get(f"{base}/v2/snapshots/{pid}/data_series_batch", {"series_filter": [
            {"tags": [], "metadata": {}, "metric": p.values[0].metric, "metric_labels": p.values[0].metric_labels}
            for p in mon.dashboard_model().panels]})
        kinds = {s["metric_type"].rsplit(":", 1)[-1] for s in series["series"] if s["values"]}
        assert kinds == {"Accuracy", "F1Score", "SumValue", "DriftedColumnsCount"}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        proc.stdout.close()


def test_ui_refuses_a_port_in_use(trained_home):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(trained_home), "ui",
                              "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("mushroom: error: port")
    assert "Traceback" not in out.stderr

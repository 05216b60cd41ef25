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
from report_helpers import html_counters, snapshots, submit

from mushroom_lib import monitoring as mon
from mushroom_lib.core.ports import free_port
from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import load_dataset
from mushroom_lib.data.schema import FEATURES, LABELS
from mushroom_lib.feedback.store import PROD_COLUMNS
from mushroom_lib.registry.versions import Registry
from mushroom_lib.scoring.scorer import Scorer

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ helpers
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
    code = ("import sys, mushroom_lib, mushroom_lib.monitoring, mushroom_lib.notebooks.runner, mushroom_lib.notebooks.plots, "
            "mushroom_lib.cli.commands; print([m for m in ('evidently', 'plotly', 'papermill') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------ drift tests
def test_reference_samples_are_not_called_drifted_but_foul_odour_batches_are(reference):
    """False alarms: <= 1 of 20 reference samples per size flags the dataset, <= 2 name any column (30, 100
    rows). Real drift: odor is named in every foul-odour batch, and from 100 rows the dataset is flagged
    (benchmarks/drift_rates.py has the rates). Fixed seeds: the same draws every run."""
    ref, _ = reference
    rng = np.random.default_rng(2024)
    for n in (30, 100):
        checks = [mon.drift_check(ref, ref.sample(n, random_state=int(rng.integers(2**31)))) for _ in range(20)]
        assert all(c["judged"] for c in checks)
        assert sum(c["dataset_drift"] for c in checks) <= 1, f"reference samples of {n} rows called drifted"
        named = [c["drifted"] for c in checks if c["drifted"]]
        assert len(named) <= 2, f"reference samples of {n} rows had drifted columns named: {named}"
    foul = ref[ref["odor"] == "f"]
    for n in (30, 100):
        checks = [mon.drift_check(ref, foul.sample(n, random_state=int(rng.integers(2**31)))) for _ in range(5)]
        assert all("odor" in c["drifted"] for c in checks), f"odor not named in foul-odour batches of {n} rows"
        if n >= 100:
            assert all(c["dataset_drift"] for c in checks), f"foul-odour batches of {n} rows not all flagged"


def test_below_the_minimum_sample_no_drift_is_judged(reference):
    ref, _ = reference
    foul = ref[ref["odor"] == "f"]  # a real shift, but too few rows to tell
    check = mon.drift_check(ref, foul.head(mon.MIN_DRIFT_ROWS - 1))
    assert (check["judged"], check["dataset_drift"], check["drifted"], check["share"]) == (False, False, [], None)
    assert mon.drift_check(ref, foul.head(mon.MIN_DRIFT_ROWS))["dataset_drift"] is True


def test_a_report_on_one_row_flags_no_drift_and_says_why(trained_home):
    settings = get_settings(trained_home)
    submit(trained_home, load_dataset(settings).sample(1, random_state=8))
    result = mon.build_report(settings)
    assert result.status == "counts-only" and result.drift is None and result.quality is None
    assert "too few production rows to judge drift (n = 1; at least 30 needed): no column is flagged" in \
        result.summary()
    assert "drifted" not in result.summary().replace("no column is flagged", "")
    figures = dict(zip(result.metrics_frame()["figure"], result.metrics_frame()["value"]))
    assert figures["data drift"].startswith("too few production rows to judge drift (n = 1")
    counters = html_counters(result.html_path)  # the HTML shows no drift counters at all
    assert "Drifted Columns" not in counters and "Share of Drifted Columns" not in counters
    stored = json.loads(snapshots(settings.workspace_dir)[0].read_text())
    assert "DriftedColumnsCount" not in json.dumps(stored)


def test_small_samples_get_p_value_tests_and_large_ones_distances(reference):
    ref, _ = reference
    small, text_small = mon.drift_options(ref, ref.head(50), FEATURES)
    large, text_large = mon.drift_options(ref, ref.head(mon.LARGE_SAMPLE), FEATURES)
    assert (small["cat_method"], small["num_method"]) == ("chisquare_mc", "ks")
    assert small["cat_threshold"] == small["num_threshold"] == pytest.approx(0.05 / len(FEATURES))  # Bonferroni
    assert (large["cat_method"], large["num_method"]) == ("jensenshannon", "wasserstein")
    assert "50 production rows" in text_small and "Jensen-Shannon" in text_large


def test_one_row_of_a_rare_code_is_not_drift_but_a_batch_of_it_is():
    """scipy's chi-square p-value assumes >= 5 expected rows per code; the Monte Carlo one does not."""
    from scipy.stats import chisquare

    reference = pd.Series(["a"] * 999 + ["b"])
    one_rare = pd.Series(["a"] * 29 + ["b"])  # a likely enough sample: 3% of 30-row samples hold a "b"
    assert chisquare([29, 1], [30 * 0.999, 30 * 0.001]).pvalue < 0.001  # what the old test called drift
    assert mon.chisquare_mc(reference, one_rare) > mon.P_VALUE / 25
    assert mon.chisquare_mc(reference, pd.Series(["b"] * 30)) < mon.P_VALUE / 25


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


def test_too_few_rows_give_the_false_edible_count_only(trained_home):
    settings = get_settings(trained_home)
    submit(trained_home, load_dataset(settings).sample(4, random_state=1))
    result = mon.build_report(settings)
    assert result.status == "counts-only" and result.quality is None and result.drift is None
    assert "Only 4 labelled production row(s)" in result.summary()
    assert "too few production rows to judge drift (n = 4;" in result.summary()
    assert "false_edible among the production rows: 0." in result.summary()
    assert result.html_path.exists() and len(snapshots(settings.workspace_dir)) == 1


def test_one_class_batch_gives_drift_and_a_sentence_why_quality_is_absent(trained_home):
    settings = get_settings(trained_home)
    data = load_dataset(settings)
    write_prod(trained_home, data[data["class"] == "p"].head(40))  # all poisonous, all predicted poisonous
    result = mon.build_report(settings)
    assert result.status == "drift-only" and result.drift is not None
    assert "need both classes" in result.summary()
    counters = html_counters(result.html_path)  # what the HTML shows: the drift figures, no quality ones
    assert counters["Columns"] == "25"
    assert int(counters["Drifted Columns"]) == result.drift["count"] == len(result.drift["drifted"])
    assert float(counters["Share of Drifted Columns"]) == pytest.approx(result.drift["share"], abs=1e-3)
    assert "Accuracy" not in counters


def test_one_class_truth_with_mixed_predictions_keeps_label_metrics_only(trained_home):
    settings = get_settings(trained_home)
    data = load_dataset(settings)
    rows = data[data["class"] == "p"].head(20)
    pred = ["edible"] * 2 + ["poisonous"] * 18
    write_prod(trained_home, rows, prediction=pred, p=[0.0] * 2 + [1.0] * 18)
    result = mon.build_report(settings)
    assert result.status == "quality-only" and result.drift is None  # 20 rows: quality, no drift verdict
    assert "too few production rows to judge drift (n = 20;" in result.summary()
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
    counters = html_counters(result.html_path)  # the figures the HTML shows
    assert float(counters["Accuracy"]) == pytest.approx(served, abs=1e-3)
    assert float(counters["F1"]) == pytest.approx(result.quality["f1"], abs=1e-3)
    assert int(counters["Drifted Columns"]) == result.drift["count"]
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
    mon.load_evidently()
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


def _wait_for_ui(base: str, proc: subprocess.Popen) -> None:
    """Poll the server's version endpoint until it answers (the process must stay alive meanwhile)."""
    for _ in range(240):
        try:
            _get(f"{base}/version")
            return
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            time.sleep(0.5)
    raise AssertionError("evidently ui did not answer within 120 s")


def _panel_points(base: str, pid: str) -> dict[str, dict[str, float | None]]:
    """Through the UI's own API, as its front end does: panel title -> {snapshot id: plotted value}."""
    dashboard = _get(f"{base}/v2/dashboards/{pid}")
    points = {}
    for panel in dashboard["panels"]:
        filters = [{k: v[k] for k in ("tags", "metadata", "metric", "metric_labels")} for v in panel["values"]]
        data = _get(f"{base}/v2/snapshots/{pid}/data_series_batch", {"series_filter": filters})
        ids = [src["snapshot_id"] for src in data["sources"]]
        plotted: dict[str, float | None] = {}
        for series in data["series"]:
            for sid, value in zip(ids, series["values"]):
                if value is not None:
                    assert sid not in plotted, f"two points for one snapshot on {panel['title']}"
                    plotted[sid] = value
        points[panel["title"]] = plotted
    return points


def test_evidently_ui_panels_plot_each_snapshots_own_values(trained_home):
    """Three snapshots (1, 40 and 200 production rows); each panel's points, read through the UI's HTTP API,
    equal the snapshot's values, and a snapshot without a figure (too few rows) has no point: a gap."""
    settings = get_settings(trained_home)
    data = load_dataset(settings).sample(200, random_state=4)
    results = []
    for rows in (data.iloc[:1], data.iloc[1:40], data.iloc[40:]):
        submit(trained_home, rows)
        results.append(mon.build_report(settings))
    assert [r.rows for r in results] == [1, 40, 200]
    port = free_port()
    env = {**os.environ, "MUSHROOM_HOME": str(trained_home)}
    env.pop("DO_NOT_TRACK", None)  # serve_ui must set it itself
    proc = subprocess.Popen([sys.executable, "-m", "mushroom_lib.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/api"
    try:
        _wait_for_ui(base, proc)
        projects = _get(f"{base}/projects")
        assert [p["name"] for p in projects] == ["Mushroom monitoring"]
        pid = projects[0]["id"]
        snaps = _get(f"{base}/projects/{pid}/snapshots")
        assert sorted(s["id"] for s in snaps) == sorted(r.snapshot_id for r in results)
        points = _panel_points(base, pid)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        proc.stdout.close()
    expected = {
        "Accuracy": {r.snapshot_id: r.quality["accuracy"] for r in results if r.quality},
        "F1 (poisonous = positive)": {r.snapshot_id: r.quality["f1"] for r in results if r.quality},
        "false_edible": {r.snapshot_id: r.false_edible for r in results},
        "Drifted-column share": {r.snapshot_id: r.drift["share"] for r in results if r.drift},
    }
    assert set(points) == set(expected)
    for title, values in expected.items():
        assert points[title] == pytest.approx(values), title
    one_row = results[0].snapshot_id  # no drift verdict, no quality figures: gaps, not zeros
    assert one_row not in points["Drifted-column share"] and one_row not in points["Accuracy"]
    assert len(points["Drifted-column share"]) == 2 and len(points["Accuracy"]) == 2


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

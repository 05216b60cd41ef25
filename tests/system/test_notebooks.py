"""The notebooks, executed by papermill on the real data: what they produce, and that they stay clean.

train.ipynb trains and plots, report.ipynb writes the Evidently HTML and one workspace snapshot per run
(also through the exact command the feedback loop starts after a promotion), exploration.ipynb runs
through; executed copies land in reports/runs/ named by UTC time and model version, without errors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from report_helpers import html_counters, snapshots

from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import load_dataset
from mushroom_lib.notebooks import runner
from mushroom_lib.registry.versions import Registry
from mushroom_lib.service import ModelService

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("train", "report", "exploration")
PLOTLY = "application/vnd.plotly.v1+json"


def outputs(path: Path) -> list[dict]:
    nb = nbformat.read(str(path), as_version=4)
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def assert_clean(path: Path) -> None:
    """No error output, no traceback or warning text on stderr."""
    for out in outputs(path):
        assert out["output_type"] != "error", f"{path.name}: {out.get('ename')}: {out.get('evalue')}"
        if out["output_type"] == "stream":
            assert "Traceback" not in out["text"], out["text"][:2000]
            assert out["name"] != "stderr", f"{path.name} wrote to stderr: {out['text'][:2000]}"


def text_of(path: Path) -> str:
    parts = []
    for out in outputs(path):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        for key in ("text/markdown", "text/plain"):
            if key in out.get("data", {}):
                parts.append(out["data"][key])
    return "\n".join(parts)


def submit(home: Path, n: int, seed: int) -> None:
    settings = get_settings(home, k=10**9)  # no retrain while filling prod_data.csv
    ModelService(settings=settings).submit_feedback(load_dataset(settings).sample(n, random_state=seed),
                                                    source="test")


# ------------------------------------------------------------------------------------------ the files
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_clean_with_a_parameters_cell(name):
    nb = nbformat.read(str(ROOT / "notebooks" / f"{name}.ipynb"), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "home = None" in tagged[0].source
    for cell in code:  # notebooks call the library; no definitions or loops of their own
        assert not re.search(r"^\s*(def|class|for|while|if|with|try)\b", cell.source, re.M), cell.source


def test_notebooks_are_found_through_MUSHROOM_NOTEBOOKS(tmp_path, monkeypatch):
    (tmp_path / "report.ipynb").write_text((ROOT / "notebooks" / "report.ipynb").read_text())
    monkeypatch.setenv("MUSHROOM_NOTEBOOKS", str(tmp_path))
    assert runner.notebook_path("report") == tmp_path / "report.ipynb"
    assert runner.notebook_path("train") == ROOT / "notebooks" / "train.ipynb"


def test_packaged_notebooks_are_found_through_importlib_resources(tmp_path, monkeypatch):
    """The notebooks ship as the package mushroom_lib.notebooks.files (the checkout's notebooks/ folder here;
    tests/system/test_wheel.py checks a wheel installed outside the checkout)."""
    monkeypatch.delenv("MUSHROOM_NOTEBOOKS", raising=False)
    assert runner.notebook_dirs() == [ROOT / "notebooks"]
    monkeypatch.setattr(runner, "PACKAGED", "mushroom_lib.no_such_package")
    with pytest.raises(FileNotFoundError, match="reinstall mushroom-workbench"):
        runner.notebook_path("train")
    monkeypatch.setenv("MUSHROOM_NOTEBOOKS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="reinstall mushroom-workbench"):
        runner.notebook_path("train")


def test_unknown_parameters_and_missing_model_are_one_line_errors(home):
    with pytest.raises(runner.NotebookError, match="has no parameter"):
        runner.execute(get_settings(home), "report", {"hmoe": "x"})
    out = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "report"], capture_output=True, text=True,
                         env={**os.environ, "MUSHROOM_HOME": str(home)}, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("mushroom: error: no trained model")
    assert len(out.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ executed
def test_train_notebook_trains_registers_promotes_and_plots(trained_home):
    settings = get_settings(trained_home)
    path = runner.run_train_notebook(settings, n_components=3, seed=42, promote=True, progress=False,
                                     sweep=[2, 3, 5])
    assert path.parent == settings.runs_dir
    assert re.fullmatch(r"\d{8}T\d{6}Z-train-v0002\.ipynb", path.name)
    assert_clean(path)
    assert Registry(settings).champion() == "v0002"
    figures = [out["data"][PLOTLY] for out in outputs(path) if PLOTLY in out.get("data", {})]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert len(figures) == 6, titles
    assert any(t.startswith("Reliability of p_poisonous") for t in titles)
    assert any("explained variance" in t for t in titles)
    assert any(d["type"] == "scatter3d" for d in figures[1]["data"])
    assert any("confusion matrix" in t for t in titles)
    assert any("threshold" in json.dumps(f["layout"]) for f in figures)
    assert [d["x"] for d in figures[5]["data"]][0] == [2, 3, 5]  # false_edible against n_components


def test_report_notebook_writes_html_one_snapshot_per_run_and_the_last_report(trained_home):
    settings = get_settings(trained_home)
    submit(trained_home, 60, seed=1)
    first = runner.run_report_notebook(settings, progress=False)
    assert re.fullmatch(r"\d{8}T\d{6}Z-report-v0001\.ipynb", first.name)
    assert_clean(first)
    html = sorted(settings.reports_dir.glob("*-monitoring.html"))
    assert len(html) == 1
    record = json.loads(settings.last_report_path.read_text())
    assert {k: record[k] for k in ("status", "model_version", "rows", "html", "notebook", "reason")} == {
        "status": "ok", "model_version": "v0001", "rows": 60, "html": str(html[0]), "notebook": str(first),
        "reason": None}
    assert record["started"] <= record["finished"] and record["finished"].endswith("Z")
    counters = html_counters(html[0])  # the figures the HTML shows, as the notebook summarised them
    assert counters["Columns"] == "25" and float(counters["Accuracy"]) > 0.9
    assert f"{counters['Drifted Columns']} of 25 columns drifted" in text_of(first)
    assert len(snapshots(settings.workspace_dir)) == 1

    # the exact command ModelService starts in the background after a promotion
    cmd = [sys.executable, "-m", "mushroom_lib.cli", "--home", str(settings.home), "report", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "DO_NOT_TRACK": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == ""
    assert len(snapshots(settings.workspace_dir)) == 2
    assert len(list(settings.reports_dir.glob("*-monitoring.html"))) == 2
    assert len([p for p in settings.workspace_dir.iterdir() if (p / "metadata.json").exists()]) == 1
    runs = sorted(settings.runs_dir.glob("*.ipynb"))
    assert len(runs) == 2 and all(r.name.endswith("-report-v0001.ipynb") for r in runs)
    assert json.loads(settings.last_report_path.read_text())["notebook"] == str(runs[-1])


def test_two_reports_started_together_on_one_home_both_succeed(trained_home):
    """Each run's kernel has its own IPC sockets and connection file (before: both bound kernel-ipc-N in the
    home, "Invalid Signature", then "Kernel didn't respond in 120 seconds")."""
    settings = get_settings(trained_home)
    submit(trained_home, 40, seed=3)
    cmd = [sys.executable, "-m", "mushroom_lib.cli", "--home", str(settings.home), "report", "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "DO_NOT_TRACK": "1"}) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert all("Invalid Signature" not in err for _, err in outs)
    assert len(snapshots(settings.workspace_dir)) == 2
    assert len(list(settings.reports_dir.glob("*-monitoring.html"))) == 2
    assert len(list(settings.runs_dir.glob("*-report-v0001*.ipynb"))) == 2
    assert not list(settings.runs_dir.glob("*-failed*"))
    assert not list(settings.home.glob("kernel-ipc*")) and not list(settings.runs_dir.glob("*running*"))
    assert json.loads(settings.last_report_path.read_text())["status"] == "ok"


def test_a_failed_report_is_recorded_then_raised(trained_home):
    settings = get_settings(trained_home)
    submit(trained_home, 40, seed=4)
    settings.ref_path.unlink()  # no reference rows: the notebook can make no report
    out = subprocess.run([sys.executable, "-m", "mushroom_lib.cli", "--home", str(settings.home), "report",
                          "--quiet"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "DO_NOT_TRACK": "1"})
    assert out.returncode == 2
    assert out.stderr.strip().startswith("mushroom: error: no report was written: no reference rows")
    record = json.loads(settings.last_report_path.read_text())
    assert (record["status"], record["model_version"], record["html"]) == ("failed", "v0001", None)
    assert record["reason"].startswith("no report was written: no reference rows")
    assert Path(record["notebook"]).name.endswith("-report-v0001.ipynb") and Path(record["notebook"]).exists()


def test_runs_clean_leftovers_keep_the_newest_and_are_named_by_the_version_covered(trained_home):
    settings = get_settings(trained_home, reports_keep=2)
    submit(trained_home, 40, seed=5)
    settings.runs_dir.mkdir(parents=True)
    killed = [settings.runs_dir / "20200101T000000Z-report-running.ipynb",  # a killed run of the old layout
              settings.runs_dir / "20200101T000001Z-report-running-0123456789ab.ipynb",
              settings.runs_dir / ".run-0123456789ab.lock"]
    old_html = [settings.reports_dir / f"2020010{i}T000000Z-monitoring.html" for i in (1, 2, 3)]
    old_runs = [settings.runs_dir / f"2020010{i}T000000Z-report-v0001.ipynb" for i in (1, 2, 3)]
    train_run = settings.runs_dir / "20200101T000000Z-train-v0001.ipynb"
    for path in [*killed, *old_html, *old_runs, train_run]:
        path.write_text("{}")
    # the launcher guesses v0009; the notebook reports the champion it covered
    done = runner.run_notebook(settings, "report", {"home": str(settings.home)}, progress=False,
                               version="v0009", outcome=True)
    assert done.error is None and done.outcome["model_version"] == "v0001"
    assert done.path.name.endswith("-report-v0001.ipynb")
    path = runner.run_report_notebook(settings, progress=False)
    assert not any(p.exists() for p in killed)
    kept = sorted(settings.runs_dir.glob("*-report-*.ipynb"))
    assert kept == sorted([done.path, path])  # the two newest; the 2020 copies are gone
    assert len(list(settings.reports_dir.glob("*-monitoring.html"))) == 2
    assert not any(p.exists() for p in old_html)
    assert train_run.exists()  # kept per kind: a report burst never removes the training runs
    assert len(snapshots(settings.workspace_dir)) == 2  # snapshots stay


def test_report_notebook_without_production_rows_says_so(trained_home, capsys):
    settings = get_settings(trained_home)
    path = runner.run_report_notebook(settings, progress=True)
    assert "No production rows yet" in capsys.readouterr().err  # `mushroom report` shows the summary
    assert_clean(path)
    assert "No production rows yet" in text_of(path)
    assert not list(settings.reports_dir.glob("*-monitoring.html"))
    assert not snapshots(settings.workspace_dir)


def test_exploration_notebook_runs_through(trained_home):
    path = runner.run_exploration_notebook(get_settings(trained_home), progress=False)
    assert_clean(path)
    kinds = [out["data"][PLOTLY]["data"][0]["type"] for out in outputs(path) if PLOTLY in out.get("data", {})]
    assert kinds == ["bar", "bar", "scatter3d"]
    assert "foul" in text_of(path)  # the codes table names what each code means


def test_promotion_by_the_feedback_loop_produces_a_report_in_the_background(trained_home):
    settings = get_settings(trained_home, k=10, report_on_promote=True)
    service = ModelService(settings=settings)
    receipt = service.submit_feedback(load_dataset(settings).sample(10, random_state=21), source="test")
    assert receipt.promoted, receipt.reason
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = [p for p in settings.runs_dir.glob("*-report-*.ipynb") if "running" not in p.name]
        if done:
            break
        time.sleep(1)
    assert done, "no executed report notebook appeared after the promotion"
    assert done[0].name.endswith(f"-report-{receipt.model_version}.ipynb")
    assert_clean(done[0])
    assert len(snapshots(settings.workspace_dir)) == 1

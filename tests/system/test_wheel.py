"""A wheel installed outside the checkout runs every command: the wheel is built from the files the image is
built from (a clean copy, so nothing stale in build/ can slip in), installed in a new venv from the shared
wheelhouse (build/wheelhouse, `make wheelhouse`) with no index, and run from a folder outside the checkout:
`mushroom data`, `train --notebook`, `predict`, `status`, `feedback`, `report`, and the servers `dashboard` (the page
answers), `api` (/ready) and `ui` (the Evidently page answers).

The notebooks and the dashboard page come from the installed package (importlib.resources), never from the
checkout: the test checks where they were found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers.server import ServerProcess

from mushroom_lib.core.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / "build" / "wheelhouse"
#: what the Containerfile copies into its build stage, and all a wheel is built from
SOURCES = ("pyproject.toml", "setup.py", "README.md", "mushroom_lib", "notebooks", "dashboards")

pytestmark = pytest.mark.slow


def _clean_env(venv: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MUSHROOM_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", MUSHROOM_HOME=str(home), DO_NOT_TRACK="1",
               MUSHROOM_REPORT_ON_PROMOTE="0", MUSHROOM_K="1000", PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory, real_data):
    """(venv, home, env, outside): the wheel installed offline in a new venv; outside is the working folder."""
    stamp = WHEELHOUSE / ".complete"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        pytest.fail(f"the wheelhouse {WHEELHOUSE} is missing or older than pyproject.toml: run `make wheelhouse` "
                    "(make test does)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, src / name, **(
            {"ignore": ignore} if (ROOT / name).is_dir() else {}))
    pip_offline = ["--no-index", "--find-links", str(WHEELHOUSE)]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *pip_offline, "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("mushroom_workbench-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    res = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", *pip_offline,
                          str(wheel)], capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    outside = tmp / "elsewhere"
    outside.mkdir()
    home = tmp / "home"
    env = _clean_env(venv, home)
    data = subprocess.run(["mushroom", "data", "--source", str(real_data)], env=env, cwd=outside,
                          capture_output=True, text=True, timeout=300, check=False)
    assert data.returncode == 0, data.stderr
    return venv, home, env, outside


def _run(installed, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    _venv, _home, env, outside = installed
    return subprocess.run(["mushroom", *args], env=env, cwd=outside, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_the_package_and_its_files_come_from_the_venv(installed):
    venv, _home, env, outside = installed
    code = ("import json, mushroom_lib; from mushroom_lib.notebooks import runner; "
            "from mushroom_lib.dashboard.server import notebook_path; "
            "print(json.dumps([mushroom_lib.__file__, str(runner.notebook_path('train')), str(notebook_path())]))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=outside, capture_output=True,
                         text=True, timeout=120, check=True)
    site = str(venv / "lib")
    for path in json.loads(out.stdout):
        assert path.startswith(site) and not path.startswith(str(ROOT)), path
    assert not list(Path(site).glob("python*/site-packages/notebooks"))  # no stray top-level package


def test_train_notebook_predict_status_report(installed):
    _venv, home, _env, outside = installed
    train = _run(installed, "train", "--notebook")
    assert train.returncode == 0, train.stderr[-2000:]
    assert (home / "artifacts" / "champion.json").exists()
    assert list((home / "reports" / "runs").glob("*-train-*.ipynb"))
    predicted = _run(installed, "predict", str(home / "data" / "samples" / "sample_unlabelled.csv"),
                     "-o", str(outside / "scored.csv"))
    assert predicted.returncode == 0, predicted.stderr
    assert (outside / "scored.csv").read_text().count("\n") == 21  # a header and the 20 sample rows
    status = _run(installed, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["model_version"] == "v0001"
    sent = _run(installed, "feedback", str(home / "data" / "samples" / "sample_labelled.csv"))
    assert sent.returncode == 0 and json.loads(sent.stdout)["rows_written"] == 20, sent.stderr
    report = _run(installed, "report", "--quiet")
    assert report.returncode == 0, report.stderr[-2000:]
    assert list((home / "reports").glob("*-monitoring.html"))
    assert json.loads((home / "reports" / "last_report.json").read_text())["status"] == "ok"


def _get(url: str, timeout: float = 120) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def test_servers_answer(installed, tmp_path):
    venv, home, env, outside = installed
    if not (home / "artifacts" / "champion.json").exists():
        assert _run(installed, "train").returncode == 0
    mushroom = str(venv / "bin" / "mushroom")
    port = free_port()
    with ServerProcess([mushroom, "dashboard", "--port", str(port)], port=port, env={**env, "MUSHROOM_DASHBOARD_POOL": "1"},
                       log_path=tmp_path / "dashboard.log", cwd=outside, start_timeout=120) as dash:
        status, page = _get(dash.url)
        assert status == 200 and "mushroom-first-upload" in page, dash.log_tail()
    port = free_port()
    with ServerProcess([mushroom, "api", "--port", str(port)], port=port, env=env, ready_path="/ready",
                       log_path=tmp_path / "api.log", cwd=outside, start_timeout=120) as api:
        assert api.get_json("/ready")["model_version"] == "v0001"
    port = free_port()
    with ServerProcess([mushroom, "ui", "--port", str(port)], port=port, env=env, log_path=tmp_path / "ui.log",
                       cwd=outside, start_timeout=120) as ui:
        status, page = _get(ui.url)
        assert status == 200 and "<html" in page.lower(), ui.log_tail()

"""Packaging: pyproject.toml and environment.yml stay in step; the `mushroom` command is installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _norm(spec: str) -> tuple[str, frozenset, str]:
    req = Requirement(spec)
    name = req.name.lower().replace("_", "-")
    return name, frozenset(req.extras), str(req.specifier)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = _pyproject()["project"]
    wanted = {_norm(d) for d in project["dependencies"]}
    for extra in project["optional-dependencies"]:
        wanted |= {_norm(d) for d in project["optional-dependencies"][extra]}
    env = _environment()
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    got = {_norm(d) for d in pip if not d.startswith("-")}
    assert got == wanted, (f"only in environment.yml: {sorted(got - wanted)}; "
                           f"only in pyproject.toml: {sorted(wanted - got)}")
    assert "-e ." in pip  # the package itself, editable
    assert "python=3.11" in conda and "pip" in conda


def test_python_version_agrees():
    from packaging.specifiers import SpecifierSet

    assert "3.11" in SpecifierSet(_pyproject()["project"]["requires-python"])


def test_mushroom_console_script_is_installed():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("mushroom") == "mushroom_lib.cli:main"
    assert _pyproject()["project"]["scripts"]["mushroom"] == "mushroom_lib.cli:main"
    script = Path(sys.executable).with_name("mushroom")
    assert script.exists(), f"{script} is missing: install with `make install` (pip install -e '.[test,dask,deploy,bench]')"
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for command in ("data", "train", "predict", "feedback", "status", "models"):
        assert command in res.stdout

"""Shared fixtures. Real-data tests reach the dataset through MUSHROOM_DATA; in CI a missing file fails."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MUSHROOM_REPORT_ON_PROMOTE", "0")  # tests that want the report turn it on
os.environ.setdefault("MUSHROOM_WORKER_IDLE", "3")  # background workers started by a test leave soon after it
warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = Path(__file__).resolve().parents[1]


def _real_data() -> Path | None:
    for candidate in (os.environ.get("MUSHROOM_DATA"), ROOT.parent / "shared" / "data" / "mushrooms.csv"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Path of the real dataset; skipped locally without it, a failure in CI (CI is set)."""
    path = _real_data()
    if path is None:
        msg = "the real dataset is missing: set MUSHROOM_DATA to mushrooms.csv"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty project home; MUSHROOM_HOME points at it and MUSHROOM_DATA is cleared."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("MUSHROOM_HOME", str(h))
    monkeypatch.delenv("MUSHROOM_DATA", raising=False)
    return h


@pytest.fixture(scope="session")
def _trained_template(tmp_path_factory, real_data) -> Path:
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.data.dataset import acquire
    from mushroom_lib.training.train import train

    h = tmp_path_factory.mktemp("trained") / "home"
    s = get_settings(h, report_on_promote=False)
    acquire(s, str(real_data), progress=False)
    train(s)
    return h


@pytest.fixture
def trained_home(_trained_template, tmp_path, monkeypatch) -> Path:
    """A home with the real data acquired and v0001 trained (a fresh copy per test)."""
    h = tmp_path / "trained"
    shutil.copytree(_trained_template, h)
    monkeypatch.setenv("MUSHROOM_HOME", str(h))
    monkeypatch.delenv("MUSHROOM_DATA", raising=False)
    return h

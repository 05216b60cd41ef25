"""The docs a newcomer reads stay true of the code: the generated package map, the README's size."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _package_map():
    spec = importlib.util.spec_from_file_location("package_map", ROOT / "tools" / "package_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_page_shows_the_packages_as_they_are():
    tool = _package_map()
    page = tool.PAGE.read_text()
    assert tool.render(page) == page, "docs/ARCHITECTURE.md is stale: run `python tools/package_map.py --write`"


def test_every_package_says_its_job_and_what_it_must_never_import():
    tool = _package_map()
    for layer in tool.layers():
        for name in layer:
            row = tool.row(name)
            assert "never" in row.lower() or "no library package imports" in row.lower(), row


def test_the_front_pages_stay_small():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    assert len((ROOT / "docs" / "ARCHITECTURE.md").read_bytes()) <= 10_500

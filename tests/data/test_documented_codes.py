"""The schema against the documentation and the real file: codes as agaricus-lepiota.names documents them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from mushroom_lib.data.schema import CODES, COLUMNS, FEATURES, LABELS, TARGET, validate_frame

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def names_file() -> Path:
    """agaricus-lepiota.names next to MUSHROOM_DATA, else in ../shared/data."""
    candidates = []
    if os.environ.get("MUSHROOM_DATA"):
        candidates.append(Path(os.environ["MUSHROOM_DATA"]).resolve().parent / "agaricus-lepiota.names")
    candidates.append(ROOT.parent / "shared" / "data" / "agaricus-lepiota.names")
    for c in candidates:
        if c.is_file():
            return c
    msg = "agaricus-lepiota.names is missing (looked next to MUSHROOM_DATA and in ../shared/data)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def parse_names(path: Path) -> tuple[list[tuple[str, dict[str, str]]], dict[str, str]]:
    """Section 7 of the .names file -> [(attribute, {code: name})] in file order, and the class codes."""
    text = path.read_text(encoding="latin-1")
    start = text.index("7. Attribute Information")
    end = text.index("8. Missing Attribute Values")
    section = text[start:end]
    classes = dict((code, name) for name, code in re.findall(r"(\w+)=(\w)", section.splitlines()[0]))
    attrs: list[tuple[str, str]] = []
    for line in section.splitlines()[1:]:
        m = re.match(r"\s*\d+\.\s*([\w?-]+):\s*(.*)$", line)
        if m:
            attrs.append((m.group(1), m.group(2)))
        elif line.strip() and attrs:
            name, body = attrs[-1]
            attrs[-1] = (name, body + line.strip())
    parsed = []
    for name, body in attrs:
        pairs = [p.strip() for p in body.split(",") if p.strip()]
        codes = {}
        for pair in pairs:
            human, code = pair.rsplit("=", 1)
            codes[code.strip()] = human.strip()
        parsed.append((name, codes))
    return parsed, classes


def test_codes_table_is_what_the_documentation_says(names_file):
    documented, classes = parse_names(names_file)
    assert len(documented) == 22
    # the .names file writes "bruises?"; the dataset header (and FEATURES) say "bruises"
    doc_names = [name.rstrip("?") for name, _ in documented]
    assert FEATURES == doc_names, "feature names or order differ from the documentation"
    for (name, codes), feature in zip(documented, FEATURES):
        assert CODES[feature] == codes, f"{feature}: codes differ from the documentation"
    assert classes == LABELS == {"e": "edible", "p": "poisonous"}
    assert COLUMNS == [TARGET, *FEATURES] and TARGET == "class"


def test_real_dataset_uses_only_documented_codes(real_data):
    df = pd.read_csv(real_data, dtype=str, keep_default_na=False)
    assert list(df.columns) == COLUMNS
    checked = validate_frame(df, require_label=True)
    assert len(checked.features) == 8124 and set(checked.labels) == {"e", "p"}

"""One vocabulary: class labels (e/p, edible/poisonous, 0/1), column-name normalisation and UTC time stamps.

Every module that translates a label, matches a column name or stamps a time goes through these functions.
"""

from __future__ import annotations

from datetime import datetime, timezone

EDIBLE, POISONOUS = "e", "p"  #: the class codes; poisonous is the positive class (1) everywhere
CODE_TO_WORD: dict[str, str] = {EDIBLE: "edible", POISONOUS: "poisonous"}
WORD_TO_CODE: dict[str, str] = {w: c for c, w in CODE_TO_WORD.items()}
CODE_TO_INT: dict[str, int] = {EDIBLE: 0, POISONOUS: 1}
INT_TO_CODE: dict[int, str] = {i: c for c, i in CODE_TO_INT.items()}

#: column aliases people type: the .names file says ``bruises?``; some copies use underscores
_ALIASES = {"bruises?": "bruises"}


def label_code(value: object) -> str | None:
    """'e' or 'p' for e/p/edible/poisonous in any case and padding (or 0/1); None for anything else."""
    if isinstance(value, (int,)) and not isinstance(value, bool) and value in INT_TO_CODE:
        return INT_TO_CODE[value]
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text if text in CODE_TO_WORD else WORD_TO_CODE.get(text)


def label_word(value: object) -> str | None:
    """'edible' or 'poisonous' for any accepted label (see ``label_code``); None for anything else."""
    code = label_code(value)
    return None if code is None else CODE_TO_WORD[code]


def norm_column(name: object) -> str:
    """A column name as the schema knows it: trimmed, BOM dropped, lower case, '_' -> '-', aliases mapped."""
    text = str(name).strip().lstrip("\ufeff").strip().lower().replace("_", "-")
    return _ALIASES.get(text, text)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def utc_iso(when: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds and a Z, e.g. 2026-11-30T05:41:16.123Z (registry and feedback rows)."""
    return (when or utc_now()).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_stamp(when: datetime | None = None) -> str:
    """A compact UTC stamp for file names, e.g. 20261130T054116Z (reports and notebook runs)."""
    return (when or utc_now()).strftime("%Y%m%dT%H%M%SZ")

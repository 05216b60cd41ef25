"""Small pure helpers of the dashboard: label words, feature codes, escaping, CSV safe for spreadsheets.

Nothing here imports a widget library; every other dashboard module builds on these.
"""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd

from ..core import vocab
from ..data.schema import CODES

TRUE_LABEL = "true label"
PREDICTION = "prediction"
P_POISONOUS = "p_poisonous"
UNCERTAIN = "uncertain"
SENT = "sent"
UNCERTAIN_MARK = "uncertain — treat as poisonous"
MAX_CELL_CHARS = 200
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def human(feature: str) -> str:
    """'stalk-surface-above-ring' -> 'stalk surface above ring'."""
    return feature.replace("-", " ")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def strip_tags(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def plain(text_html: str) -> str:
    """What a person reads in a piece of HTML."""
    return html.unescape(strip_tags(text_html))


def neutralize(value: Any) -> Any:
    """Prefix a quote to text a spreadsheet would run as a formula (=, +, -, @, tab, CR)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes of a frame with every text cell and header neutralised against formula injection."""
    out = frame.copy()
    out.columns = [neutralize(str(c)) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralize)
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")


def label_word(value: Any, *, allow_empty: bool = True) -> str | None:
    """edible/poisonous from e/p/edible/poisonous (any case, :func:`vocab.label_word`); '' for empty; None if
    not a label."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "" if allow_empty else None
    text = str(value).strip()
    if not text:
        return "" if allow_empty else None
    return vocab.label_word(text)


def feature_code(feature: str, value: Any) -> str | None:
    """The valid code for a typed value: the code itself or its human name (any case); else None."""
    text = str(value).strip()
    codes = CODES[feature]
    if text in codes:
        return text
    low = text.lower()
    if low in codes:
        return low
    for code, name in codes.items():
        if name.lower() == low:
            return code
    return None


def same(current: Any, incoming: Any) -> bool:
    """Whether a value from the page equals the cell's current value (numbers compared as numbers)."""
    if current is None or incoming is None:
        return current is None and incoming is None
    if isinstance(current, (float, np.floating)) or isinstance(incoming, float):
        try:
            return float(current) == float(incoming)
        except (TypeError, ValueError):
            return False
    return str(current) == str(incoming)


def jsonable(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value

#: Tornado's largest websocket message (its default); an upload travels in one message
WEBSOCKET_LIMIT = 10 * 1024 * 1024
#: the largest file the page sends (room left for the message's own envelope)
PAGE_UPLOAD_MAX = WEBSOCKET_LIMIT - 256 * 1024

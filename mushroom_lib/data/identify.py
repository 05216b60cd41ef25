"""Identify a mushroom from the features a person knows: the worst case over the known mushrooms that match.

Pure functions over the dataset frame (class + 22 features): which rows match, the answer phrased as facts
about the data, and the next question to ask (largest information gain on the class), like a field key.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..core.vocab import CODE_TO_WORD, EDIBLE, POISONOUS, norm_column
from .schema import CODES, FEATURES, TARGET, SchemaError

NOTE = ("This describes a 1981 field-guide dataset of 23 species; it is not advice to eat any mushroom. "
        "Never eat a wild mushroom on the strength of this tool.")


def check_given(given: Mapping[str, str]) -> dict[str, str]:
    """Feature name -> code, checked; raises SchemaError (one sentence: feature, value, valid codes)."""
    out: dict[str, str] = {}
    for name, value in given.items():
        feature = norm_column(name)
        if feature not in CODES:
            shown = str(name)[:60] + ("…" if len(str(name)) > 60 else "")
            raise SchemaError(f"{shown!r} is not a mushroom feature; valid features are the dataset's 22 columns "
                              "(cap-shape, cap-surface, cap-color, bruises, odor, gill-attachment, … habitat; "
                              "see agaricus-lepiota.names)", column=str(name)[:60])
        if feature in out:
            raise SchemaError(f"{feature} is given twice ({out[feature]!r} and {str(value).strip()[:40]!r}); "
                              "give each feature once", column=feature)
        code = str(value).strip()
        if code.lower() in ("", "unknown") or (code == "?" and "?" not in CODES[feature]):
            continue  # "unknown" leaves the feature open
        if code not in CODES[feature]:
            shown = code[:40] + ("…" if len(code) > 40 else "")
            valid = ", ".join(f"{c} ({w})" for c, w in CODES[feature].items())
            raise SchemaError(f"{feature}={shown!r} is not a valid code; valid codes: {valid}",
                              column=feature, value=shown)
        out[feature] = code
    return out


def matching(df: pd.DataFrame, given: Mapping[str, str]) -> pd.DataFrame:
    """The known rows that agree with every given feature."""
    mask = np.ones(len(df), dtype=bool)
    for feature, code in given.items():
        mask &= (df[feature].to_numpy() == code)
    return df[mask]


def _entropy(labels: np.ndarray) -> float:
    if not len(labels):
        return 0.0
    share = float(np.mean(labels == POISONOUS))
    return -sum(s * np.log2(s) for s in (share, 1 - share) if s > 0)


def ask_next(matches: pd.DataFrame, given: Mapping[str, str]) -> dict | None:
    """The unanswered feature with the largest information gain on the class among the matches (None when
    they all share a class or none match), with the codes seen among them."""
    y = matches[TARGET].to_numpy()
    if len(y) == 0 or len(set(y)) < 2:
        return None
    base, best = _entropy(y), None
    for feature in FEATURES:
        if feature in given:
            continue
        col = matches[feature].to_numpy()
        codes, counts = np.unique(col, return_counts=True)
        rest = sum(c / len(y) * _entropy(y[col == code]) for code, c in zip(codes, counts))
        gain = base - rest
        if best is None or gain > best["information_gain"] + 1e-12:
            best = {"feature": feature, "information_gain": round(float(gain), 4),
                    "codes": {str(c): CODES[feature][c] for c in codes}}
    return best


def _describe(given: Mapping[str, str]) -> str:
    return ", ".join(f"{f}={c} ({CODES[f][c]})" for f, c in given.items()) or "no features given"


def answer(df: pd.DataFrame, given: Mapping[str, str]) -> dict:
    """The worst case over the matching known mushrooms: edible only if some match and every match is edible."""
    given = check_given(given)
    matches = matching(df, given)
    n, n_p = len(matches), int((matches[TARGET].to_numpy() == POISONOUS).sum())
    if n == 0:
        prediction = CODE_TO_WORD[POISONOUS]
        reason = (f"no known mushroom in this dataset has these features ({_describe(given)}); "
                  "unknown means poisonous")
    elif n_p in (0, n):
        prediction = CODE_TO_WORD[EDIBLE if n_p == 0 else POISONOUS]
        reason = (f"the 1 known mushroom with these features is {prediction} in this dataset" if n == 1 else
                  f"all {n} known mushrooms with these features are {prediction} in this dataset")
    else:
        prediction = CODE_TO_WORD[POISONOUS]
        reason = f"{n_p} of the {n} known mushrooms with these features are poisonous in this dataset"
    return {"prediction": prediction, "matching_known": n, "matching_poisonous": n_p, "reason": reason,
            "ask_next": ask_next(matches, given), "given": dict(given), "note": NOTE}


def format_answer(ans: dict) -> str:
    """The answer as a few lines for a terminal."""
    lines = [f"{ans['prediction'].upper()}: {ans['reason']}"]
    nxt = ans.get("ask_next")
    if nxt:
        codes = ", ".join(f"{c} ({w})" for c, w in nxt["codes"].items())
        lines.append(f"ask next: {nxt['feature']} (information gain {nxt['information_gain']:.2f} bits; "
                     f"codes among the matches: {codes})")
    model = ans.get("model")
    if model:
        lines.append(f"model {model['model_version']}: {model['prediction']} (p_poisonous "
                     f"{model['p_poisonous']:.3f}, nearest known {model['nearest_known']})"
                     + (f"; {model['reason']}" if model.get("reason") else ""))
    lines.append(f"note: {ans['note']}")
    return "\n".join(lines)

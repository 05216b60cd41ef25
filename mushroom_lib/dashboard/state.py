"""The dashboard's state as plain pandas: the rows in the grid, their labels, edits and what was sent.

No widgets here: the views show this state and the app changes it only through these methods, so every
rule (what an edit may change, which rows are sent, a batch's accuracy) is tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..core.vocab import norm_column
from ..data.schema import CODES, FEATURES, TARGET, SchemaError, valid_codes
from .values import (
    MAX_CELL_CHARS,
    P_POISONOUS,
    PREDICTION,
    SENT,
    TRUE_LABEL,
    UNCERTAIN,
    UNCERTAIN_MARK,
    feature_code,
    label_word,
    same,
)

#: grid columns before the scored extras and the 22 features: the ones a person reads and edits first
LEAD_COLUMNS = [TRUE_LABEL, PREDICTION, P_POISONOUS, UNCERTAIN, SENT]
#: scored columns not shown in the grid (the badge shows the version)
HIDDEN_SCORED = {"model_version"}
#: columns of an upload whose values carry the truth (the first one present is used)
LABEL_COLUMNS = (TRUE_LABEL, "true-label", TARGET)
#: columns of an upload that are recomputed here, never taken from the file
COMPUTED = {norm_column(c) for c in (PREDICTION, P_POISONOUS, UNCERTAIN, SENT, "unseen_codes", "model_version",
                               "nearest_known", "reason", "row")}
MAX_EXTRA_COLUMNS = 20

Score = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass
class Upload:
    """A parsed, validated upload: the features, the labels it carried (or None), extra columns, warnings."""

    features: pd.DataFrame
    labels: pd.Series | None
    extras: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


@dataclass
class Edit:
    """The outcome of one grid edit: the cells to repaint, or why it was refused (then ``restore``)."""

    changes: dict
    refused: str | None = None
    restore: dict | None = None
    scored: pd.Series | None = None


def parse_upload(data: bytes, name: str, cap: int) -> Upload:
    """Read and validate CSV bytes; a ``class``/``true label`` column becomes the labels. Raises SchemaError."""
    from ..data.schema import read_csv_bytes, validate_frame

    frame = read_csv_bytes(data, source=name, size_cap=cap)
    labels = _labels_from(frame)
    kept = frame.drop(columns=[c for c in frame.columns
                               if norm_column(c) in COMPUTED or norm_column(c) in LABEL_COLUMNS])
    checked = validate_frame(kept)
    return Upload(checked.features, labels, _extras_from(kept, checked.extra), list(checked.warnings))


def _labels_from(frame: pd.DataFrame) -> pd.Series | None:
    by_norm = {norm_column(c): c for c in frame.columns}
    col = next((by_norm[n] for n in LABEL_COLUMNS if n in by_norm), None)
    if col is None:
        return None
    values = frame[col]
    words = values.map(label_word)
    bad = words.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise SchemaError(f"row {pos + 1}, column '{col}': {str(values.iloc[pos])[:60]!r} is not a label; "
                          "use edible/e, poisonous/p or leave it empty",
                          row=pos + 1, column=str(col), value=values.iloc[pos])
    return words.reset_index(drop=True)


def _extras_from(frame: pd.DataFrame, extra_names: list[str]) -> pd.DataFrame:
    """Columns the file carried besides the features and labels, text-capped."""
    by_norm = {norm_column(c): c for c in frame.columns}
    keep = [by_norm[n] for n in extra_names if n in by_norm][:MAX_EXTRA_COLUMNS]
    out = pd.DataFrame(index=range(len(frame)))
    for col in keep:
        values = frame[col].astype(object).where(frame[col].notna(), "").map(lambda v: str(v)[:MAX_CELL_CHARS])
        name = str(col).strip()[:60] or "extra"
        if name in out.columns or name in FEATURES or name in LEAD_COLUMNS or name == "row":
            name = f"{name} (file)"
        out[name] = values.to_numpy()
    return out


def shown_scores(scored: pd.DataFrame) -> pd.DataFrame:
    """The scored columns as the grid shows them: every column the model returns (except the version),
    ``uncertain`` as a mark, so columns the service adds later appear without a change here."""
    out = pd.DataFrame(index=pd.RangeIndex(len(scored)))
    out[PREDICTION] = scored[PREDICTION].to_numpy()
    out[P_POISONOUS] = scored[P_POISONOUS].to_numpy().astype(float)
    out[UNCERTAIN] = np.where(scored[UNCERTAIN].to_numpy().astype(bool), UNCERTAIN_MARK, "").astype(object)
    for col in scored.columns:
        if col not in out.columns and col not in HIDDEN_SCORED and col not in FEATURES:
            values = scored[col].to_numpy()
            out[col] = values if values.dtype.kind in "iuf" else np.asarray(
                ["" if v is None else str(v) for v in values], dtype=object)
    return out


class GridState:
    """The rows of the grid (positional index = grid row position), the numbers people see, what was sent."""

    def __init__(self):
        self.rows: pd.DataFrame | None = None
        self.row_numbers: list[int] = []
        self.source_name: str | None = None
        self.generation = 0  #: bumped whenever the rows are replaced (positions from before no longer apply)

    # ------------------------------------------------------------ building
    @staticmethod
    def assemble(features: pd.DataFrame, scored: pd.DataFrame, labels: pd.Series | None = None,
                 extras: pd.DataFrame | None = None) -> pd.DataFrame:
        n = len(features)
        shown = shown_scores(scored)
        out = pd.DataFrame(index=pd.RangeIndex(n))
        out[TRUE_LABEL] = labels.to_numpy() if labels is not None else np.full(n, "", dtype=object)
        for col in (PREDICTION, P_POISONOUS, UNCERTAIN):
            out[col] = shown[col].to_numpy()
        out[SENT] = np.full(n, "", dtype=object)
        for col in shown.columns:
            if col not in out.columns:
                out[col] = shown[col].to_numpy()
        for f in FEATURES:
            out[f] = features[f].to_numpy()
        if extras is not None:
            for c in extras.columns:
                out[c if c not in out.columns else f"{c} (file)"] = extras[c].to_numpy()
        return out

    def empty(self, score: Score) -> None:
        """No rows yet, but every column the model returns (so the empty grid has the real header)."""
        features = pd.DataFrame(columns=FEATURES, dtype=object)
        self.rows = self.assemble(features, score(features))
        self.row_numbers = []
        self.generation += 1

    def load(self, upload: Upload, scored: pd.DataFrame, name: str) -> None:
        self.rows = self.assemble(upload.features, scored, upload.labels, upload.extras)
        self.row_numbers = list(range(1, len(self.rows) + 1))
        self.source_name = name
        self.generation += 1

    def append(self, features: pd.DataFrame, scored: pd.DataFrame) -> int:
        """Add rows (the manual form's mushroom); returns the new row's number."""
        row = self.assemble(features, scored)
        if self.rows is None or not len(self.rows):
            self.rows, self.row_numbers = row, [1]
        else:
            self.rows = pd.concat([self.rows, row], ignore_index=True)
            for c in self.rows.columns:
                if self.rows[c].dtype == object:
                    self.rows[c] = self.rows[c].where(self.rows[c].notna(), "")
            self.row_numbers.append(max(self.row_numbers) + 1)
        return self.row_numbers[-1]

    def rescore(self, score: Score) -> None:
        """Re-score every row with the serving model (after a promotion)."""
        if self.rows is None or not len(self.rows):
            return
        shown = shown_scores(score(self.rows[FEATURES].reset_index(drop=True)))
        for col in shown.columns:
            self.rows[col] = shown[col].to_numpy()

    def __len__(self) -> int:
        return 0 if self.rows is None else len(self.rows)

    def grid_frame(self) -> pd.DataFrame:
        """What the grid shows: the rows with their row numbers as the (named) index."""
        frame = self.rows.copy()
        frame.index = pd.Index(self.row_numbers, name="row")
        return frame

    # -------------------------------------------------------------- edits
    def edit(self, row: int, column: str, value: Any, score: Score) -> Edit | None:
        """Apply a person's edit of one cell (``row`` = grid position). None when nothing changed."""
        old = self.rows.at[row, column] if column in self.rows.columns else None
        if same(old, value):  # an editor closed without a change
            return None
        number = self.row_numbers[row]
        text = "" if value is None else str(value)[:MAX_CELL_CHARS]

        def refuse(reason: str) -> Edit:
            return Edit({}, refused=f"refused: row {number}, column '{column}': {reason}", restore={column: old})

        if column in FEATURES:
            code = feature_code(column, text)
            if code is None:
                return refuse(f"{text[:60]!r} is not a valid code; valid codes: {valid_codes(column)}")
            self.rows.at[row, column] = code
            scored = score(self.rows.loc[[row], FEATURES].reset_index(drop=True))
            changes = {column: code, SENT: "", **shown_scores(scored).iloc[0].to_dict()}
            for k, v in changes.items():
                self.rows.at[row, k] = v
            return Edit(changes, scored=scored.iloc[0])
        if column == TRUE_LABEL:
            word = label_word(text)
            if word is None:
                return refuse(f"{text[:60]!r} is not a label; type edible or poisonous (e/p), or clear it")
            changes = {TRUE_LABEL: word}
            if self.rows.at[row, SENT]:
                changes[SENT] = ""
            for k, v in changes.items():
                self.rows.at[row, k] = v
            return Edit(changes)
        return refuse("this column is computed or comes from the file; edit a feature or the true label")

    # ------------------------------------------------------------ feedback
    def labelled_positions(self) -> list[int]:
        """Grid positions with a true label that were not sent yet."""
        if self.rows is None:
            return []
        mask = (self.rows[TRUE_LABEL] != "") & (self.rows[SENT] == "")
        return [int(i) for i in np.flatnonzero(mask.to_numpy())]

    def labelled_count(self) -> int:
        return len(self.labelled_positions())

    def position_of(self, row_number: Any) -> int | None:
        try:
            return self.row_numbers.index(int(row_number))
        except (ValueError, TypeError):
            return None

    def feedback_frame(self, positions: list[int]) -> pd.DataFrame:
        """The 22 features and ``class`` (edible/poisonous) of these rows: what submit_feedback takes."""
        frame = self.rows.loc[positions, FEATURES].reset_index(drop=True)
        frame[TARGET] = self.rows.loc[positions, TRUE_LABEL].to_numpy()
        return frame

    def batch_metrics(self, positions: list[int]) -> dict:
        """Accuracy and false_edible (called edible, truly poisonous) of these rows against their labels."""
        part = self.rows.loc[positions]
        truth, said = part[TRUE_LABEL].to_numpy(), part[PREDICTION].to_numpy()
        n = len(part)
        return {"rows": n, "accuracy": float((truth == said).mean()) if n else None,
                "false_edible": int(((said == "edible") & (truth == "poisonous")).sum())}

    def mark_sent(self, positions: list[int], mark: str) -> None:
        for pos in positions:
            self.rows.at[pos, SENT] = mark

    # ------------------------------------------------------------ download
    def download_frame(self, version: str | None) -> pd.DataFrame:
        """The scored grid as a plain frame: row, features, prediction, p_poisonous, ..."""
        frame = self.grid_frame().reset_index()
        frame[P_POISONOUS] = frame[P_POISONOUS].map(lambda v: f"{float(v):.6f}")
        frame["model_version"] = version or ""
        lead = ["row", *FEATURES, PREDICTION, P_POISONOUS, UNCERTAIN, TRUE_LABEL, SENT, "model_version"]
        rest = [c for c in frame.columns if c not in lead]
        return frame[lead + rest]


def code_names(feature: str) -> str:
    return ", ".join(f"{c} = {n}" for c, n in CODES[feature].items())

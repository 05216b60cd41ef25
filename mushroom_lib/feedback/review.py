"""Reviewing feedback: list rows by source, time or contradiction; exclude and include them with a reason.

Exclusions are events in the append-only log beside prod_data.csv (who, when, why); prod_data.csv is
never rewritten. Excluded rows never train, never count toward K and are left out of quality reports.
"""

from __future__ import annotations

import getpass

import pandas as pd

from ..core.vocab import utc_iso
from .loop import FeedbackLoop, Receipt

LIST_COLUMNS = ["feedback_id", "source", "timestamp", "target", "prediction", "model_version", "contradicts",
                "excluded", "excluded_reason", "excluded_by", "excluded_at"]


class ReviewError(ValueError):
    """A selection or request a user can fix (unknown ids, nothing selected, no reason)."""


class ReviewNotFound(ReviewError):
    """The ids or the source/time named select no stored feedback row (HTTP 404)."""


class ReviewConflict(ReviewError):
    """The rows are already in the state asked for: excluded twice, or included while not excluded (HTTP 409)."""


def _since(value) -> pd.Timestamp | None:
    if value in (None, ""):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ReviewError(f"--since {str(value)[:40]!r} is not a time like 2026-11-30 or "
                          "2026-11-30T12:00:00Z") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _ids(values) -> list[int]:
    out = []
    for v in values:
        text = str(v).strip()
        if not text.isdigit() or len(text) > 12:
            raise ReviewError(f"{text[:40]!r} is not a feedback id (ids are whole numbers; see "
                              "`mushroom feedback list`)")
        out.append(int(text))
    return out


class FeedbackReview:
    """``svc.feedback``: list, exclude and include feedback rows of one home."""

    def __init__(self, loop: FeedbackLoop):
        self.loop = loop
        self.store = loop.store

    def list(self, *, source: str | None = None, since=None, contradicting: bool = False,
             excluded: bool | None = None) -> pd.DataFrame:
        """Feedback rows (all, excluded ones flagged) matching the filters, oldest first (LIST_COLUMNS)."""
        df = self.store.read(include_excluded=True)
        gone = self.store.excluded()
        df = self._select(df, source=source, since=since)
        out = df[["feedback_id", "source", "timestamp", "target", "prediction", "model_version"]].copy()
        out["contradicts"] = (self.loop.contradicting(df, df["target"]).to_numpy() if len(df)
                              else pd.Series(dtype=bool))
        events = [gone.get(int(i)) for i in out["feedback_id"]]
        out["excluded"] = [e is not None for e in events]
        for key in ("reason", "by", "at"):
            out[f"excluded_{key}"] = [e.get({"by": "who", "at": "when"}.get(key, key)) if e else None
                                      for e in events]
        if contradicting:
            out = out[out["contradicts"]]
        if excluded is not None:
            out = out[out["excluded"] == excluded]
        return out.reset_index(drop=True)[LIST_COLUMNS]

    @staticmethod
    def _select(df: pd.DataFrame, *, source=None, since=None) -> pd.DataFrame:
        if source:
            df = df[df["source"] == str(source)]
        start = _since(since)
        if start is not None:
            df = df[pd.to_datetime(df["timestamp"], utc=True, errors="coerce") >= start]
        return df

    def exclude(self, ids=None, *, source: str | None = None, since=None, reason: str = "",
                who: str | None = None) -> dict:
        """Exclude rows by id, or every row of a source (optionally since a time). Returns the event logged.

        Raises ReviewError (nothing written): ReviewNotFound for unknown ids or an empty selection,
        ReviewConflict when all are excluded already, ReviewError itself for a missing reason."""
        reason = " ".join(str(reason or "").split())
        if not reason:
            raise ReviewError('an exclusion needs a reason, e.g. --reason "labelled by guesswork"')
        if ids and source:
            raise ReviewError("give feedback ids or --source, not both")
        if not ids and not source:
            raise ReviewError("name the rows to exclude: feedback ids or --source NAME [--since TIME]")
        with self.store.lock():
            df = self.store.read(include_excluded=True)
            gone = self.store.excluded()
            if ids:
                wanted = _ids(ids)
                self._check_known(df, wanted)
            else:
                chosen = self._select(df, source=source, since=since)
                if not len(chosen):
                    when = f" since {since}" if since else ""
                    raise ReviewNotFound(f"no feedback rows from source {str(source)[:40]!r}{when}; "
                                         "nothing excluded")
                wanted = chosen["feedback_id"].astype(int).tolist()
            new = sorted(set(wanted) - set(gone))
            if not new:
                raise ReviewConflict(f"all {len(set(wanted))} selected rows are already excluded; nothing changed")
            event = {"action": "exclude", "ids": new, "reason": reason[:500], "who": who or _user(),
                     "when": utc_iso(), "selection": {"source": source, "since": str(since) if since else None}}
            self.store.log_exclusion(event)
        return event

    def include(self, ids, *, who: str | None = None, reason: str = "") -> dict:
        """Take back exclusions of these rows.

        Raises ReviewNotFound (unknown ids) or ReviewConflict (not excluded); nothing is written then."""
        wanted = _ids(ids or [])
        if not wanted:
            raise ReviewError("name the feedback ids to include again")
        with self.store.lock():
            df = self.store.read(include_excluded=True)
            self._check_known(df, wanted)
            gone = self.store.excluded()
            idle = [i for i in wanted if i not in gone]
            if idle:
                raise ReviewConflict(f"feedback row {idle[0]} is not excluded"
                                     + (f" (nor {len(idle) - 1} other(s))" if len(idle) > 1 else "") + "; nothing changed")
            event = {"action": "include", "ids": sorted(set(wanted)), "reason": " ".join(str(reason).split())[:500],
                     "who": who or _user(), "when": utc_iso()}
            self.store.log_exclusion(event)
        return event

    @staticmethod
    def _check_known(df: pd.DataFrame, wanted: list[int]) -> None:
        known = set(df["feedback_id"].astype(int))
        unknown = [i for i in wanted if i not in known]
        if unknown:
            more = f" (and {len(unknown) - 1} other unknown id(s))" if len(unknown) > 1 else ""
            raise ReviewNotFound(f"there is no feedback row with id {unknown[0]}{more}; nothing was changed "
                              "(see `mushroom feedback list`)")

    def retrain(self, *, wait: bool = True) -> Receipt:
        """Retrain now (in the worker) on the rows not excluded, whatever the count toward K."""
        return self.loop.retrain_now(wait=wait)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

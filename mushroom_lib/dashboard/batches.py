"""The batches of feedback this page sent (time, rows, source) and an "undo" for each until the next retrain.

Undo excludes the batch's rows by their feedback ids (``svc.feedback.exclude``), so they never train and
never count toward K; ``prod_data.csv`` keeps them. A retrain that takes a batch ends its undo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..core.vocab import utc_now
from .values import esc

UNDO_REASON = "undone in the dashboard"
SHOWN = 5  #: how many of the last batches the list shows


@dataclass
class SentBatch:
    """One submission from the page: its number, when, how many rows, the source, the ids written."""

    number: int
    time: str
    rows: int
    source: str
    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  #: grid positions (valid while ``grid`` is current)
    grid: int = 0
    state: str = "sent"  #: sent (undo offered), undone, retrained
    taken_by: int | None = None  #: the retrain (its receipt's id) that took it

    @property
    def undoable(self) -> bool:
        return self.state == "sent" and bool(self.ids)


class SentBatches:
    """The page's batches, newest last."""

    def __init__(self):
        self.items: list[SentBatch] = []

    def add(self, receipt, source: str, positions: list[int], grid: int) -> SentBatch:
        batch = SentBatch(len(self.items) + 1, utc_now().strftime("%H:%M:%S UTC"),
                          int(receipt.rows_written), source, list(getattr(receipt, "feedback_ids", None) or []),
                          list(positions), grid)
        self.items.append(batch)
        return batch

    def get(self, number) -> SentBatch | None:
        return next((b for b in self.items if str(b.number) == str(number)), None)

    def retrained(self, up_to: int | None = None, by: int | None = None) -> None:
        """A retrain took every batch up to batch ``up_to`` (all when None): no undo for them any more."""
        for b in self.items:
            if b.state == "sent" and (up_to is None or b.number <= up_to):
                b.state, b.taken_by = "retrained", by

    def reopen(self, by: int) -> None:
        """The retrain ``by`` failed: the batches it took can be undone again."""
        for b in self.items:
            if b.state == "retrained" and by is not None and b.taken_by == by:
                b.state, b.taken_by = "sent", None

    def shown(self) -> list[SentBatch]:
        return self.items[-SHOWN:]


class BatchesView:
    """A small list of the last batches, each with an undo button while it can be undone."""

    def __init__(self, on_undo: Callable[[int], None]):
        import ipywidgets as W

        self.W = W
        self.on_undo = on_undo
        self.buttons: dict[int, object] = {}
        self.box = W.VBox([])
        self.box.add_class("mushroom-batches")

    def show(self, batches: list[SentBatch]) -> None:
        W = self.W
        self.buttons = {}
        lines = []
        for b in reversed(batches):
            text = W.HTML(f"<span class='mushroom-note'>{esc(b.time)} · {b.rows} row(s) · {esc(b.source)} · "
                          f"feedback id{'s' if len(b.ids) > 1 else ''} {esc(_span(b.ids))}{esc(_state_note(b))}</span>")
            items = [text]
            if b.undoable:
                button = W.Button(description="undo", icon="undo", layout=W.Layout(width="auto"),
                                  tooltip="Exclude these rows from training (they stay on file)")
                button.add_class("mushroom-undo")
                button.on_click(lambda _b, n=b.number: self.on_undo(n))
                self.buttons[b.number] = button
                items.insert(0, button)
            lines.append(W.HBox(items, layout=W.Layout(align_items="center")))
        head = [W.HTML("<b>Sent from this page</b> <span class='mushroom-note'>(undo until the next "
                       "retrain)</span>")] if lines else []
        self.box.children = head + lines


def _span(ids: list[int]) -> str:
    if not ids:
        return "—"
    return str(ids[0]) if len(ids) == 1 else f"{min(ids)}–{max(ids)}"


def _state_note(b: SentBatch) -> str:
    return {"undone": " · undone: excluded from training", "retrained": " · in a retrain"}.get(b.state, "")

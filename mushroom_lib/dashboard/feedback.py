"""Sending labelled rows as feedback from the page, and showing what came of it (retrain, promotion).

Feedback goes through ``ModelService.submit_feedback(rows, wait=False, source="dashboard", on_done=...)``:
the retrain runs in the service's background worker, never in this kernel's event loop. Each step the page
goes through is appended to ``events`` (and to a hidden ``.mushroom-events`` element), so a test can wait
for a state that has already passed. Each batch sent is listed with an undo until a retrain takes it
(:mod:`.batches`).
"""

from __future__ import annotations

import logging

from ..feedback.review import ReviewError
from .batches import UNDO_REASON, BatchesView, SentBatches
from .values import esc

log = logging.getLogger("mushroom_lib.dashboard")


class FeedbackFlow:
    """Mixin of :class:`~.app.Dashboard`: send rows, track pending retrains, refresh after a promotion."""

    def __init__(self):
        import ipywidgets as W

        self.last_receipt = None
        self.feedback_source = "dashboard"  #: the source the page's rows are stored with (and who undoes them)
        self.sent_batches = SentBatches()
        self.batches_view = BatchesView(lambda n: self._interaction(lambda: self.undo_batch(n)))
        self._inflight: set[int] = set()
        self._finished: set[int] = set()
        self.events: list[str] = []
        self.events_view = W.HTML("", layout=W.Layout(display="none"))
        self.events_view.add_class("mushroom-events")
        self.root.children = [*self.root.children, self.events_view]

    def _event(self, name: str) -> None:
        self.events.append(name)
        self.events_view.value = " ".join(self.events[-50:])

    def _update_until(self, remaining: int | None = None) -> None:
        if self.bar is None:
            return
        try:
            remaining = self.model.rows_until_retrain() if remaining is None else remaining
        except Exception:  # the count is informative only; the panel is not the place for its failure
            log.exception("counting rows until the next retrain failed")
            return
        self.bar.show_until(remaining, self.settings.k)

    def send_labelled(self):
        """Send every labelled, not yet sent row as feedback (bulk)."""
        if self.state.rows is None:
            self.msg.error("upload a file (or add a row by hand) and set some true labels first")
            return None
        positions = self.state.labelled_positions()
        if not positions:
            self.msg.error("no labelled rows to send: double-click a cell in the 'true label' column and type "
                           "edible or poisonous")
            return None
        return self._send(positions)

    def send_row(self, row_number: int):
        """Send one row (by the row number the grid shows)."""
        if self.state.rows is None:
            self.msg.error("upload a file first")
            return None
        pos = self.state.position_of(row_number)
        if pos is None:
            self.msg.error(f"there is no row {str(row_number)[:20]} in the grid")
            return None
        if not self.state.rows.at[pos, "true label"]:
            self.msg.error(f"row {row_number} has no true label yet; set it in the 'true label' column")
            return None
        return self._send([pos])

    def _mark_sent(self, positions: list[int], mark: str) -> None:
        self.state.mark_sent(positions, mark)
        if len(positions) == 1:
            self.grid_view.set_cells(positions[0], {"sent": mark})
        else:  # one bulk update repaints once; a message per row would repaint per row
            self._push_grid()

    def _send(self, positions: list[int]):
        with self._lock:
            frame = self.state.feedback_frame(positions)
            metrics = self.state.batch_metrics(positions)
            self.msg.clear()
            self._mark_sent(positions, "yes")
            self.msg.say(f"sending {len(positions)} row(s) as feedback…")
            try:
                receipt = self.service.submit_feedback(frame, wait=False, source=self.feedback_source,
                                                       on_done=self._on_feedback_done)
            except Exception:
                self._mark_sent(positions, "")
                raise
            self.last_receipt = receipt
            batch = self.sent_batches.add(receipt, self.feedback_source, positions, self.state.generation)
            if receipt.retrain_pending:  # the retrain now queued takes this batch and the ones before it
                self.sent_batches.retrained(up_to=batch.number, by=id(receipt))
            self.batches_view.show(self.sent_batches.shown())
            if receipt.retrain_pending and id(receipt) not in self._finished:
                self._inflight.add(id(receipt))
                self.header.show_pending(True)
                self._event("retraining")
        self._event(f"sent-{receipt.rows_written}")
        extra = (f"; {receipt.contradictions} contradict the dataset's label for identical features"
                 if receipt.contradictions else "")
        state = "retraining now — the grid stays usable" if receipt.retrain_pending else \
            f"{receipt.rows_until_retrain} of {self.settings.k} until the next retrain"
        self.msg.say(f"sent {receipt.rows_written} row(s) as feedback — this batch against your labels: accuracy "
                     f"{metrics['accuracy'] * 100:.1f}%, false_edible {metrics['false_edible']}{esc(extra)}; {state}")
        if not receipt.retrain_pending:
            self._update_until(receipt.rows_until_retrain)
        return receipt

    def _on_feedback_done(self, receipt) -> None:
        """Runs when submit_feedback is done (in the service's background thread after a retrain)."""
        try:
            with self._lock:
                self._finished.add(id(receipt))
                was_pending = id(receipt) in self._inflight
                self._inflight.discard(id(receipt))
                if not self._inflight:
                    self.header.show_pending(False)
                if not receipt.retrained:
                    if receipt.reason:  # the background retrain failed: its batches can be undone again
                        self.msg.error(receipt.reason)
                        self.sent_batches.reopen(id(receipt))
                        self.batches_view.show(self.sent_batches.shown())
                        self._event("retrain-failed")
                    if was_pending or receipt.reason:
                        self._update_until()
                    return
                self._after_retrain(receipt)
        except Exception:  # runs in a worker thread: logged, the page keeps its last state
            log.exception("updating the dashboard after feedback failed")

    def _after_retrain(self, receipt) -> None:
        if receipt.promoted:
            self._shown_version = receipt.model_version
            self.header.show_version(receipt.model_version, delta=receipt.metrics_delta or None)
            self._rescore_all()
            self.msg.say(f"retrained in {receipt.retrain_seconds or 0:.1f}s: {esc(receipt.model_version)} now serves; "
                         "the grid shows its predictions")
            self._event(f"promoted-{receipt.model_version}")
        else:
            refused = f"candidate {receipt.candidate_version} refused: {receipt.reason}"
            self.header.show_version(self.model.version, refused=refused)
            self.msg.say(esc(refused))
            self._event(f"refused-{receipt.candidate_version}")
        self._update_until(receipt.rows_until_retrain)

    def undo_batch(self, number: int):
        """Exclude a batch this page sent (by its number in the list) from training; returns the logged event."""
        with self._lock:
            batch = self.sent_batches.get(number)
            if batch is None or not batch.undoable:
                self.msg.error(f"batch {str(number)[:20]} cannot be undone: it is unknown, already undone, or a "
                               "retrain has taken it")
                return None
            try:
                event = self.service.feedback.exclude(batch.ids, reason=UNDO_REASON, who=self.feedback_source)
            except ReviewError as exc:  # e.g. excluded meanwhile through the CLI
                self.msg.error(str(exc))
                return None
            batch.state = "undone"
            if batch.grid == self.state.generation:
                self._mark_sent(batch.positions, "undone")
            self.batches_view.show(self.sent_batches.shown())
        self.msg.clear()
        self.msg.say(f"undone: the {batch.rows} row(s) sent at {esc(batch.time)} are excluded from training "
                     "(they stay on file, see `mushroom feedback list`)")
        self._update_until()
        self._event(f"undone-{batch.number}")
        return event

    def _retrained_elsewhere(self) -> None:
        """A model promoted outside this page: its retrain may have taken every batch sent so far."""
        self.sent_batches.retrained()
        self.batches_view.show(self.sent_batches.shown())

    def wait_for_retrain(self, timeout: float = 120.0) -> None:
        """Block until the last submission's background retrain (if any) has finished (tests, scripts)."""
        receipt = self.last_receipt
        if receipt is not None and receipt.future is not None:
            receipt.future.result(timeout=timeout)

    def _rescore_all(self) -> None:
        """Re-score every grid row with the serving model and resend the grid and the 3-D view."""
        self.state.rescore(self.model.score)
        if len(self.state):
            self._push_grid()
        self._ref = None
        self._refresh_plot()


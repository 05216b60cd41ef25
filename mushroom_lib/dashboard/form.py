"""The manual form (one dropdown per feature, each with an "unknown" choice) and the partial-identification panel.

The dropdowns are built when the section opens (about 70 widget models fewer at first paint). While some
features are unknown, every dropdown change asks the app's ``identify`` hook and :func:`render_identification`
shows its answer (prediction, how many known mushrooms match, the reason, the next feature to look at, the
note); with all 22 known the form gives the model's answer.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..data.schema import CODES, FEATURES
from .values import P_POISONOUS, PREDICTION, UNCERTAIN, esc, human

UNKNOWN = "unknown"  #: not a code of any feature (stalk-root's "?" means "missing" in the data)


def render_identification(answer: dict) -> str:
    """HTML for a partial identification answer (keys: prediction, matching_known, matching_poisonous,
    reason, ask_next, note; any of them may be missing)."""
    word = str(answer.get("prediction") or "unknown")
    css = "poisonous" if word != "edible" else "edible"  # anything but a clear "edible" reads as poisonous
    parts = [f"<span class='mushroom-result-{css}'>{esc(word)}</span>"]
    known, poisonous = answer.get("matching_known"), answer.get("matching_poisonous")
    if known is not None:
        parts.append(f"{esc(known)} known mushroom(s) match what you gave"
                     + (f", {esc(poisonous)} of them poisonous" if poisonous is not None else ""))
    if answer.get("reason"):
        parts.append(esc(answer["reason"]))
    ask = answer.get("ask_next") or []
    if isinstance(ask, dict):  # identify.ask_next: {"feature", "information_gain", "codes": {code: name}}
        codes = ask.get("codes") or {}
        seen = f" (among the matches: {', '.join(f'{n} ({c})' for c, n in codes.items())})" if codes else ""
        parts.append("look next at: " + esc(human(str(ask.get("feature", "")))) + esc(seen))
    elif ask:
        ask = [ask] if isinstance(ask, str) else ask
        parts.append("look next at: " + esc(", ".join(human(str(a)) for a in ask)))
    elif "ask_next" in answer and known:
        parts.append("nothing more to ask: every matching known mushroom has the same class")
    if answer.get("note"):
        parts.append(f"<i>{esc(answer['note'])}</i>")
    return "<div class='mushroom-identification'>" + "<br>".join(parts) + "</div>"


class ManualForm:
    """22 dropdowns (codes with their names, or unknown), Predict / Add to grid, the result and the
    partial-identification panel."""

    def __init__(self, on_predict: Callable[[], None], on_add: Callable[[], None],
                 on_change: Callable[[], None] = lambda: None):
        import ipywidgets as W

        self.W = W
        self._on_predict, self._on_add, self._on_change = on_predict, on_add, on_change
        self.dropdowns: dict | None = None
        self.result = W.HTML("")
        self.identification = W.HTML("")
        self.identification.add_class("mushroom-identification-panel")
        self.box = W.VBox([W.HTML("<span class='mushroom-note'>22 dropdowns, one per feature, with the codes' "
                                  "names; choose unknown where you cannot tell.</span>")])
        self.box.add_class("mushroom-manual-form")

    def build(self) -> dict:
        """feature -> Dropdown (built on first use)."""
        if self.dropdowns is None:
            W = self.W
            self.dropdowns = {
                f: W.Dropdown(options=[("unknown", UNKNOWN)] + [(f"{n} ({c})", c) for c, n in CODES[f].items()],
                              value=None, description=human(f), style={"description_width": "170px"},
                              layout=W.Layout(width="330px"))
                for f in FEATURES}
            for dd in self.dropdowns.values():
                dd.observe(lambda _change: self._on_change(), names="value")
            predict = W.Button(description="Predict", button_style="primary", icon="search")
            predict.on_click(lambda _b: self._on_predict())
            add = W.Button(description="Add to grid", icon="plus")
            add.on_click(lambda _b: self._on_add())
            self.box.children = [
                W.GridBox(list(self.dropdowns.values()), layout=W.Layout(grid_template_columns="repeat(auto-fill, 340px)")),
                W.HBox([predict, add, self.result], layout=W.Layout(align_items="center")),
                self.identification]
        return self.dropdowns

    def values(self) -> dict:
        """feature -> code, UNKNOWN or None (not chosen)."""
        return {f: dd.value for f, dd in self.build().items()}

    def set_values(self, values: dict) -> None:
        for f, v in values.items():
            self.build()[f].value = v

    def given(self) -> dict[str, str]:
        """Only the features a person chose a code for (what an identification is asked with)."""
        return {f: v for f, v in self.values().items() if v not in (None, UNKNOWN)}

    def missing(self) -> list[str]:
        return [human(f) for f, v in self.values().items() if v is None]

    def unknown(self) -> list[str]:
        return [f for f, v in self.values().items() if v == UNKNOWN]

    def show_result(self, html_text: str) -> None:
        self.result.value = html_text

    def show_identification(self, answer: dict | None) -> None:
        self.identification.value = "" if answer is None else render_identification(answer)


class ManualFormFlow:
    """Mixin of :class:`~.app.Dashboard`: predict the hand-entered mushroom, add it to the grid, or ask
    the identification hook when some features are unknown."""

    @property
    def form(self) -> dict:
        """feature -> Dropdown of the manual form (built on first use)."""
        return self.form_view.build()

    def _manual_frame(self) -> pd.DataFrame | None:
        """The 22 chosen codes as validated features; else the partial answer is shown and None returned."""
        from ..data.schema import validate_frame

        missing, unknown = self.form_view.missing(), self.form_view.unknown()
        if missing or unknown:
            self._identify()
            need = missing or [human(f) for f in unknown]
            more = f" and {len(need) - 3} more" if len(need) > 3 else ""
            self.form_view.show_result(f"<span class='refused'>the model's answer (and Add to grid) needs every "
                                       f"feature; choose: {esc(', '.join(need[:3]))}{more}</span>")
            return None
        self.form_view.show_identification(None)
        return validate_frame(pd.DataFrame([self.form_view.values()])).features

    def manual_changed(self) -> None:
        """A dropdown changed: the model's answer once all 22 are known, else the partial answer."""
        if self.form_view.missing() or self.form_view.unknown():
            self.form_view.show_result("")
            self._identify()
        else:
            self.predict_manual()

    def _identify(self) -> None:
        """Some features unknown (or not chosen yet): the partial-identification panel from those given."""
        if self.identify is None:
            self.form_view.show_identification(None)
            return
        self.form_view.show_identification(self.identify(self.form_view.given()))

    def predict_manual(self):
        """Predict the mushroom described by the 22 dropdowns; returns the scored row (or None)."""
        feats = self._manual_frame()
        if feats is None:
            return None
        scored = self.model.score(feats).iloc[0]
        word = scored[PREDICTION]
        unc = " — uncertain, treat as poisonous" if bool(scored[UNCERTAIN]) else ""
        reason = f"; {scored['reason']}" if scored.get("reason") else ""
        self.form_view.show_result(f"<span class='mushroom-result-{esc(word)}'>{esc(word)}</span> (p_poisonous "
                                   f"{float(scored[P_POISONOUS]):.3f}{esc(unc)}{esc(reason)}, model "
                                   f"{esc(scored['model_version'])})")
        return scored

    def add_manual_row(self) -> None:
        """Append the hand-entered mushroom to the grid, so it can be labelled and sent."""
        feats = self._manual_frame()
        if feats is None:
            return
        with self._lock:
            number = self.state.append(feats, self.model.score(feats))
            self._push_grid()
        self.predict_manual()
        self.msg.say(f"added row {number} to the grid")
        self._refresh_plot(create=True)


"""The model as a page's kernel sees it: scoring from the champion's saved plan, feedback through ModelService.

A kernel serving a page scores with the champion's scoring plan (plain arrays; no scikit-learn, no model
file) and makes its :class:`~mushroom_lib.service.ModelService` only when the page first sends feedback;
partial identification reads the dataset (once per kernel) until that service exists.
"""

from __future__ import annotations

import threading

import pandas as pd

from ..core.settings import Settings
from ..feedback.loop import FeedbackLoop
from ..registry.versions import Registry
from ..service import ModelService

_KNOWN: dict = {}  #: the dataset frame identification reads, loaded once per kernel (per file version)
_KNOWN_LOCK = threading.Lock()


def known_mushrooms(settings: Settings) -> pd.DataFrame:
    """The acquired dataset (class + 22 features), read once per kernel and again only when the file changes."""
    from ..data.dataset import load_dataset

    path = settings.dataset_path
    if not path.exists():
        return load_dataset(settings)  # raises: no dataset, run `mushroom data`
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _KNOWN_LOCK:
        if key not in _KNOWN:
            _KNOWN.clear()
            _KNOWN[key] = load_dataset(settings)
        return _KNOWN[key]


def _scores_nothing():
    raise RuntimeError("counting feedback scores nothing")


def _feedback_counts(settings: Settings) -> FeedbackLoop:
    """How many rows until the next retrain, counted exactly as ModelService counts them, without loading a model."""
    return FeedbackLoop(settings, _scores_nothing, lambda: None)


class ModelSource:
    """The serving scorer (swapped when champion.json changes), the feedback counts and the lazy service."""

    def __init__(self, settings: Settings, service: ModelService | None = None):
        self.settings = settings
        self.registry = Registry(settings)
        self._service = service
        self._counts = _feedback_counts(settings)
        self._lock = threading.Lock()
        self._scorer = None
        self._stamp: tuple | None = None

    @property
    def scorer(self):
        """The champion's scorer: from its plan when one is saved, else loaded once (and its plan saved)."""
        stamp = self.registry.champion_stamp()
        if self._scorer is not None and stamp == self._stamp:
            return self._scorer
        with self._lock:
            if self._service is not None and self._service.model_version == self.registry.champion():
                scorer = self._service.scorer  # the page's own service already holds the model
            else:
                from ..scoring.loader import (
                    champion_scorer,  # lazy: loaded on the page's first scoring
                )

                scorer = champion_scorer(self.settings)
            from ..scoring.loader import (
                remember_plan,  # lazy: loaded after a clean scoring
            )

            remember_plan(self.settings, scorer)  # the next kernel starts from the plan
            self._scorer, self._stamp = scorer, stamp
        return scorer

    @property
    def version(self) -> str | None:
        """The serving version (None before the first training); one stat when nothing changed."""
        if self.registry.champion_stamp() is None:
            return None
        return self.scorer.version

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """Every scored column the model returns for validated features."""
        return self.scorer.score(features)

    def pca(self, features: pd.DataFrame):
        return self.scorer.pca(features)

    def identify(self, given: dict) -> dict:
        """The partial identification (``identify.answer``) from the features given: through the page's
        ModelService when it exists, else from the dataset alone (no model, no scikit-learn in this kernel)."""
        if self._service is not None:
            return self._service.identify(given)
        from ..data.identify import answer

        return answer(known_mushrooms(self.settings), given)

    def rows_until_retrain(self) -> int:
        return self._counts.rows_until_retrain()

    @property
    def service(self) -> ModelService:
        """The ModelService that takes this page's feedback (made on first use)."""
        if self._service is None:
            with self._lock:
                if self._service is None:
                    self._service = ModelService(settings=self.settings)
        return self._service

    @property
    def service_started(self) -> bool:
        return self._service is not None

    def close(self) -> None:
        if self._service is not None:
            self._service.close()

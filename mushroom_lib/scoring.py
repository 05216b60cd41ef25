"""Scoring a validated feature frame with a loaded model: p_poisonous, decisions, PCA coordinates.

Every caller (ModelService, CLI, dashboard, reports) scores through ``Scorer`` so preprocessing exists once:
the fitted Pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import model as M
from .schema import FEATURES


class Scorer:
    """Scores rows with one loaded model version."""

    def __init__(self, loaded):
        self.loaded = loaded
        self.version = loaded.version
        self.threshold = loaded.threshold
        self.pipeline = loaded.pipeline
        self.seen = M.seen_codes(loaded.pipeline)

    def p_poisonous(self, features: pd.DataFrame) -> np.ndarray:
        """Probability of poisonous per row (features already validated)."""
        return M.p_poisonous(self.pipeline, features)

    def pca(self, features: pd.DataFrame) -> np.ndarray:
        """PCA coordinates per row."""
        return self.pipeline[:-1].transform(features[FEATURES])

    def unseen(self, features: pd.DataFrame) -> pd.Series:
        """For each row, the features whose (valid) code never appeared in training, as 'col=code;...'."""
        out = np.full(len(features), "", dtype=object)
        for col in FEATURES:
            mask = ~features[col].isin(self.seen[col]).to_numpy()
            if mask.any():
                idx = np.flatnonzero(mask)
                vals = features[col].to_numpy()[idx]
                out[idx] = [f"{o};{col}={v}" if o else f"{col}={v}" for o, v in zip(out[idx], vals)]
        return pd.Series(out, index=features.index, name="unseen_codes")

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """prediction (edible|poisonous), p_poisonous, uncertain, unseen_codes, model_version."""
        p = self.p_poisonous(features)
        out = pd.DataFrame(index=features.index)
        out["prediction"] = M.label_words(M.decide(p, self.threshold))
        out["p_poisonous"] = p
        out["uncertain"] = M.uncertain(p, self.threshold)
        out["unseen_codes"] = self.unseen(features)
        out["model_version"] = self.version
        return out

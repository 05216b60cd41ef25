"""The accelerator answers exactly like the exact path (the Pipeline itself plus the safety rules).

* On every dataset row and on random rows (most with codes training never saw, many far from every known
  mushroom): the accelerated scorer, a scorer from the saved plan and the exact path give the same columns,
  p_poisonous within 1e-9, and the rules call every unseen or far row poisonous.
* The accelerator's one read of scikit-learn's private KNN attributes (``knn_points``) returns the points the
  KNN searches, which public API cannot recompute (the cross-fitted TargetEncoder).
* A plan is used only when it checks out against the version's record and model file; a scorer pickles.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from mushroom_lib.core.errors import NoChampionError
from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.schema import FEATURES
from mushroom_lib.model import pipeline as M
from mushroom_lib.registry.versions import Registry
from mushroom_lib.scoring.accelerator import knn_points, random_codes
from mushroom_lib.scoring.loader import (
    champion_scorer,
    plan_path,
    plan_scorer,
    remember_plan,
)
from mushroom_lib.scoring.scorer import (
    SCORED_COLUMNS,
    Scorer,
    codes_to_frame,
    feature_codes,
)


def _loaded(home):
    reg = Registry(get_settings(home))
    return reg.load(reg.champion())


def _dataset(home) -> pd.DataFrame:
    return pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)


def _assert_same_columns(got: dict, want: dict):
    assert list(got) == SCORED_COLUMNS == list(want)
    for col in SCORED_COLUMNS:
        if col == "p_poisonous":
            assert np.abs(np.asarray(got[col], float) - np.asarray(want[col], float)).max() <= 1e-9
        else:
            assert np.array_equal(np.asarray(got[col]), np.asarray(want[col])), col


@pytest.fixture(scope="module")
def codes(_trained_template) -> np.ndarray:
    """Every dataset row, then 20,000 random rows, then the dataset rows again (repeats are cached)."""
    data = feature_codes(_dataset(_trained_template)[FEATURES])
    return np.vstack([data, random_codes(20_000, seed=5), data])


def test_accelerator_equals_the_exact_path(_trained_template, codes):
    loaded = _loaded(_trained_template)
    exact, fast = Scorer(loaded, fast=False), Scorer(loaded)
    assert fast.fast and not exact.fast
    want = exact.score_codes(codes)
    # the exact path is the Pipeline's own predict_proba
    assert np.array_equal(want["p_poisonous"], M.p_poisonous(loaded.pipeline, codes_to_frame(codes)))
    got = fast.score_codes(codes)
    _assert_same_columns(got, want)
    # the accelerator answered: the Pipeline scored only the rows it handed back
    assert fast.stats["pipeline"] < 0.01 * fast.stats["distinct"]
    # the rules hold on the accelerated path: an unseen code or a row far from every known one is poisonous
    forced = (got["unseen_codes"] != "") | (got["nearest_known"] >= loaded.known.cutoff)
    assert forced[len(codes) // 2:].any()
    assert (got["prediction"][forced] == "poisonous").all() and got["uncertain"][forced].all()


def test_scorer_from_the_saved_plan_equals_the_exact_path(trained_home, codes):
    settings = get_settings(trained_home)
    scorer = plan_scorer(settings, "v0001")
    assert scorer is not None and scorer.from_saved_plan
    loaded = _loaded(trained_home)
    some = codes[::7]
    _assert_same_columns(scorer.score_codes(some), Scorer(loaded, fast=False).score_codes(some))
    frame = codes_to_frame(some[:500]).set_index(pd.RangeIndex(1000, 1500))
    scored = scorer.score(frame)
    assert list(scored.columns) == SCORED_COLUMNS and scored.index.equals(frame.index)
    assert np.abs(scorer.pca(frame) - loaded.pipeline[:-1].transform(frame)).max() <= 1e-9


def test_a_pickled_scorer_scores_the_same(trained_home, codes):
    scorer = plan_scorer(get_settings(trained_home), "v0001")
    some = codes[:3000]
    before = scorer.score_codes(some)
    again = pickle.loads(pickle.dumps(scorer))
    assert again.from_saved_plan and not again.model_loaded
    _assert_same_columns(again.score_codes(some), before)


def test_one_row_and_many_rows_give_the_same_answer(_trained_template, codes):
    scorer = Scorer(_loaded(_trained_template))
    some = codes[8000:8300]  # dataset rows and random ones
    many = scorer.score_codes(some)
    for i in range(len(some)):
        one = scorer.score_codes(some[i:i + 1])
        assert {c: one[c][0] for c in SCORED_COLUMNS} == {c: many[c][i] for c in SCORED_COLUMNS}


# ---------------------------------------------------------------- the private read, pinned
def test_knn_points_are_the_points_the_fitted_knn_searches():
    """Fails if scikit-learn renames ``_fit_X``/``_y`` or stores the points or labels differently."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = np.where(rng.random(200) < 0.4, "p", "e")
    knn = KNeighborsClassifier(5, weights="distance").fit(X, y)
    points = knn_points(knn)
    assert points is not None
    fit_X, labels = points
    assert np.array_equal(fit_X, X)
    assert np.array_equal(knn.classes_[labels], y)
    queries = rng.normal(size=(50, 3))
    dist, ind = knn.kneighbors(queries)  # public API: the neighbours are rows of the points read
    assert np.allclose(dist, np.linalg.norm(queries[:, None, :] - fit_X[ind], axis=2), rtol=0, atol=1e-12)


def test_knn_points_cannot_be_recomputed_through_the_pipeline(_trained_template):
    """Why the private read: the cross-fitted TargetEncoder embeds training rows differently at fit time."""
    df = _dataset(_trained_template).sample(2000, random_state=3)
    pipe = M.build_pipeline(M.ModelConfig()).fit(df[FEATURES], M.to_binary(df["class"]))
    fit_X, labels = knn_points(pipe[-1])
    assert np.array_equal(pipe[-1].classes_[labels], M.to_binary(df["class"]))
    assert np.abs(pipe[:-1].transform(df[FEATURES]) - fit_X).max() > 1e-3


# ---------------------------------------------------------------- the plan cache
def test_a_plan_that_does_not_check_out_is_not_used(trained_home):
    settings = get_settings(trained_home)
    rec = Registry(settings).record("v0001")
    path = plan_path(settings, "v0001", rec["model_sha256"])
    good = path.read_bytes()
    path.write_bytes(good[:-40] + bytes(40))  # damaged plan: its digest no longer matches the record
    assert plan_scorer(settings, "v0001") is None
    scorer = champion_scorer(settings)  # the model is loaded instead, and the plan saved again
    assert not scorer.from_saved_plan
    remember_plan(settings, scorer)
    assert path.read_bytes() != good[:-40] + bytes(40)
    assert plan_scorer(settings, "v0001").from_saved_plan
    model = trained_home / "artifacts" / "models" / "v0001" / "model.skops"
    model.write_bytes(model.read_bytes() + b"tampered")  # another model file: its plan is not used either
    assert plan_scorer(settings, "v0001") is None
    with pytest.raises(NoChampionError, match="model.skops does not match the sha256"):
        champion_scorer(settings)

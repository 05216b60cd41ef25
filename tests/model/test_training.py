"""Training: the persisted split, the holdout that never enters training, metrics, metadata, the threshold."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from helpers import run

from mushroom_lib.core.settings import get_settings
from mushroom_lib.data.dataset import frame_sha256, load_dataset, load_split, make_split
from mushroom_lib.data.schema import COLUMNS, FEATURES, TARGET
from mushroom_lib.model import pipeline as M
from mushroom_lib.registry.versions import Registry
from mushroom_lib.service import ModelService
from mushroom_lib.training import train as training


def keys(df: pd.DataFrame) -> set[tuple]:
    """Row identities by content: the 22 features (the dataset has no duplicate feature rows)."""
    return set(map(tuple, df[FEATURES].to_numpy()))


def test_split_is_stratified_disjoint_and_persisted(trained_home):
    s = get_settings(trained_home)
    saved = json.loads(s.split_path.read_text())
    train_idx, hold_idx = set(saved["train"]), set(saved["holdout"])
    assert not train_idx & hold_idx
    assert train_idx | hold_idx == set(range(8124))
    assert len(hold_idx) == 1625 and saved["seed"] == 42 and saved["test_size"] == 0.2
    df = load_dataset(s)
    share = df[TARGET].eq("p").mean()
    assert abs(df.iloc[sorted(hold_idx)][TARGET].eq("p").mean() - share) < 0.005  # stratified
    # reused, not redrawn: another seed in the settings does not move the holdout
    again = make_split(s.with_(seed=7))
    assert set(again.holdout) == hold_idx
    train, holdout = load_split(s)
    assert keys(train).isdisjoint(keys(holdout))
    assert len(keys(holdout)) == 1625


def test_initial_model_is_trained_on_exactly_the_training_split(trained_home):
    s = get_settings(trained_home)
    meta = Registry(s).metadata("v0001")
    train, holdout = load_split(s)
    assert meta["training_rows"] == len(train) == 6499
    assert meta["training_sha256"] == frame_sha256(train)
    assert meta["split"]["holdout_rows"] == 1625


def test_retrain_on_feedback_never_trains_on_holdout_rows(trained_home):
    s = get_settings(trained_home)
    train, holdout = load_split(s)
    from_holdout = holdout.sample(8, random_state=1)
    from_train = train.sample(12, random_state=2)
    feedback = pd.concat([from_holdout, from_train]).sample(frac=1, random_state=3).reset_index(drop=True)
    svc = ModelService(trained_home)
    receipt = svc.submit_feedback(feedback)  # 20 rows >= K=10: one retrain
    assert receipt.retrained and receipt.candidate_version == "v0002"
    meta = Registry(s).metadata("v0002")
    assert meta["feedback_rows"] == 20 and meta["feedback_rows_excluded_as_holdout"] == 8
    # what was trained, independently rebuilt: the training split + the feedback rows that are not holdout rows
    kept = feedback[~feedback[FEATURES].apply(tuple, axis=1).isin(keys(holdout))]
    expected = pd.concat([train, kept[COLUMNS]], ignore_index=True)
    assert len(kept) == 12
    assert meta["training_rows"] == len(expected)
    assert meta["training_sha256"] == frame_sha256(expected)
    rows, n_fb = training.training_rows(s)
    assert n_fb == 20 and keys(rows).isdisjoint(keys(holdout))
    # the holdout itself is unchanged: still the persisted rows, evaluated in full
    assert meta["holdout_metrics"]["n"] == 1625
    assert set(make_split(s).holdout) == set(json.loads(s.split_path.read_text())["holdout"])


def test_real_data_holdout_metrics(trained_home):
    s = get_settings(trained_home)
    reg = Registry(s)
    meta = reg.metadata("v0001")
    m = meta["holdout_metrics"]
    print(f"\nholdout: accuracy {m['accuracy']:.4f} false_edible {m['false_edible']} "
          f"false_poisonous {m['false_poisonous']} threshold {meta['threshold']:.4f}")
    assert m["accuracy"] >= 0.97
    (tn, fp), (fn, tp) = m["confusion_matrix"]["rows_true_cols_pred"]
    assert m["false_edible"] == fn and m["false_poisonous"] == fp and tn + fp + fn + tp == m["n"] == 1625
    assert tp + fn == 783  # every holdout poisonous mushroom is counted
    assert m["recall"] == pytest.approx(tp / (tp + fn)) and m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    # the stored numbers are what the stored model and its known-set rules do on the holdout now
    loaded = reg.load("v0001")
    _, holdout = load_split(s)
    assert training.score_holdout(loaded, holdout) == m
    # the README's headline: no poisonous holdout mushroom called edible; few rows marked uncertain
    assert m["false_edible"] == 0 and m["accuracy"] >= 0.99 and m["uncertain_share"] <= 0.01


def test_metadata_fields(trained_home):
    s = get_settings(trained_home)
    reg = Registry(s)
    meta = reg.metadata("v0001")
    assert meta["version"] == "v0001" and meta["parent"] is None and meta["trigger"] == "initial"
    assert meta["status"] == "champion" and reg.champion() == "v0001"
    created = datetime.fromisoformat(meta["created_utc"].replace("Z", "+00:00"))
    assert created.utcoffset() == timezone.utc.utcoffset(None)
    params = meta["params"]
    assert params["n_components"] == 3 and params["seed"] == 42
    assert {"encoder", "classifier"} <= set(params)
    assert meta["training_rows"] == 6499
    assert meta["model_sha256"] == hashlib.sha256((s.models_dir / "v0001" / "model.skops").read_bytes()).hexdigest()
    assert len(meta["training_sha256"]) == 64
    assert set(meta["holdout_metrics"]) >= {"accuracy", "precision", "recall", "f1", "false_edible",
                                             "confusion_matrix"}
    assert 0 < meta["threshold"] <= 0.5 and meta["holdout_metrics"]["threshold"] == meta["threshold"]


def test_threshold_comes_from_training_data_only(trained_home, monkeypatch):
    """Flip every holdout label: the metrics collapse, the threshold does not move."""
    s = get_settings(trained_home)
    before = Registry(s).metadata("v0001")

    def flipped_split(settings):
        train, holdout = load_split(settings)
        holdout = holdout.assign(**{TARGET: holdout[TARGET].map({"e": "p", "p": "e"})})
        return train, holdout

    monkeypatch.setattr(training, "load_split", flipped_split)
    res = training.train(s, promote=False)
    assert res.threshold == before["threshold"]
    assert res.metrics["accuracy"] < 0.1  # the holdout was really different
    assert Registry(s).champion() == "v0001"


def test_reference_rows_are_the_models_real_predictions(trained_home):
    s = get_settings(trained_home)
    ref = pd.read_csv(s.ref_path, dtype={f: str for f in FEATURES}, keep_default_na=False)
    assert list(ref.columns) == [*FEATURES, "target", "prediction", "p_poisonous", "pca_1", "pca_2", "pca_3"]
    assert len(ref) == 8124 and set(ref["target"]) == set(ref["prediction"]) == {"edible", "poisonous"}
    loaded = Registry(s).load("v0001")
    sample = ref.sample(300, random_state=0)
    p = M.p_poisonous(loaded.pipeline, sample)
    assert list(sample["prediction"]) == list(M.label_words(M.decide(p, loaded.threshold)))
    np.testing.assert_allclose(sample[["pca_1", "pca_2", "pca_3"]].to_numpy(),
                               training.pca_coordinates(loaded.pipeline, sample), rtol=1e-6, atol=1e-9)


def test_train_command_prints_version_and_metrics_and_honours_options(home, real_data):
    assert run("--home", str(home), "data", "--source", str(real_data)).returncode == 0
    res = run("--home", str(home), "train", "--n-components", "4", "--seed", "7")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout.startswith("v0001 (champion)")
    for word in ("accuracy", "precision", "recall", "f1", "false_edible", "threshold"):
        assert word in res.stdout
    s = get_settings(home)
    reg = Registry(s)
    meta = reg.metadata("v0001")
    assert meta["params"]["n_components"] == 4 and meta["params"]["seed"] == 7
    acc = meta["holdout_metrics"]["accuracy"]
    assert f"accuracy {acc:.4f}" in res.stdout
    assert reg.load("v0001").pipeline.named_steps["pca"].n_components_ == 4
    ref = pd.read_csv(s.ref_path, nrows=1)
    assert [c for c in ref.columns if c.startswith("pca_")] == ["pca_1", "pca_2", "pca_3", "pca_4"]
    st = run("--home", str(home), "status", "--json")
    status = json.loads(st.stdout)
    assert status["model_version"] == "v0001" and status["feedback_rows"] == 0
    assert status["rows_until_retrain"] == 10
    assert {"accuracy", "precision", "recall", "f1", "false_edible"} <= set(status["metrics"])


def test_new_dataset_needs_a_resplit(trained_home, real_data, tmp_path):
    df = pd.read_csv(real_data, dtype=str, keep_default_na=False).sample(1000, random_state=5)
    sub = tmp_path / "subset.csv"
    sub.write_bytes(df.to_csv(index=False, lineterminator="\n").encode())
    assert run("--home", str(trained_home), "data", "--source", str(sub)).returncode == 0
    res = run("--home", str(trained_home), "train")
    assert res.returncode == 2 and "--resplit" in res.stderr and "Traceback" not in res.stderr
    assert Registry(get_settings(trained_home)).versions() == ["v0001"]
    res = run("--home", str(trained_home), "train", "--resplit", "--no-promote")
    assert res.returncode == 0, res.stderr
    split = json.loads(get_settings(trained_home).split_path.read_text())
    assert len(split["holdout"]) == 200 and len(split["train"]) == 800


def test_train_without_data_says_what_to_run(home):
    res = run("--home", str(home), "train")
    assert res.returncode == 2 and "mushroom data" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("option", [["--n-components", "0"], ["--n-neighbors", "0"], ["--n-estimators", "-3"]])
def test_train_refuses_nonsense_options(home, option):
    res = run("--home", str(home), "train", *option)
    assert res.returncode == 2 and option[0] in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_uncertain_band_is_called_poisonous():
    """Rows called poisonous only because of the safety threshold are the uncertain ones."""
    from mushroom_lib.model import rules

    p = np.array([0.0, 0.019, 0.02, 0.3, 0.499, 0.5, 0.9])
    assert list(M.decide(p, 0.02)) == [0, 0, 1, 1, 1, 1, 1]
    n = len(p)
    ev = rules.Evidence(np.full(n, "", dtype=object), np.zeros(n, bool), np.ones(n, np.int64), np.full(n, -1),
                        np.full(n, -1), np.zeros(n, np.int64), 2)
    assert list(rules.decide(p, 0.02, ev).uncertain) == [False, False, True, True, True, False, False]
    assert not rules.decide(p, 0.5, ev).uncertain.any()  # at the plain 0.5 threshold there is no band
